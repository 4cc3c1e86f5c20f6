// Backend `cuda_marlin`: fp16/bf16 x 4/8-bit weights on tensor cores: the mma.sync kernel of
// marlin_kernels.cu (sm_80+) and, on compute capability 9.0, the wgmma kernel of
// wgmma/wgmma_kernels.cu for 4-bit codes with symmetric or integer zeros. Parameters: wg (the
// wgmma kernel's token tile 16/32/64/128, -1 = never, 0 = automatic: from kWgmmaMinRows rows where
// it runs), mt (the mma.sync kernel's 8-token MMA tiles per block: 1/2/4, 0 = by M at run time), nt
// (n16 tiles per N-warp: 2 = 4x2 warps, or 1 = 8x1 warps with mt 2 or 4; 0 = 2), split (K
// partitions, 0 = automatic from the SM count), stream_k (the wgmma kernel's schedule: 1 = stream-K,
// every SM the same share of the layer's k-steps, split unused; -1 = tiles and split; 0 = automatic,
// stream-K where the blocks would need more than one wave, as prefer_stream_k says). The default
// is all-automatic, so one prepared kernel serves a whole M range with the right kernel and tile
// for each M.
#include <fmt/format.h>

#include "backends/backend_factories.h"
#include "backends/cuda/common/int4_int8_backend.h"
#include "backends/cuda_capabilities.h"
#include "qrt/error.h"

namespace qrt {
namespace {

// The M-tile chosen for m rows when mt = 0: the smallest instantiated tile covering m, 32 above.
int auto_mt(int64_t m) { return m <= 8 ? 1 : m <= 16 ? 2 : 4; }
// Measured on H100 (bench/results/notes-int4.md, run 3): with the 32-token tile the 8x1 warp
// layout wins on wide layers (N >= 12288: 48 vs 60 µs at N = 22016, M = 32), 4x2 elsewhere.
int auto_nt(int mt, int64_t n) { return mt == 4 && n >= 12288 ? 1 : 2; }

// Rows from which the automatic choice (and qrt tune) takes the wgmma kernel where it runs, and its
// token tile for m rows: the smallest tile covering m, 128 above. Measured on an H100 (2026-12-06,
// four Llama-2-7B linears summed, µs, wgmma / mma.sync): M 16 99.8 / 91.0, 32 114.4 / 122.5, 64
// 173.5 / 204.4, 128 245.6 / 369.0 (docs/KNOWN_ISSUES.md, the entry on the wgmma kernel).
constexpr int64_t kWgmmaMinRows = 17;
int auto_bt(int64_t m) { return m <= 16 ? 16 : m <= 32 ? 32 : m <= 64 ? 64 : 128; }

// Why the wgmma kernel cannot run `layer` on `device` ("" when it can).
std::string wgmma_obstacle(const LayerSpec& layer, const DeviceInfo& device) {
  if (!cuda::wgmma_kernels_built()) return "this binary has no sm_90a code (QRT_CUDA_ARCHS without 90)";
  if (device.gpu.compute_capability() != 90)
    return "sm_90a code runs on compute capability 9.0 only; device is sm_" + std::to_string(device.gpu.compute_capability());
  if (layer.bits != 4) return "needs 4-bit codes";
  if (layer.zero_kind == ZeroKind::Float) return "float zero points run on the mma.sync kernel";
  return "";
}

class CudaMarlinLinear final : public cuda::Int4Int8Linear {
 public:
  CudaMarlinLinear(cuda::Int4Int8Upload upload, int wg, int mt, int nt, int split, int stream_k)
      : Int4Int8Linear(std::move(upload)), wg_(wg), mt_(mt), nt_(nt), split_(split), stream_k_(stream_k) {}

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ec) override {
    cuda::int4_forward(*w_, scratch_, x, y, ec,
                       [&](const cuda::Int4DeviceView& v, const void* xin, void* yout, int64_t rows, bool bf16,
                           const cuda::Int4Workspace& ws, int sms, cudaStream_t st) {
                         if (wg_ > 0 || (wg_ == 0 && rows >= kWgmmaMinRows)) {
                           cuda::WgmmaConfig wc;
                           wc.bt = wg_ > 0 ? wg_ : auto_bt(rows);
                           wc.split = split_;
                           wc.stream_k = stream_k_;
                           return cuda::launch_qmm_wgmma(v, xin, yout, rows, bf16, wc, ws, sms, st);
                         }
                         cuda::QmmConfig cfg;
                         cfg.mt = mt_ ? mt_ : auto_mt(rows);
                         cfg.nt = nt_ ? nt_ : auto_nt(cfg.mt, v.n);
                         cfg.split = split_;
                         return cuda::launch_qmm(v, xin, yout, rows, bf16, cfg, ws, sms, st);
                       });
  }

 private:
  int wg_;  // -1: mma.sync only (also where wgmma cannot run), 0: automatic, > 0: that token tile
  int mt_, nt_, split_;
  int stream_k_;  // WgmmaConfig::stream_k
};

class CudaMarlinBackend final : public cuda::Int4Int8Backend {
 public:
  CudaMarlinBackend()
      : Int4Int8Backend("cuda_marlin",
                        "tensor-core int4/int8 x fp16/bf16 GEMM (Marlin-class, mma.sync, exact fp32 group scaling), "
                        "sm_80+; wgmma on sm_90 for 4-bit") {}

  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    if (Verdict v = check_int4_int8(layer, device, "needs mma.sync and cp.async (sm_80+)"); !v.ok) return v;
    if (device.gpu.shared_mem_per_block_optin > 0 && device.gpu.shared_mem_per_block_optin < 96 * 1024)
      return Verdict::no(fmt::format("needs 96 KiB of shared memory per block, device allows {}",
                                     device.gpu.shared_mem_per_block_optin));
    std::string note = int4_float_zero_note(layer);
    if (wgmma_obstacle(layer, device).empty())
      note += (note.empty() ? "" : "; ") + std::string("from ") + std::to_string(kWgmmaMinRows) +
              " rows the Hopper kernel (wgmma, parameter wg)";
    return Verdict::yes_but(note);
  }

  Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const override {
    Verdict v = cuda::validate_known_params(
        params, {{"wg", -1, 128}, {"mt", 0, 4}, {"nt", 0, 2}, {"split", 0, 16}, {"stream_k", -1, 1}});
    if (!v.ok) return v;
    const int64_t wg = params.get_int("wg", 0);
    if (wg != -1 && wg != 0 && wg != 16 && wg != 32 && wg != 64 && wg != 128)
      return Verdict::no(fmt::format("parameter 'wg' = {}: the wgmma token tile is 16, 32, 64 or 128 (-1 never, 0 "
                                     "automatic)", wg));
    if (wg > 0 && (layer.bits != 4 || layer.zero_kind == ZeroKind::Float))
      return Verdict::no("parameter 'wg' > 0: the wgmma kernel runs 4-bit codes with symmetric or integer zeros");
    if (params.get_int("stream_k", 0) == 1 && wg == -1)
      return Verdict::no("parameter 'stream_k' = 1 is the wgmma kernel's schedule; 'wg' = -1 never runs it");
    const int64_t mt = params.get_int("mt", 0), nt = params.get_int("nt", 0);
    if (mt == 3) return Verdict::no("parameter 'mt' = 3 not instantiated (0, 1, 2 or 4)");
    if (mt && nt && !cuda::qmm_config_instantiated(static_cast<int>(mt), static_cast<int>(nt)))
      return Verdict::no(fmt::format("tile (mt {}, nt {}) not instantiated: nt 1 needs mt 2 or 4", mt, nt));
    if (nt == 1 && mt == 0) return Verdict::no("nt 1 needs an explicit mt (2 or 4)");
    return Verdict::yes();
  }

  KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    // All automatic: the tile follows the M of each call, the split the SM count.
    return cuda::zero_params({"wg", "mt", "nt", "split", "stream_k"});
  }

  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    std::vector<KernelParams> out;
    const int sms = std::max(device.gpu.sm_count, 1);
    // The workspace the backend reserves, less the counter margin the automatic split keeps.
    const int64_t partial_floats = cuda::int4_max_partial_tiles(sms) * cuda::int4_max_tile_floats();
    const int64_t counters = cuda::int4_counter_count(sms) - 64;
    if (wgmma_obstacle(layer, device).empty() && m >= kWgmmaMinRows) {
      const int64_t want_bt = auto_bt(m);
      for (int64_t bt : {int64_t(16), int64_t(32), int64_t(64), int64_t(128)}) {
        if (bt > want_bt || bt * 4 < want_bt) continue;  // smaller tiles re-stream the weights per tile
        const int64_t tiles = ((m + bt - 1) / bt) * ((layer.out_features + 127) / 128);
        for (int64_t split : {int64_t(0), int64_t(1), int64_t(2), int64_t(4), int64_t(8)}) {
          if (!cuda::split_k_fits(tiles, split, 128 * bt, partial_floats, counters)) continue;
          KernelParams p;
          p.values = {{"wg", bt}, {"mt", int64_t(0)}, {"nt", int64_t(0)}, {"split", split}, {"stream_k", int64_t(-1)}};
          out.push_back(p);
        }
        // Stream-K: up to two blocks an SM, two partial tiles a block.
        if (cuda::stream_k_fits(tiles, int64_t(sms) * 2, 128 * bt, partial_floats, counters)) {
          KernelParams p;
          p.values = {{"wg", bt}, {"mt", int64_t(0)}, {"nt", int64_t(0)}, {"split", int64_t(0)}, {"stream_k", int64_t(1)}};
          out.push_back(p);
        }
      }
    }
    const int64_t want = auto_mt(m);
    for (int64_t mt : {int64_t(1), int64_t(2), int64_t(4)}) {
      if (mt < want && mt != 4 && m > 8 * mt * 4) continue;  // tiny tiles for large M re-stream too much
      if (mt > want && mt != 2) continue;
      for (int64_t nt : {int64_t(2), int64_t(1)}) {
        if (!cuda::qmm_config_instantiated(static_cast<int>(mt), static_cast<int>(nt))) continue;
        for (int64_t split : {int64_t(0), int64_t(1), int64_t(2), int64_t(4), int64_t(8)}) {
          // Split-K partials must fit the workspace (launch_qmm refuses the rest): skip those.
          const int64_t tiles = ((m + 8 * mt - 1) / (8 * mt)) * ((layer.out_features + 127) / 128);
          if (!cuda::split_k_fits(tiles, split, 128 * 8 * mt, partial_floats, counters)) continue;
          KernelParams p;
          p.values["wg"] = int64_t(-1);
          p.values["mt"] = mt;
          p.values["nt"] = nt;
          p.values["split"] = split;
          p.values["stream_k"] = int64_t(0);
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
    const std::string wg_why = wgmma_obstacle(weight.spec, device);
    int wg = static_cast<int>(params.get_int("wg", 0));
    if (wg > 0 && !wg_why.empty())
      throw unsupported(weight.spec.name + ": cuda_marlin: parameter wg = " + std::to_string(wg) +
                        " asks for the wgmma kernel, which cannot run it: " + wg_why);
    if (wg == 0 && !wg_why.empty()) wg = -1;
    // The wgmma kernel reads its activations reordered into the packed k order: room for that copy.
    return std::make_unique<CudaMarlinLinear>(cuda::upload_int4_int8(weight, context, wg != -1), wg,
                                              static_cast<int>(params.get_int("mt", 0)),
                                              static_cast<int>(params.get_int("nt", 0)),
                                              static_cast<int>(params.get_int("split", 0)),
                                              static_cast<int>(params.get_int("stream_k", 0)));
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_marlin_backend() { return std::make_unique<CudaMarlinBackend>(); }

}  // namespace qrt
