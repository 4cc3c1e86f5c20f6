// Backend `cuda_marlin`: fp16/bf16 x 4/8-bit weights on tensor cores (mma.sync, sm_80+), the
// kernel of marlin_kernels.cu. Parameters: mt (8-token MMA tiles per block: 1/2/4, 0 = by M
// at run time), nt (n16 tiles per N-warp: 2 = 4x2 warps, or 1 = 8x1 warps with mt 2 or 4;
// 0 = 2), split (K partitions,
// 0 = automatic from the SM count). The default is all-automatic, so one prepared kernel serves a
// whole M range with the right tile for each M.
#include <fmt/format.h>

#include "backends/backend_factories.h"
#include "backends/cuda/common/int4_int8_backend.h"
#include "backends/cuda_capabilities.h"

namespace qrt {
namespace {

// The M-tile chosen for m rows when mt = 0: the smallest instantiated tile covering m, 32 above.
int auto_mt(int64_t m) { return m <= 8 ? 1 : m <= 16 ? 2 : 4; }
// Measured on H100 (bench/results/notes-int4.md, run 3): with the 32-token tile the 8x1 warp
// layout wins on wide layers (N >= 12288: 48 vs 60 µs at N = 22016, M = 32), 4x2 elsewhere.
int auto_nt(int mt, int64_t n) { return mt == 4 && n >= 12288 ? 1 : 2; }

class CudaMarlinLinear final : public cuda::Int4Int8Linear {
 public:
  CudaMarlinLinear(cuda::Int4Int8Upload upload, int mt, int nt, int split)
      : Int4Int8Linear(std::move(upload)), mt_(mt), nt_(nt), split_(split) {}

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ec) override {
    cuda::int4_forward(*w_, scratch_, x, y, ec,
                       [&](const cuda::Int4DeviceView& v, const void* xin, void* yout, int64_t rows, bool bf16,
                           const cuda::Int4Workspace& ws, int sms, cudaStream_t st) {
                         cuda::QmmConfig cfg;
                         cfg.mt = mt_ ? mt_ : auto_mt(rows);
                         cfg.nt = nt_ ? nt_ : auto_nt(cfg.mt, v.n);
                         cfg.split = split_;
                         return cuda::launch_qmm(v, xin, yout, rows, bf16, cfg, ws, sms, st);
                       });
  }

 private:
  int mt_, nt_, split_;
};

class CudaMarlinBackend final : public cuda::Int4Int8Backend {
 public:
  CudaMarlinBackend()
      : Int4Int8Backend("cuda_marlin",
                        "tensor-core int4/int8 x fp16/bf16 GEMM (Marlin-class, mma.sync, exact fp32 group scaling), "
                        "sm_80+") {}

  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    if (Verdict v = check_int4_int8(layer, device, "needs mma.sync and cp.async (sm_80+)"); !v.ok) return v;
    if (device.gpu.shared_mem_per_block_optin > 0 && device.gpu.shared_mem_per_block_optin < 96 * 1024)
      return Verdict::no(fmt::format("needs 96 KiB of shared memory per block, device allows {}",
                                     device.gpu.shared_mem_per_block_optin));
    return Verdict::yes_but(int4_float_zero_note(layer));
  }

  Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const override {
    Verdict v = cuda::validate_known_params(params, {{"mt", 0, 4}, {"nt", 0, 2}, {"split", 0, 16}});
    if (!v.ok) return v;
    const int64_t mt = params.get_int("mt", 0), nt = params.get_int("nt", 0);
    if (mt == 3) return Verdict::no("parameter 'mt' = 3 not instantiated (0, 1, 2 or 4)");
    if (mt && nt && !cuda::qmm_config_instantiated(static_cast<int>(mt), static_cast<int>(nt)))
      return Verdict::no(fmt::format("tile (mt {}, nt {}) not instantiated: nt 1 needs mt 2 or 4", mt, nt));
    if (nt == 1 && mt == 0) return Verdict::no("nt 1 needs an explicit mt (2 or 4)");
    return Verdict::yes();
  }

  KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    // All automatic: the tile follows the M of each call, the split the SM count.
    return cuda::zero_params({"mt", "nt", "split"});
  }

  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    std::vector<KernelParams> out;
    const int64_t want = auto_mt(m);
    for (int64_t mt : {int64_t(1), int64_t(2), int64_t(4)}) {
      if (mt < want && mt != 4 && m > 8 * mt * 4) continue;  // tiny tiles for large M re-stream too much
      if (mt > want && mt != 2) continue;
      for (int64_t nt : {int64_t(2), int64_t(1)}) {
        if (!cuda::qmm_config_instantiated(static_cast<int>(mt), static_cast<int>(nt))) continue;
        for (int64_t split : {int64_t(0), int64_t(1), int64_t(2), int64_t(4), int64_t(8)}) {
          // Split-K partials must fit the workspace (launch_qmm refuses the rest): skip those.
          const int64_t tiles = ((m + 8 * mt - 1) / (8 * mt)) * ((layer.out_features + 127) / 128);
          const int sms = std::max(device.gpu.sm_count, 1);
          if (!cuda::split_k_fits(tiles, split, 128 * 8 * mt,
                                  cuda::int4_max_partial_tiles(sms) * cuda::int4_max_tile_floats(),
                                  cuda::int4_counter_count(sms) - 64))
            continue;
          KernelParams p;
          p.values["mt"] = mt;
          p.values["nt"] = nt;
          p.values["split"] = split;
          out.push_back(p);
        }
      }
    }
    return out;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    const DeviceInfo& device = context.device;
    cuda::check_prepare(*this, weight, params, device, /*check_layer=*/true);
    return std::make_unique<CudaMarlinLinear>(cuda::upload_int4_int8(weight, context),
                                              static_cast<int>(params.get_int("mt", 0)),
                                              static_cast<int>(params.get_int("nt", 0)),
                                              static_cast<int>(params.get_int("split", 0)));
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_marlin_backend() { return std::make_unique<CudaMarlinBackend>(); }

}  // namespace qrt
