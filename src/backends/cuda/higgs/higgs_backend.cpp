// Backend `cuda_higgs`: HIGGS (rotated-codebook) weights on a CUDA GPU without expanding them to
// fp16 for decode. W = V H, so y = x W^T = (x H) V^T: every call rotates its activation rows by the
// block Hadamard transform, then
//   M <= lut_max_m: the lookup kernel (grid in shared memory, one byte per grid vector read from
//                   memory, fp32 sums), in launches of up to 8 rows;
//   larger M:       cuBLAS over the rotated rows and V as fp16 (kept from prepare when device memory
//                   allows and keep_fp16 = 1) or as fp16/bf16 tiles decoded into the workspace.
// Parameters: tile_n (output rows per block of the lookup kernel: 8 .. 512; a HIGGS checkpoint's
// tune_metadata sets it per layer, FLUTE's packing tile), split (K slices of the lookup kernel,
// 0 = from the SM count), lut_max_m (0 .. 64), keep_fp16 (0 / 1). docs/HIGGS.md has the layout.
#include <fmt/format.h>

#include <algorithm>

#include "backends/backend_factories.h"
#include "backends/cuda/common/backend_helpers.h"
#include "backends/cuda/dequant/packed_weight.h"
#include "backends/cuda/higgs/higgs_weight.h"
#include "gpu/cublas.h"

namespace qrt {
namespace {

using cuda::DeviceContext;

const std::vector<int64_t> kTileN = {8, 16, 32, 64, 128, 256, 512};
constexpr int64_t kDefaultTileN = 16;
constexpr int64_t kDefaultLutMaxM = 8;
constexpr int64_t kLutRowsPerLaunch = 8;

size_t align256(size_t v) { return (v + 255) / 256 * 256; }

// Where one call's scratch lives in the device workspace (both paths start at offset 0; they never
// run at once).
struct HiggsScratch {
  // lookup path: rotated rows (fp32, stride ldx) | partial sums of the K slices
  int64_t ldx = 0;
  size_t partial_offset = 0;
  size_t lut_bytes = 0;
  // GEMM path: rotated rows (x's dtype, stride K) | fp32 first pass (hadamard_size > 4096) | V tile
  int64_t chunk_rows = 0;
  size_t mid_offset = 0;
  size_t tile_offset = 0;
  int64_t tile_rows = 0;
  size_t gemm_bytes = 0;
};

class CudaHiggsLinear final : public PreparedLinear {
 public:
  CudaHiggsLinear(std::shared_ptr<const cuda::HiggsDeviceWeight> weight, std::shared_ptr<const cuda::HiggsFp16Copy> fp16,
                  DeviceContext& ctx, const cuda::HiggsLutGeometry& geometry, int64_t lut_max_m,
                  const HiggsScratch& scratch)
      : weight_(std::move(weight)), fp16_(std::move(fp16)), ctx_(ctx), geometry_(geometry), lut_max_m_(lut_max_m),
        scratch_(scratch) {}

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ec) override {
    const cuda::HiggsView& w = weight_->view();
    const cudaStream_t st = cuda::as_stream(ec.cuda_stream);
    const int64_t rows = x.rows;
    if (rows <= 0) return;
    char* ws = static_cast<char*>(ctx_.workspace());
    const size_t esz = 2;  // F16 / BF16
    if (rows <= lut_max_m_) {
      float* xr = reinterpret_cast<float*>(ws);
      float* partial = reinterpret_cast<float*>(ws + scratch_.partial_offset);
      cuda::launch_higgs_rotate(w, x.data, x.dtype, rows, xr, /*out_f32=*/true, scratch_.ldx, nullptr, st);
      for (int64_t m0 = 0; m0 < rows; m0 += kLutRowsPerLaunch) {
        const int64_t mm = std::min(kLutRowsPerLaunch, rows - m0);
        cuda::launch_higgs_lut(w, geometry_, xr + m0 * scratch_.ldx, scratch_.ldx, mm,
                               static_cast<char*>(y.data) + m0 * w.n * esz, x.dtype, partial, st);
      }
      return;
    }
    void* xr = ws;
    float* mid = reinterpret_cast<float*>(ws + scratch_.mid_offset);
    void* tile = ws + scratch_.tile_offset;
    const int64_t ldv = cuda::higgs_ldv(w.k);
    cublasHandle_t handle = ctx_.cublas();
    for (int64_t m0 = 0; m0 < rows; m0 += scratch_.chunk_rows) {
      const int64_t mm = std::min(scratch_.chunk_rows, rows - m0);
      cuda::launch_higgs_rotate(w, static_cast<const char*>(x.data) + m0 * w.k * esz, x.dtype, mm, xr,
                                /*out_f32=*/false, w.k, mid, st);
      char* yc = static_cast<char*>(y.data) + m0 * w.n * esz;
      if (fp16_ && x.dtype == DType::F16) {
        cuda::gemm_xwt(handle, xr, fp16_->v.get(), fp16_->ld, yc, w.n, mm, w.n, w.k, x.dtype, st);
        continue;
      }
      for (int64_t n0 = 0; n0 < w.n; n0 += scratch_.tile_rows) {
        const int64_t nr = std::min(scratch_.tile_rows, w.n - n0);
        cuda::launch_higgs_decode(w, n0, nr, tile, ldv, x.dtype, st);
        cuda::gemm_xwt(handle, xr, tile, ldv, yc + n0 * esz, w.n, mm, nr, w.k, x.dtype, st);
      }
    }
    if (w.bias) cuda::launch_add_bias(w.bias, y.data, rows, w.n, x.dtype, st);
  }

  int64_t weight_bytes() const override {
    return weight_->bytes() + (fp16_ ? static_cast<int64_t>(fp16_->v.bytes()) : 0);
  }

 private:
  std::shared_ptr<const cuda::HiggsDeviceWeight> weight_;
  std::shared_ptr<const cuda::HiggsFp16Copy> fp16_;
  DeviceContext& ctx_;
  cuda::HiggsLutGeometry geometry_;
  int64_t lut_max_m_;
  HiggsScratch scratch_;
};

class CudaHiggsBackend final : public cuda::CudaBackend {
 public:
  CudaHiggsBackend()
      : CudaBackend("cuda_higgs",
                    "HIGGS rotated-codebook weights: Hadamard-rotated activations, grid-lookup GEMV for small M, "
                    "fp16 V + cuBLAS above") {}

  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    Verdict v = check_capability(layer, device);
    if (!v.ok) return v;
    if (const std::string why = higgs_layer_obstacle(layer); !why.empty()) return Verdict::no(why);
    if (const std::string gap = cuda_binary_gap(device.gpu); !gap.empty())
      return device.simulated() ? Verdict::yes_but(gap) : Verdict::no(gap);
    return Verdict::yes();
  }

  Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const override {
    Verdict v = cuda::validate_known_params(
        params, {{"tile_n", 8, 512}, {"split", 0, 64}, {"lut_max_m", 0, 64}, {"keep_fp16", 0, 1}});
    if (!v.ok) return v;
    if (params.has("tile_n")) {
      const int64_t t = params.get_int("tile_n", kDefaultTileN);
      if (std::find(kTileN.begin(), kTileN.end(), t) == kTileN.end())
        return Verdict::no(fmt::format("parameter 'tile_n' = {}: expected one of 8, 16, 32, 64, 128, 256, 512", t));
    }
    return Verdict::yes();
  }

  KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    KernelParams p;
    p.values["tile_n"] = kDefaultTileN;
    p.values["lut_max_m"] = kDefaultLutMaxM;
    return p;
  }

  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    std::vector<KernelParams> out;
    if (m <= 64)
      for (int64_t t : {8, 16, 32, 64, 128, 256}) {
        KernelParams p;
        p.values["tile_n"] = t;
        p.values["lut_max_m"] = std::max(kDefaultLutMaxM, m);
        out.push_back(p);
      }
    if (m > 1 && m <= kDefaultLutMaxM) {  // the cuBLAS path for an M the default runs on the lookup kernel
      KernelParams p = default_params(layer, m, device);
      p.values["lut_max_m"] = m - 1;
      out.push_back(p);
    }
    return out;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    const DeviceInfo& device = context.device;
    const LayerSpec& s = weight.spec;
    cuda::check_prepare(*this, weight, params, device, /*check_layer=*/true);
    weight.validate();
    cuda::DeviceGuard guard(device.gpu.index);
    DeviceContext& ctx = DeviceContext::get(device.gpu.index);
    auto dw = cuda::shared_higgs_weight(weight, device.gpu.index);
    const cuda::HiggsView& w = dw->view();

    const int64_t lut_max_m = params.get_int("lut_max_m", kDefaultLutMaxM);
    const cuda::HiggsLutGeometry geometry =
        cuda::higgs_lut_geometry(w, static_cast<int>(params.get_int("tile_n", kDefaultTileN)),
                                 static_cast<int>(params.get_int("split", 0)), ctx.props().multiProcessorCount);
    const int64_t max_rows = std::max<int64_t>(1, context.max_rows);
    const int64_t ldv = cuda::higgs_ldv(w.k);

    // V as fp16 once, where the cuBLAS path will run (more rows than the lookup kernel takes) and a
    // quarter of the device stays free after it (the KV cache and activations come later).
    std::shared_ptr<const cuda::HiggsFp16Copy> fp16;
    if (params.get_int("keep_fp16", 1) != 0 && max_rows > lut_max_m) {
      size_t free_b = 0, total_b = 0;
      QRT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
      const size_t need = static_cast<size_t>(w.n * ldv * 2);
      if (need + total_b / 4 <= free_b)
        fp16 = cuda::shared_higgs_fp16(weight, w, device.gpu.index);
      else
        context.say(fmt::format("{}: cuda_higgs decodes its weight per call for M > {} (its fp16 copy, {:.1f} MiB, "
                                "would leave less than a quarter of {} free)",
                                s.name, lut_max_m, need / 1048576.0, device.id));
    }

    HiggsScratch sc;
    if (lut_max_m > 0) {
      sc.ldx = cuda::higgs_ldx(w.k);
      sc.partial_offset = align256(static_cast<size_t>(lut_max_m * sc.ldx * 4));
      const size_t partial = geometry.split > 1
                                 ? static_cast<size_t>(geometry.split) * std::min(lut_max_m, kLutRowsPerLaunch) *
                                       static_cast<size_t>(w.n) * 4
                                 : 0;
      sc.lut_bytes = sc.partial_offset + partial;
    }
    // Rows per cuBLAS chunk: the call's rows up to max_rows, the rotated rows within 32 MiB.
    const bool two_pass = w.hadamard > cuda::kHiggsMaxPass;
    const int64_t row_bytes = w.k * 2 + (two_pass ? w.k * 4 : 0);
    sc.chunk_rows = std::clamp<int64_t>((int64_t{32} << 20) / row_bytes, 16, 65535);
    sc.chunk_rows = std::min(sc.chunk_rows, max_rows);
    sc.mid_offset = align256(static_cast<size_t>(sc.chunk_rows * w.k * 2));
    sc.tile_offset = sc.mid_offset + (two_pass ? align256(static_cast<size_t>(sc.chunk_rows * w.k * 4)) : 0);
    // The V tile: the whole layer where it fits 128 M values and the cuBLAS path is this layer's
    // (as cuda_dequant), a smaller one where the fp16 copy serves it (bf16 activations) or it runs
    // only for calls above max_rows.
    const bool tiles_main = !fp16 && max_rows > lut_max_m;
    sc.tile_rows = cuda::dequant_tile_rows(w.n, w.k, 0, tiles_main ? int64_t(128) << 20 : int64_t(16) << 20);
    sc.gemm_bytes = sc.tile_offset + static_cast<size_t>(sc.tile_rows * ldv * 2);
    ctx.reserve_workspace(std::max(sc.lut_bytes, sc.gemm_bytes));
    ctx.cublas();
    return std::make_unique<CudaHiggsLinear>(std::move(dw), std::move(fp16), ctx, geometry, lut_max_m, sc);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_higgs_backend() { return std::make_unique<CudaHiggsBackend>(); }

}  // namespace qrt
