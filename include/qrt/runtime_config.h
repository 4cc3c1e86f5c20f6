// How a user steers kernel choice: backend, fallback, disabled list, max_input_length, kernel
// parameters (global and per layer), tuning cache. Sources and their precedence are documented
// in docs/CONFIG.md; lowest first: built-in defaults < checkpoint quantization_config.backend
// < QRT_DISABLE_BACKENDS < config file (--config) < CLI flags. Checkpoint tune_metadata is the
// lowest-priority source of per-layer kernel parameters.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qrt/backend.h"
#include "qrt/quant_config.h"

namespace qrt {

struct LayerOverride {
  std::string pattern;       // module name or glob ("model.layers.*.mlp.down_proj")
  std::string backend;       // optional: force a backend for matching layers ("" = inherit)
  KernelParams params;       // merged over global params
};

struct RuntimeConfig {
  std::string backend = "auto";            // "auto" or a qrt backend name (aliases accepted, see backend_alias)
  std::vector<std::string> fallback;        // tried in order when prepare/first run fails
  std::vector<std::string> disabled;        // never chosen (also QRT_DISABLE_BACKENDS=a,b)
  int64_t max_input_length = 2048;          // longest prompt; buffers/workspaces sized from it
  int64_t max_new_tokens = 512;
  KernelParams kernel_params;               // global parameters (validated by the owning backend)
  // Global parameters for one backend only ("kernel_params": {"cpu_simd": {...}} in the file);
  // merged over kernel_params when that backend is chosen.
  std::map<std::string, KernelParams> backend_params;
  // True when `backend` came from the checkpoint's quantization_config (a hint: a layer the hinted
  // backend cannot run goes to auto with a note, instead of failing as an explicit choice does).
  bool backend_is_hint = false;
  // True when a corrupt tuning cache should be ignored (with a warning) instead of failing.
  bool ignore_bad_tuning_cache = false;
  std::vector<LayerOverride> overrides;     // first match wins
  // Per-layer kernel parameters the checkpoint carries (HIGGS quantization_config.tune_metadata:
  // module name -> {"tile": [...], "warps": 4, ...}). The lowest-priority parameters: merged just
  // over a backend's defaults, under global ones, tuned values and overrides. A key the chosen
  // backend rejects is left out with a plan note (the checkpoint may be made for another tool).
  // `backend` is never set here. First match wins.
  std::vector<LayerOverride> checkpoint_params;
  std::string tuning_cache_path;            // "" = default (~/.cache/qrt/tuning.json)
  bool use_tuning_cache = true;
  // GPU engine: run q/k/v (and gate/up) of a block as one GEMM over their concatenated weights
  // where the three (two) have the same format and no per-layer override (fewer launches).
  bool fuse_projections = true;
  int threads = 0;                          // CPU threads; 0 = ThreadPool::available_cpus()
  // Where each field came from ("cli", "config file", "checkpoint", "env", "default"), for qrt plan.
  std::vector<std::pair<std::string, std::string>> provenance;

  // Parses the JSON config file format (docs/CONFIG.md). Throws naming the file and field.
  static RuntimeConfig from_json_file(const std::string& path, RuntimeConfig base);
  static RuntimeConfig from_json_text(const std::string& text, const std::string& origin, RuntimeConfig base);
  // Applies QRT_DISABLE_BACKENDS.
  void apply_environment();
  // Applies a checkpoint's quantization_config.backend (lowest precedence above the defaults).
  // "auto"/"" change nothing; a known alias becomes a hint; a name qrt does not implement is
  // ignored and described in the returned warning ("" when none).
  std::string apply_checkpoint_backend(const std::string& name);
  // Reads a checkpoint's tune_metadata (module name or glob -> JSON object text) into
  // checkpoint_params. Never throws for the checkpoint's content: an entry or value qrt cannot
  // read is left out and described in the returned warnings.
  std::vector<std::string> apply_checkpoint_tune_metadata(const std::map<std::string, std::string>& metadata);
  // Applies everything a checkpoint's quantization_config asks of the runtime (qrt::checkpoint_runtime):
  // the backend hint, tune_metadata, max_input_length, backends it rules out. Returns the warnings:
  // the fields it does not apply (one line each) and anything it could not read.
  std::vector<std::string> apply_checkpoint_runtime(const CheckpointRuntime& checkpoint);
  // The first checkpoint_params entry matching `layer_name`, or nullptr.
  const LayerOverride* checkpoint_params_for(const std::string& layer_name) const;
  // Records where `field` came from (replacing an older record of the same field).
  void set_provenance(const std::string& field, const std::string& source);
  std::string provenance_of(const std::string& field) const;  // "default" when never set
  // The first override whose pattern matches `layer_name`, or nullptr.
  const LayerOverride* override_for(const std::string& layer_name) const;
};

// Values given on the command line (unset = not given). Applied last: CLI flags win.
struct CliOverrides {
  std::optional<std::string> backend;
  std::optional<std::vector<std::string>> fallback;
  std::optional<std::vector<std::string>> disabled;   // added to the other sources' lists
  std::optional<int64_t> max_input_length;
  std::optional<int64_t> max_new_tokens;
  std::optional<int> threads;
  std::optional<std::string> tuning_cache_path;
  std::optional<bool> use_tuning_cache;
  std::optional<bool> ignore_bad_tuning_cache;
};

// The documented precedence in one place (docs/CONFIG.md): defaults < the checkpoint's
// quantization_config (backend hint, max_input_length, backends it rules out, HIGGS tune_metadata:
// the lowest-priority per-layer kernel parameters) < QRT_DISABLE_BACKENDS < config file < CLI flags.
// `config_path` "" = no file. Non-fatal findings (an unknown checkpoint backend name, runtime fields
// qrt does not apply) are appended to `warnings` when given. `config_json` is a config in the
// file's format given as text (the embedding APIs take one), applied right after the file; "" = none.
RuntimeConfig build_runtime_config(const CheckpointRuntime& checkpoint, const std::string& config_path,
                                   const CliOverrides& cli, std::vector<std::string>* warnings = nullptr,
                                   const std::string& config_json = "");

// The default tuning cache file: $QRT_TUNING_CACHE, else $XDG_CACHE_HOME/qrt/tuning.json, else
// ~/.cache/qrt/tuning.json.
std::string default_tuning_cache_path();

// Every name backend_alias accepts, with what it maps to ("marlin" -> "cuda_marlin"), for docs/help.
std::vector<std::pair<std::string, std::string>> backend_alias_table();

// Maps a reference-library backend name (transformers/GPTQModel/vLLM spellings: "marlin",
// "exllama_v2", "exllamav2", "gemm", "gemv", "torch", "cuda", "cpu", "ipex", "triton", ...) onto
// a qrt backend name. Returns "" with `why` filled for a name qrt does not implement.
std::string backend_alias(const std::string& name, std::string* why);

// Glob match used for per-layer overrides: '*' any run of characters, '?' one character.
bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace qrt
