// The options that decide how a model runs, registered once for every command that runs or plans
// one and turned into a SetupRequest (qrt/setup.h) in one place: `qrt run`, `qrt perplexity` and
// `qrt plan` take the same backend, config file, device, quantize-on-load and tuning-cache flags,
// so the plan a person reads is made from the same inputs as the run. `run` and `perplexity` also
// take the engine's own options (threads, KV cache).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/text_escape.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/runtime_config.h"
#include "qrt/setup.h"
#include "qrt/thread_pool.h"

namespace qrt::cli {

struct EngineCliOptions {
  std::string backend, config_file, device = "auto", quantize, tuning_cache, kv_cache = "f16";
  std::vector<std::string> fallback, disable;
  int threads = 0, group_size = 128;
  bool no_tuning_cache = false, ignore_bad_tuning_cache = false;
  CLI::Option *o_backend = nullptr, *o_fallback = nullptr, *o_disable = nullptr, *o_threads = nullptr;

  // What decides the plan: run, perplexity and plan.
  void add_setup_options(CLI::App& app) {
    o_backend = app.add_option("--backend", backend, "Backend for quantized layers: auto or a name (qrt plan lists them)");
    o_fallback = app.add_option("--fallback", fallback, "Backends to try in order when one fails, comma separated")
                     ->delimiter(',');
    o_disable = app.add_option("--disable", disable, "Backends never to choose, comma separated")->delimiter(',');
    app.add_option("--config", config_file, "Runtime config file (JSON, docs/CONFIG.md)");
    app.add_option("--device", device, "auto (the first CUDA GPU when one is present, else cpu), cpu or cuda:N")
        ->capture_default_str();
    app.add_option("--quantize", quantize, "Quantize a fp16/bf16/f32 checkpoint on load: int4 or int8")
        ->check(CLI::IsMember({"int4", "int8"}));
    app.add_option("--group-size", group_size, "Group size for --quantize (-1 = per row)")->capture_default_str();
    app.add_option("--tuning-cache", tuning_cache, "Tuning cache file (default: ~/.cache/qrt/tuning.json)");
    app.add_flag("--no-tuning-cache", no_tuning_cache, "Ignore the tuning cache");
    app.add_flag("--ignore-bad-tuning-cache", ignore_bad_tuning_cache,
                 "Run on default parameters when the tuning cache is corrupt");
  }

  // The engine's own options: run and perplexity.
  void add_engine_options(CLI::App& app) {
    o_threads = app.add_option("-t,--threads", threads, "CPU threads (default: the CPUs this process may use, from its affinity mask)")
                    ->check(CLI::Range(0, ThreadPool::kMaxThreads));
    app.add_option("--kv-cache", kv_cache,
                   "KV cache storage: f16 (half the memory and bytes per step of f32; perplexity of the default "
                   "model 17.3680 vs 17.3684 on the CPU), f32 (CPU engine; the GPU engine stores f16) or fp8 "
                   "(e4m3, GPU engine only: half the bytes of f16)")
        ->capture_default_str();
  }

  // Checks what can be checked before the (slow) model load.
  void validate() const {
    if (kv_cache != "f32" && kv_cache != "f16" && kv_cache != "fp8")
      throw invalid_input("--kv-cache " + kv_cache + ": expected f32, f16 or fp8");
  }

  LoadOptions load_options() const {
    LoadOptions lo;
    lo.quantize = quantize;
    lo.group_size = group_size;
    return lo;
  }

  // `cli` holds the command's own settings (lengths); the shared flags are added here.
  SetupRequest setup_request(CliOverrides cli) const {
    validate();
    if (o_backend && o_backend->count()) cli.backend = backend;
    if (o_fallback && o_fallback->count()) cli.fallback = fallback;
    if (o_disable && o_disable->count()) cli.disabled = disable;
    if (o_threads && o_threads->count()) cli.threads = threads;
    if (!tuning_cache.empty()) cli.tuning_cache_path = tuning_cache;
    if (no_tuning_cache) cli.use_tuning_cache = false;
    if (ignore_bad_tuning_cache) cli.ignore_bad_tuning_cache = true;
    SetupRequest r;
    r.config_file = config_file;
    r.device = device;
    r.cli = std::move(cli);
    r.load = load_options();
    return r;
  }

  // The setup's engine options with the engine flags; prints the setup's warnings.
  EngineOptions engine_options(const ResolvedSetup& setup) const {
    for (const auto& w : setup.warnings) std::fprintf(stderr, "qrt: warning: %s\n", escape_message(w).c_str());
    EngineOptions eo = setup.engine_options();
    eo.kv_dtype = kv_cache == "f16" ? KvCacheDType::F16 : kv_cache == "fp8" ? KvCacheDType::Fp8E4M3 : KvCacheDType::F32;
    return eo;
  }
};

// The "device: cuda:0 (auto: ...)" log line of run, chat and perplexity: when --device auto took a
// GPU or passed over one that is here (it cannot run the model, and says why), or with -v. A CPU run
// on a machine without a GPU says nothing about CUDA unless the user asked for it.
inline void print_device_choice(const DeviceInfo& device, const std::string& why, bool verbose) {
  if (!why.empty() && (verbose || device.kind != DeviceKind::Cpu || !probe_cuda_devices().empty()))
    std::fprintf(stderr, "qrt: device: %s (%s)\n", device.id.c_str(), why.c_str());
}

}  // namespace qrt::cli
