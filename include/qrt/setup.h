// One setup path: everything `qrt run`, `perplexity`, `plan`, `tune` and `bench` decide before a
// kernel runs -- the runtime config (the checkpoint's backend hint and tune_metadata, the config
// file, the flags), the device, the tuning cache and the plan of every quantized linear, fused
// groups included -- decided by resolve_setup() from the checkpoint's metadata alone. The engine
// runs the plan it is given, so the plan a person reads is the plan that runs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qrt/checkpoint.h"
#include "qrt/device.h"
#include "qrt/model.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"
#include "qrt/tuning_cache.h"

namespace qrt {

// What a command asks for.
struct SetupRequest {
  std::string config_file;      // runtime config file (docs/CONFIG.md); "" = none
  std::string config_json;      // a runtime config as JSON text, applied over the file; "" = none
  std::string device = "auto";  // "auto", "cpu" or "cuda:N" (resolve_device)
  std::string target;           // a target profile (target_profile) instead of `device`: plans only
  CliOverrides cli;             // flags, applied last
  LoadOptions load;             // which linears the loaded model runs quantized (quantized_linear_specs)
};

struct ResolvedSetup {
  RuntimeConfig runtime;
  DeviceInfo device;
  std::string device_why;              // how "auto" chose ("" for a named device or a target)
  std::string tuning_cache_path;       // the file the plans read; "" when the tuning cache is off
  std::shared_ptr<const TuningCache> tuning_cache;  // null when off
  std::vector<std::string> warnings;   // config and tuning-cache findings, for the command to print
  std::shared_ptr<const ModelPlan> plan;
  // The engine options that run this setup (runtime, device, plan); the caller adds the rest.
  EngineOptions engine_options() const;
};

// Reads the checkpoint's metadata (no tensor data): its quantization_config backend hint and
// tune_metadata (once, here), the config file, the environment and the flags (build_runtime_config),
// resolves the device, opens the tuning cache and plans every layer the loaded model will run
// through a backend. Throws qrt::Error on bad input (config file, flags, device); a layer that no
// backend can run is not an error here: its plan carries the error (`qrt plan` lists them all,
// engines refuse to build).
ResolvedSetup resolve_setup(const Checkpoint& checkpoint, const SetupRequest& request);

// The rule of --device auto once it has picked a GPU: "" when every quantized layer of `gpu_plan`
// has a backend there, else the line saying which layer has none, for the log (resolve_setup then
// runs the model on the CPU when the CPU can run every layer).
std::string auto_gpu_rejection(const ModelPlan& gpu_plan, const DeviceInfo& gpu);

// The one rule for the tuning cache file: runtime.tuning_cache_path, else default_tuning_cache_path().
std::string tuning_cache_file(const RuntimeConfig& runtime);

// Whether the engine for `device` runs a block's q/k/v and gate/up as one linear each where their
// formats allow (the GPU engine does; fused_projections.h): then plans, tuning and benchmarks
// include those fused layers.
bool engine_fuses_projections(const DeviceInfo& device, const RuntimeConfig& runtime);

// The plans of `quantized` (a model's quantized linears in model order) on `device` under
// `runtime` with `cache` (may be null), and of their fused groups when the device's engine fuses.
// resolve_setup() plans through here; so does an engine built without a plan (from weights in
// memory), after opening the tuning cache the same way.
ModelPlan plan_model(const std::vector<LayerSpec>& quantized, const RuntimeConfig& runtime, const DeviceInfo& device,
                     const TuningCache* cache);

// The tuning cache `runtime` names for `device` (tuning_cache_file), null when use_tuning_cache is
// off; its warnings are appended to `warnings`. Throws on a corrupt file unless
// runtime.ignore_bad_tuning_cache.
std::shared_ptr<const TuningCache> open_tuning_cache(const RuntimeConfig& runtime, const DeviceInfo& device,
                                                     std::vector<std::string>* warnings);

}  // namespace qrt
