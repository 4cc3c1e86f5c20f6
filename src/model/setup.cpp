// resolve_setup and the pieces engines share with it (see qrt/setup.h).
#include "qrt/setup.h"

#include <fmt/format.h>

#include "model/engine_plan.h"
#include "model/fused_projections.h"
#include "qrt/error.h"

namespace qrt {

std::string tuning_cache_file(const RuntimeConfig& runtime) {
  return runtime.tuning_cache_path.empty() ? default_tuning_cache_path() : runtime.tuning_cache_path;
}

bool engine_fuses_projections(const DeviceInfo& device, const RuntimeConfig& runtime) {
  return device.kind == DeviceKind::Cuda && runtime.fuse_projections;
}

std::shared_ptr<const TuningCache> open_tuning_cache(const RuntimeConfig& runtime, const DeviceInfo& device,
                                                     std::vector<std::string>* warnings) {
  if (!runtime.use_tuning_cache) return nullptr;
  auto cache = std::make_shared<TuningCache>(
      TuningCache::load(tuning_cache_file(runtime), device, runtime.ignore_bad_tuning_cache));
  if (warnings)
    for (const auto& w : cache->warnings()) warnings->push_back("tuning cache: " + w);
  return cache;
}

ModelPlan plan_model(const std::vector<LayerSpec>& quantized, const RuntimeConfig& runtime, const DeviceInfo& device,
                     const TuningCache* cache) {
  ModelPlan plan;
  plan.layers = plan_layers(quantized, runtime, device, cache);
  if (engine_fuses_projections(device, runtime))
    plan.fused = plan_layers(fused_layer_specs(quantized, runtime), runtime, device, cache);
  return plan;
}

std::shared_ptr<const ModelPlan> engine_plan(const ModelWeights& w, const EngineOptions& options,
                                             const std::function<void(const std::string&)>& log) {
  const std::vector<LayerSpec> specs = w.quantized_layer_specs();
  std::shared_ptr<const ModelPlan> plan = options.plan;
  if (!plan && !specs.empty()) {
    std::vector<std::string> warnings;
    const auto cache = open_tuning_cache(options.runtime, options.device, &warnings);
    for (const auto& warning : warnings)
      if (log) log(warning);
    plan = std::make_shared<const ModelPlan>(plan_model(specs, options.runtime, options.device, cache.get()));
  }
  if (!plan) plan = std::make_shared<const ModelPlan>();
  for (const LayerSpec& s : specs) {
    const LinearPlan* p = plan->find(s.name);
    if (!p) throw internal_error("the engine's plan has no layer " + s.name + " (planned for another model?)");
    if (p->layer.describe() != s.describe() || p->layer.in_features != s.in_features ||
        p->layer.out_features != s.out_features)
      throw internal_error(fmt::format("layer {}: planned as {} {}x{}, loaded as {} {}x{}", s.name, p->layer.describe(),
                                       p->layer.in_features, p->layer.out_features, s.describe(), s.in_features,
                                       s.out_features));
  }
  // One summary line first (the layer, why, what would work, how many layers fail), details after.
  if (const std::string failure = plan_failure_message(plan->layers); !failure.empty())
    throw Error(ErrorKind::NoBackend, failure);
  return plan;
}

EngineOptions ResolvedSetup::engine_options() const {
  EngineOptions eo;
  eo.runtime = runtime;
  eo.device = device;
  eo.plan = plan;
  return eo;
}

ResolvedSetup resolve_setup(const Checkpoint& checkpoint, const SetupRequest& request) {
  ResolvedSetup s;
  // What the checkpoint's quantization_config asks of the runtime, read here once: the backend it
  // names, HIGGS tune_metadata, max_input_length, backends it rules out, fields named in warnings.
  s.runtime = build_runtime_config(checkpoint_runtime(checkpoint.quantization()), request.config_file, request.cli,
                                   &s.warnings, request.config_json);

  const bool auto_device = request.target.empty() && (request.device.empty() || request.device == "auto");
  if (!request.target.empty()) {
    if (request.device != "auto" && !request.device.empty())
      throw invalid_input("--device and --target exclude each other (--target plans for a device that is not here)");
    s.device = target_profile(request.target);
  } else {
    s.device = resolve_device(request.device.empty() ? "auto" : request.device, &s.device_why);
  }

  const std::vector<LayerSpec> specs = quantized_linear_specs(checkpoint, request.load);
  std::vector<std::string> cache_warnings;
  s.tuning_cache = open_tuning_cache(s.runtime, s.device, &cache_warnings);
  s.plan = std::make_shared<const ModelPlan>(plan_model(specs, s.runtime, s.device, s.tuning_cache.get()));

  // --device auto took a GPU that some layer has no backend on: the CPU runs the model instead when
  // it can run every layer (otherwise the GPU plan and its errors stand, as for a named device).
  if (auto_device && s.device.kind == DeviceKind::Cuda) {
    if (const std::string why = auto_gpu_rejection(*s.plan, s.device); !why.empty()) {
      const DeviceInfo cpu = probe_cpu();
      std::vector<std::string> cpu_warnings;
      auto cpu_cache = open_tuning_cache(s.runtime, cpu, &cpu_warnings);
      auto cpu_plan = std::make_shared<const ModelPlan>(plan_model(specs, s.runtime, cpu, cpu_cache.get()));
      if (plan_failure_message(cpu_plan->layers).empty()) {
        s.device = cpu;
        s.device_why = why;
        s.tuning_cache = std::move(cpu_cache);
        s.plan = std::move(cpu_plan);
        cache_warnings = std::move(cpu_warnings);
      }
    }
  }
  s.warnings.insert(s.warnings.end(), cache_warnings.begin(), cache_warnings.end());
  if (s.tuning_cache) s.tuning_cache_path = tuning_cache_file(s.runtime);
  return s;
}

std::string auto_gpu_rejection(const ModelPlan& gpu_plan, const DeviceInfo& gpu) {
  const std::string failure = plan_failure_message(gpu_plan.layers);
  if (failure.empty()) return "";
  return fmt::format("auto: {} {} (sm_{}) has no backend for this model: {}; running on the CPU (--device {} "
                     "shows the GPU plan)",
                     gpu.id, gpu.gpu.name, gpu.gpu.compute_capability(), failure.substr(0, failure.find('\n')), gpu.id);
}

}  // namespace qrt
