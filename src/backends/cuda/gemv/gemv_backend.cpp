// Backend `cuda_gemv`: the streaming kernel (gemv_kernels.cu: up to 32 rows a launch; the plan's
// choice for M <= 16) on the same packed layout as cuda_marlin (one device copy when both serve a
// layer). Parameters: wt (n16 tiles per block,
// 2 or 4; 0 = 4 for N >= 16384 else 2, as measured), split (K partitions, 0 = automatic: none
// where a block's slice is at most 32 KB, else from the SM count), bulk (1 = the sm_90 variant
// whose weights arrive through bulk copies into shared memory, every byte requested at the start;
// K is then split until a block's slice fits 48 KB; 0 by default, 1 for layers of at most 4 MB of
// codes at up to 8 rows on sm_90+). wt and bulk choose among the kernels for up
// to 8 rows; 9 to 32 rows run the wt 2 register-ring kernel with two or four token tiles, so the
// tuning space of those M offers split alone.
#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>

#include "backends/backend_factories.h"
#include "backends/cuda/common/int4_int8_backend.h"
#include "backends/cuda_capabilities.h"

namespace qrt {
namespace {

class CudaGemvLinear final : public cuda::Int4Int8Linear {
 public:
  CudaGemvLinear(cuda::Int4Int8Upload upload, int wt, int split, bool bulk)
      : Int4Int8Linear(std::move(upload)), wt_(wt), split_(split), bulk_(bulk) {}

  // The decode step's residual / norm / SwiGLU work in the kernel's prologue and epilogue: one
  // launch (M <= 8) reading its input rows in the activations' order (no act-order permutation).
  bool fuses(const LinearFusion& f, int64_t m, DType dtype) const override {
    if (m < 1 || m > 8 || w_->view().perm || (dtype != DType::F16 && dtype != DType::BF16)) return false;
    if (f.input == LinearFusion::Input::RmsNorm && (!f.norm_residual || !f.norm_weight)) return false;
    if (f.norm_sumsq && (f.input != LinearFusion::Input::RmsNorm || w_->view().k % 16 != 0)) return false;
    if (f.residual_sumsq_out && !f.residual_out) return false;
    if (f.input == LinearFusion::Input::SiluMul &&
        (!f.gate || !f.up || f.gate_up_stride < w_->view().k || f.gate_up_stride % 2 != 0))
      return false;
    // The prologues load at least two elements at a time (float2 of the norm's rows and weight,
    // a pair of halves of gate and up); the wide loads are taken only where 16 bytes line up.
    auto aligned = [](const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; };
    if (f.input == LinearFusion::Input::RmsNorm &&
        (!aligned(f.norm_residual, 8) || !aligned(f.norm_weight, 8) || (f.norm_sumsq && !aligned(f.norm_sumsq, 4))))
      return false;
    if (f.input == LinearFusion::Input::SiluMul && (!aligned(f.gate, 4) || !aligned(f.up, 4))) return false;
    return true;
  }

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ec) override {
    // Fused work only where fuses() said yes: M <= 8, so one launch below carries it.
    cuda::GemvFusion gf;
    const bool fused = ec.fusion && ec.fusion->any();
    if (fused) gf = gemv_fusion(*ec.fusion);
    cuda::int4_forward(*w_, scratch_, x, y, ec,
                       [&](const cuda::Int4DeviceView& v, const void* xin, void* yout, int64_t rows, bool bf16,
                           const cuda::Int4Workspace& ws, int sms, cudaStream_t st) {
                         // More rows than one launch takes (outside max_m): correct, in launches
                         // of kGemvMaxRows.
                         for (int64_t r = 0; r < rows; r += cuda::kGemvMaxRows) {
                           const int64_t n = std::min<int64_t>(cuda::kGemvMaxRows, rows - r);
                           cudaError_t e = cuda::launch_int4_gemv(
                               v, static_cast<const unsigned char*>(xin) + r * v.k * 2,
                               static_cast<unsigned char*>(yout) + r * v.n * 2, n, bf16,
                               cuda::GemvConfig{wt_ ? wt_ : (v.n >= 16384 ? 4 : 2), split_, true, bulk_}, ws, sms, st,
                               fused ? &gf : nullptr);
                           if (e != cudaSuccess) return e;
                         }
                         return cudaSuccess;
                       });
  }

 private:
  static cuda::GemvFusion gemv_fusion(const LinearFusion& f) {
    cuda::GemvFusion gf;
    gf.prologue = f.input == LinearFusion::Input::RmsNorm ? 1 : f.input == LinearFusion::Input::SiluMul ? 2 : 0;
    gf.norm_residual = f.norm_residual;
    gf.norm_weight = f.norm_weight;
    gf.norm_eps = f.norm_eps;
    gf.gate = f.gate;
    gf.up = f.up;
    gf.gate_up_stride = f.gate_up_stride;
    gf.residual_out = f.residual_out;
    gf.norm_sumsq = f.norm_sumsq;
    gf.residual_sumsq_out = f.residual_sumsq_out;
    return gf;
  }

  int wt_, split_;
  bool bulk_;
};

class CudaGemvBackend final : public cuda::Int4Int8Backend {
 public:
  CudaGemvBackend()
      : Int4Int8Backend("cuda_gemv",
                        "int4/int8 x fp16/bf16 streaming GEMV for M <= 16 (16-byte loads, 8 in flight, mma.sync), "
                        "sm_80+") {}

  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    if (Verdict v = check_int4_int8(layer, device, "this GEMV runs on mma.sync tensor cores (sm_80+)"); !v.ok)
      return v;
    return Verdict::yes_but(int4_float_zero_note(layer));
  }

  Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const override {
    Verdict v = cuda::validate_known_params(params, {{"wt", 0, 4}, {"split", 0, 16}, {"bulk", 0, 1}});
    if (!v.ok) return v;
    const int64_t wt = params.get_int("wt", 0);
    if (wt != 0 && !cuda::gemv_config_instantiated(static_cast<int>(wt)))
      return Verdict::no(fmt::format("parameter 'wt' = {} not instantiated (0, 2 or 4)", wt));
    return Verdict::yes();
  }

  KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    KernelParams p = cuda::zero_params({"wt", "split", "bulk"});
    // Small layers (SmolLM2's) take the bulk-copy kernel for up to 8 rows on sm_90+: it requests
    // a block's whole weight slice before the PDL wait, so a launch's weights are on their way
    // while the kernel before it ends. Measured end to end (H100, 2026-12-07, docs/PERFORMANCE.md):
    // SmolLM2 decoded 1788 / 1774 tokens/s with it against 1673 / 1656 without (two calls), and
    // the Llama-2-7B shape (layers of 8 MB and more) 385 against 512, hence the size limit.
    const int64_t packed_bytes = layer.in_features * layer.out_features * layer.bits / 8;
    if (device.gpu.compute_capability() >= 90 && m <= 8 && packed_bytes <= kBulkDefaultMaxBytes) p.values["bulk"] = 1;
    return p;
  }
  static constexpr int64_t kBulkDefaultMaxBytes = int64_t(4) << 20;

  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    std::vector<KernelParams> out;
    if (m > cuda::kGemvMaxRows) return out;
    const bool bulk_ok = device.gpu.compute_capability() >= 90;
    const bool few_rows = m <= 8;  // wt and bulk choose a kernel only up to 8 rows
    for (int64_t bulk : {int64_t(0), int64_t(1)})
      for (int64_t wt : {int64_t(2), int64_t(4)})
        for (int64_t split : {int64_t(0), int64_t(1), int64_t(2), int64_t(4)}) {
          // The bulk variant splits K by its shared-memory budget: only the automatic split.
          if (bulk && (!bulk_ok || split != 0)) continue;
          if (!few_rows && (bulk || wt != 2)) continue;
          KernelParams p;
          p.values["wt"] = wt;
          p.values["split"] = split;
          p.values["bulk"] = bulk;
          out.push_back(p);
        }
    return out;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    const DeviceInfo& device = context.device;
    cuda::check_prepare(*this, weight, params, device, /*check_layer=*/true);
    const bool bulk = params.get_int("bulk", 0) != 0;
    if (bulk && device.gpu.compute_capability() < 90)
      throw std::runtime_error(fmt::format("cuda_gemv: parameter 'bulk' = 1 needs sm_90 or newer (bulk copies); device is sm_{}",
                                           device.gpu.compute_capability()));
    return std::make_unique<CudaGemvLinear>(cuda::upload_int4_int8(weight, context),
                                            static_cast<int>(params.get_int("wt", 0)),
                                            static_cast<int>(params.get_int("split", 0)), bulk);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_gemv_backend() { return std::make_unique<CudaGemvBackend>(); }

}  // namespace qrt
