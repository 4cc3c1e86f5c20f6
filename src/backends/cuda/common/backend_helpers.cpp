// Helpers shared by the CUDA backends (see backend_helpers.h).
#include "backends/cuda/common/backend_helpers.h"

#include <fmt/format.h>

#include <utility>

#include "backends/cuda_capabilities.h"
#include "qrt/error.h"

namespace qrt::cuda {

CudaBackend::CudaBackend(std::string name, std::string summary)
    : name_(std::move(name)), summary_(std::move(summary)), cap_(cuda_backend_declaration(name_).capability) {}

void check_prepare(const Backend& backend, const QuantizedWeight& weight, const KernelParams& params,
                   const DeviceInfo& device, bool check_layer) {
  const std::string& layer = weight.spec.name;
  if (device.kind != DeviceKind::Cuda)
    throw unsupported(layer + ": " + backend.name() + " needs a CUDA device, got " + device.id);
  if (Verdict v = backend.validate_params(weight.spec, params); !v.ok)
    throw invalid_input(layer + ": " + backend.name() + ": " + v.reason);
  if (!check_layer) return;
  if (Verdict v = backend.check(weight.spec, device); !v.ok) throw unsupported(layer + ": " + backend.name() + ": " + v.reason);
}

KernelParams zero_params(std::initializer_list<const char*> keys) {
  KernelParams p;
  for (const char* key : keys) p.values[key] = int64_t(0);
  return p;
}

Verdict validate_known_params(const KernelParams& params, std::initializer_list<IntParamRule> rules) {
  for (const auto& [key, value] : params.values) {
    const IntParamRule* rule = nullptr;
    for (const auto& r : rules)
      if (key == r.name) rule = &r;
    if (!rule) {
      std::string known;
      for (const auto& r : rules) known += (known.empty() ? "" : ", ") + std::string(r.name);
      return Verdict::no(fmt::format("unknown parameter '{}' (known: {})", key, known));
    }
    const int64_t* v = std::get_if<int64_t>(&value);
    if (!v) return Verdict::no(fmt::format("parameter '{}' must be an integer", key));
    if (*v < rule->min || *v > rule->max)
      return Verdict::no(fmt::format("parameter '{}' = {} out of range [{}, {}]", key, *v, rule->min, rule->max));
  }
  return Verdict::yes();
}

}  // namespace qrt::cuda
