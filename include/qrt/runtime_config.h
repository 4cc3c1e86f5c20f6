// How a user steers kernel choice: backend, fallback, disabled list, max_input_length, kernel
// parameters (global and per layer), tuning cache. Sources and their precedence are documented
// in docs/CONFIG.md; lowest first: built-in defaults < checkpoint quantization_config.backend
// < QRT_DISABLE_BACKENDS / config file (--config) < CLI flags.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qrt/backend.h"

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
  std::vector<LayerOverride> overrides;     // first match wins
  std::string tuning_cache_path;            // "" = default (~/.cache/qrt/tuning.json)
  bool use_tuning_cache = true;
  int threads = 0;                          // CPU threads; 0 = all cores
  // Where each field came from ("cli", "config file", "checkpoint", "env", "default"), for qrt plan.
  std::vector<std::pair<std::string, std::string>> provenance;

  // Parses the JSON config file format (docs/CONFIG.md). Throws naming the file and field.
  static RuntimeConfig from_json_file(const std::string& path, RuntimeConfig base);
  static RuntimeConfig from_json_text(const std::string& text, const std::string& origin, RuntimeConfig base);
  // Applies QRT_DISABLE_BACKENDS.
  void apply_environment();
  // The first override whose pattern matches `layer_name`, or nullptr.
  const LayerOverride* override_for(const std::string& layer_name) const;
};

// Maps a reference-library backend name (transformers/GPTQModel/vLLM spellings: "marlin",
// "exllama_v2", "exllamav2", "gemm", "gemv", "torch", "cuda", "cpu", "ipex", "triton", ...) onto
// a qrt backend name. Returns "" with `why` filled for a name qrt does not implement.
std::string backend_alias(const std::string& name, std::string* why);

// Glob match used for per-layer overrides: '*' any run of characters, '?' one character.
bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace qrt
