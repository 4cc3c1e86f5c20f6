// Helpers shared by the CUDA backends (see cuda_backend_common.h).
#include "backends/cuda/cuda_backend_common.h"

#include <fmt/format.h>

#include "backends/cuda_capabilities.h"
#include "qrt/error.h"

namespace qrt::cuda {

BackendCapability cuda_backend_capability(const std::string& name) { return cuda_backend_declaration(name).capability; }

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

void check_act_shapes(const char* backend, int64_t k, int64_t n, const ActTensor& x, const ActTensor& y) {
  if (x.device != DeviceKind::Cuda || y.device != DeviceKind::Cuda)
    throw invalid_input(fmt::format("{}: activations must live on the CUDA device", backend));
  if ((x.dtype != DType::F16 && x.dtype != DType::BF16) || y.dtype != x.dtype)
    throw invalid_input(fmt::format("{}: activations must be F16 or BF16 (x {}, y {})", backend,
                                    dtype_name(x.dtype), dtype_name(y.dtype)));
  if (x.cols != k || y.cols != n || x.rows != y.rows || x.rows < 1)
    throw invalid_input(fmt::format("{}: x is {}x{}, y is {}x{}; the layer needs x Mx{} and y Mx{}", backend, x.rows,
                                    x.cols, y.rows, y.cols, k, n));
  if (!x.data || !y.data) throw invalid_input(fmt::format("{}: null activation pointer", backend));
}

}  // namespace qrt::cuda
