// The options `qrt run` and `qrt perplexity` share to build an engine: backends, config file,
// device, threads, KV cache and load-time quantization. Registered once per command and turned
// into EngineOptions in one place, so the two commands cannot drift apart.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/runtime_config.h"
#include "qrt/thread_pool.h"

namespace qrt::cli {

struct EngineCliOptions {
  std::string backend, config_file, device = "auto", kv_cache = "f16", quantize;
  std::vector<std::string> fallback, disable;
  int threads = 0, group_size = 128;
  CLI::Option *o_backend = nullptr, *o_fallback = nullptr, *o_disable = nullptr, *o_threads = nullptr;

  void add_to(CLI::App& app) {
    o_backend = app.add_option("--backend", backend, "Backend for quantized layers: auto or a name (qrt plan lists them)");
    o_fallback = app.add_option("--fallback", fallback, "Backends to try in order when one fails, comma separated")
                     ->delimiter(',');
    o_disable = app.add_option("--disable", disable, "Backends never to choose, comma separated")->delimiter(',');
    app.add_option("--config", config_file, "Runtime config file (JSON, docs/CONFIG.md)");
    app.add_option("--device", device, "auto (the first CUDA GPU when one is present, else cpu), cpu or cuda:N")
        ->capture_default_str();
    o_threads = app.add_option("-t,--threads", threads, "CPU threads (default: all cores)")
                    ->check(CLI::Range(0, ThreadPool::kMaxThreads));
    app.add_option("--quantize", quantize, "Quantize a fp16/bf16/f32 checkpoint on load: int4 or int8")
        ->check(CLI::IsMember({"int4", "int8"}));
    app.add_option("--group-size", group_size, "Group size for --quantize (-1 = per row)")->capture_default_str();
    app.add_option("--kv-cache", kv_cache,
                   "KV cache storage of the CPU engine: f16 (half the memory and bytes per step of f32; "
                   "perplexity of the default model 17.3680 vs 17.3684) or f32. The GPU engine always stores fp16")
        ->capture_default_str();
  }

  // Checks what can be checked before the (slow) model load.
  void validate() const {
    if (kv_cache != "f32" && kv_cache != "f16") throw invalid_input("--kv-cache " + kv_cache + ": expected f32 or f16");
  }

  LoadOptions load_options() const {
    LoadOptions lo;
    lo.quantize = quantize;
    lo.group_size = group_size;
    return lo;
  }

  // `cli` holds the command's own settings (lengths, tuning cache); the shared flags are added here.
  // The runtime config is built over the checkpoint's backend hint and the config file, its
  // warnings printed; *device_why says how "auto" chose ("" for a named device).
  EngineOptions engine_options(const ModelWeights& weights, CliOverrides cli, std::string* device_why) const {
    validate();
    if (o_backend->count()) cli.backend = backend;
    if (o_fallback->count()) cli.fallback = fallback;
    if (o_disable->count()) cli.disabled = disable;
    if (o_threads->count()) cli.threads = threads;
    std::vector<std::string> warnings;
    EngineOptions eo;
    eo.runtime = build_runtime_config(weights.checkpoint_backend, config_file, cli, &warnings);
    for (const auto& w : warnings) std::fprintf(stderr, "qrt: warning: %s\n", w.c_str());
    eo.device = resolve_device(device, device_why);
    eo.kv_dtype = kv_cache == "f16" ? KvCacheDType::F16 : KvCacheDType::F32;
    return eo;
  }
};

}  // namespace qrt::cli
