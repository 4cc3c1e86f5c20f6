// Backend `cuda_dequant`: the universal CUDA fallback. The weight stays packed on the device
// (packed_weight.h); M <= gemv_max_m runs a fused dequant-GEMV, larger M dequantizes W to
// fp16/bf16 tile by tile into the shared workspace and multiplies with cuBLAS (fp32 accumulate).
// Both paths take integer codes, FP8 and code books (NF4, FP4, GGUF IQ4).
#include <fmt/format.h>

#include "backends/backend_factories.h"
#include "backends/cuda_capabilities.h"
#include "backends/cuda/common/backend_helpers.h"
#include "backends/cuda/dequant/dequant_linear.h"

namespace qrt {
namespace {

using cuda::DeviceContext;

class CudaDequantBackend final : public cuda::CudaBackend {
 public:
  CudaDequantBackend()
      : CudaBackend("cuda_dequant",
                    "dequantize packed weights to fp16/bf16 tiles + cuBLAS; fused dequant-GEMV for small M") {}

  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    Verdict v = check_capability(layer, device);
    if (!v.ok) return v;
    if (layer.encoding != WeightEncoding::Fp8E4M3 && (layer.bits < 1 || layer.bits > 8))
      return Verdict::no(fmt::format("{}-bit codes unsupported: needs 1..8", layer.bits));
    // The same note a CPU-only build's stub gives (the shared declaration), so plans agree.
    std::string note = dequant_path_note(layer, device);
    // Its kernels exist for the architectures this binary was built for: an older GPU cannot run
    // them; a target profile is planned as a build for it would be, and the plan says so.
    if (const std::string gap = cuda_binary_gap(device.gpu); !gap.empty()) {
      if (!device.simulated()) return Verdict::no(gap);
      note = note.empty() ? gap : gap + "; " + note;
    }
    return note.empty() ? Verdict::yes() : Verdict::yes_but(note);
  }

  Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const override {
    return cuda::validate_known_params(
        params, {{"gemv_max_m", 0, 64}, {"tile_n", 0, int64_t(1) << 30}});
  }

  KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    KernelParams p;
    p.values["gemv_max_m"] = int64_t(8);
    return p;
  }

  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    std::vector<KernelParams> out;
    // Above 16 rows every candidate runs the same dequant + cuBLAS path: nothing to choose (a
    // "win" there is noise). Overlapping the dequantization of N slices with their GEMMs on a
    // side stream was measured on H100 (2026-11-28): 1.1-1.6 x slower at M = 128-1024 and 2 %
    // slower at 4096 (smaller GEMMs cost more than the hidden dequantization), so it is not offered.
    if (m > 16) return out;
    for (int64_t g : {int64_t(0), int64_t(4), int64_t(8), int64_t(16)}) {
      if (g > 0 && m > g) continue;
      KernelParams p;
      p.values["gemv_max_m"] = g;
      out.push_back(p);
    }
    return out;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    const DeviceInfo& device = context.device;
    cuda::check_prepare(*this, weight, params, device, /*check_layer=*/false);
    cuda::DeviceGuard guard(device.gpu.index);
    DeviceContext& ctx = DeviceContext::get(device.gpu.index);
    cuda::PackedWeight packed = cuda::PackedWeight::pack(weight);
    const int64_t tile = cuda::dequant_tile_rows(weight.N(), weight.K(), params.get_int("tile_n", 0));
    ctx.reserve_workspace(static_cast<size_t>(tile * cuda::dequant_ld(weight.K()) * 2));
    ctx.cublas();
    return std::make_unique<cuda::DequantLinear>(std::move(packed), ctx, params.get_int("gemv_max_m", 8), tile);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_dequant_backend() { return std::make_unique<CudaDequantBackend>(); }

}  // namespace qrt
