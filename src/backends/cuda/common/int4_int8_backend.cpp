// The adapter pieces cuda_gemv and cuda_marlin share (see int4_int8_backend.h).
#include "backends/cuda/common/int4_int8_backend.h"

#include <string>

namespace qrt::cuda {

Verdict Int4Int8Backend::check_int4_int8(const LayerSpec& layer, const DeviceInfo& device,
                                         const char* needs_sm80) const {
  Verdict v = check_capability(layer, device);
  if (!v.ok) return v;
  if (device.gpu.compute_capability() < 80)
    return Verdict::no(needs_sm80 + std::string("; device is sm_") + std::to_string(device.gpu.compute_capability()));
  if (std::string why = int4_pack_rejection(layer); !why.empty()) return Verdict::no(why);
  return Verdict::yes();
}

Int4Int8Upload upload_int4_int8(const QuantizedWeight& weight, const PrepareContext& context, bool reorder) {
  const DeviceInfo& device = context.device;
  DeviceGuard guard(device.gpu.index);
  DeviceContext& ctx = DeviceContext::get(device.gpu.index);
  Int4Int8Upload up;
  up.weight = shared_int4_weight(weight, device.gpu.index);
  up.scratch = reserve_int4_scratch(ctx, weight.K(), up.weight->view().perm != nullptr, context.max_rows,
                                    reorder);
  return up;
}

}  // namespace qrt::cuda
