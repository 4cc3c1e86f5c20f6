// Backend `cuda_fp8`: e4m3 weights.
//   M <= gemv_max_m: fused weight-only GEMV (fp16/bf16 activations read directly, no quantization).
//   larger M, sm_89+, per-tensor or per-channel weight scales, K and N multiples of 16: activations
//     quantized to e4m3 (fp8_quant.cu), then cuBLASLt FP8 GEMM with fp32 accumulation (fast
//     accumulation by default, parameter fast_accum) and fp16/bf16 output; the scales reach it in
//     one of three ways (Fp8Mode below), the first this GPU and runtime accept. Activation scales
//     are per tensor by default where that saves a pass (parameter per_token = 1 keeps them per
//     token at the cost of an fp32 epilogue pass on Hopper).
//   otherwise (128x128 block scales, older GPUs, a cuBLASLt that refuses): dequantize tiles to
//     fp16/bf16 (block scales applied in the kernel) + cuBLAS, the weight-only path.
// The packed weight (packed_weight.h) is stored once: for 8-bit codes its rows are the row-major
// e4m3 matrix itself (row stride ceil(K/32)*32 bytes), which cuBLASLt reads as A.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "backends/backend_factories.h"
#include "backends/cuda/common/backend_helpers.h"
#include "backends/cuda/fp8/fp8_quant.h"
#include "backends/cuda/dequant/dequant_linear.h"
#include "gpu/cublas.h"
#include "backends/cuda_capabilities.h"

namespace qrt {
namespace {

using cuda::DeviceContext;

template <typename T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const T& v) {
  QRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, a, &v, sizeof(v)));
}

// How the scales reach the FP8 GEMM, in the order prepare() tries them:
//   OuterVec   per-row weight and per-token activation scales applied by cuBLASLt ("outer vector"
//              scale mode; not offered on every GPU/runtime, e.g. refused on sm_90 with CUDA 13.0);
//   AlphaVec   per-tensor activation scale as cuBLASLt's B scale (a device scalar) and the
//              per-channel weight scale as a device alpha vector (one per output row of D):
//              fp16/bf16 written directly, no extra pass;
//   Scalar     a per-tensor weight: its scale as the A scale and the per-tensor activation scale
//              as the B scale (device scalars, the form every FP8 GPU runs): the peer's kernel,
//              fp16/bf16 written directly;
//   Tensorwise per-channel weights where the modes above are refused (Hopper): the GEMM writes
//              fp16/bf16 pre-scaled by a power of two (kept inside fp16 range), then one in-place
//              pass multiplies by the channel (and, with per_token, the token) scales.
enum class Fp8Mode { OuterVec, Scalar, AlphaVec, Tensorwise };
const char* fp8_mode_name(Fp8Mode m) {
  switch (m) {
    case Fp8Mode::OuterVec: return "per-row scales";
    case Fp8Mode::Scalar: return "scalar scales";
    case Fp8Mode::AlphaVec: return "alpha-vector scales";
    default: return "tensorwise scaling + channel-scale pass";
  }
}

// Tensorwise: |x_q . w_q| <= K * 448 * 448; this power of two keeps the unscaled 16-bit product
// below fp16's 65504 for K up to 16384 (and halves per doubling beyond).
float tensorwise_prescale(int64_t k) {
  int e = 17;
  while ((int64_t{16384} << (e - 17)) < k) ++e;
  return std::ldexp(1.0f, -e);
}

// cuBLASLt descriptors of one layer; B and D columns (= M) change per call.
class LtFp8Gemm {
 public:
  LtFp8Gemm(cublasLtHandle_t lt, const cuda::PackedWeightView& w, DType out, bool fast_accum, int algo_index,
            void* lt_ws, size_t lt_ws_bytes, Fp8Mode mode)
      : lt_(lt), k_(w.k), n_(w.n), algo_index_(algo_index), ws_(lt_ws), ws_bytes_(lt_ws_bytes), mode_(mode),
        w_scale_(w.scale) {
    const cudaDataType_t ot = cuda::cuda_dtype(out);
    QRT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSA, cublasOperation_t(CUBLAS_OP_T));
    set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSB, cublasOperation_t(CUBLAS_OP_N));
    set_desc(op_, CUBLASLT_MATMUL_DESC_FAST_ACCUM, int8_t(fast_accum ? 1 : 0));
    if (mode == Fp8Mode::AlphaVec)
      set_desc(op_, CUBLASLT_MATMUL_DESC_POINTER_MODE, int32_t(CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO));
    if (mode == Fp8Mode::Scalar) set_desc(op_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(w.scale));
    if (mode == Fp8Mode::OuterVec) {
      set_desc(op_, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, int32_t(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F));
      set_desc(op_, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, int32_t(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F));
      set_desc(op_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(w.scale));
    }
    const int64_t lda = w.row_words * 4;  // bytes per packed row = e4m3 elements per row
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_8F_E4M3, k_, n_, lda));
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_8F_E4M3, k_, 64, k_));
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d_, ot, n_, 64, n_));
    QRT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_));
    const uint64_t wsb = ws_bytes_;
    QRT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                                          sizeof(wsb)));
  }
  ~LtFp8Gemm() {
    if (pref_) cublasLtMatmulPreferenceDestroy(pref_);
    if (d_) cublasLtMatrixLayoutDestroy(d_);
    if (b_) cublasLtMatrixLayoutDestroy(b_);
    if (a_) cublasLtMatrixLayoutDestroy(a_);
    if (op_) cublasLtMatmulDescDestroy(op_);
  }
  LtFp8Gemm(const LtFp8Gemm&) = delete;
  LtFp8Gemm& operator=(const LtFp8Gemm&) = delete;

  // The algorithm for M rows, or false with `why` when cuBLASLt offers none.
  bool find_algo(int64_t m, cublasLtMatmulAlgo_t* algo, std::string* why) {
    set_cols(m);
    std::array<cublasLtMatmulHeuristicResult_t, 8> res{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, op_, a_, b_, d_, d_, pref_, static_cast<int>(res.size()),
                                                       res.data(), &found);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      if (why) *why = fmt::format("cuBLASLt has no FP8 algorithm with {} ({}, {} found)",
                                  fp8_mode_name(mode_), cuda::cublas_status_name(st), found);
      return false;
    }
    *algo = res[std::min(algo_index_, found - 1)].algo;
    return true;
  }

  // Looks up (once per row count, then from a small cache) the algorithm for M rows; false when
  // cuBLASLt offers none for this M (the caller then runs the weight-only path).
  bool ready_for(int64_t m) {
    for (auto& e : cache_)
      if (e.m == m) return true;
    cublasLtMatmulAlgo_t algo{};
    if (!find_algo(m, &algo, nullptr)) return false;
    cache_[next_] = {m, algo};
    next_ = (next_ + 1) % cache_.size();
    return true;
  }

  // Needs ready_for(m) first (the algorithm of M rows in the cache).
  void run(const uint8_t* xq, const float* xs, const void* w, void* y, int64_t m, cudaStream_t stream) {
    cublasLtMatmulAlgo_t algo{};
    for (auto& e : cache_)
      if (e.m == m) algo = e.algo;
    set_cols(m);
    // xs: the B (activation) scale, a vector for OuterVec, a scalar otherwise; nullptr = none.
    if (xs != b_scale_set_) {
      set_desc(op_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(xs));
      b_scale_set_ = xs;
    }
    const float beta = 0.f;
    const void* alpha =
        mode_ == Fp8Mode::AlphaVec ? static_cast<const void*>(w_scale_) : static_cast<const void*>(&host_alpha_);
    QRT_CUBLAS_CHECK(cublasLtMatmul(lt_, op_, alpha, w, a_, xq, b_, &beta, y, d_, y, d_, &algo, ws_, ws_bytes_, stream));
  }

 private:
  void set_cols(int64_t m) {
    const uint64_t cols = static_cast<uint64_t>(m);
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(b_, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols)));
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(d_, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols)));
  }
  struct Entry {
    int64_t m = -1;
    cublasLtMatmulAlgo_t algo{};
  };
  cublasLtHandle_t lt_;
  int64_t k_, n_;
  int algo_index_;
  void* ws_;
  size_t ws_bytes_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  std::array<Entry, 16> cache_{};
  size_t next_ = 0;
  Fp8Mode mode_;
  const float* w_scale_;
  const float* b_scale_set_ = nullptr;
  const float host_alpha_ = mode_ == Fp8Mode::Tensorwise ? tensorwise_prescale(k_) : 1.f;
};

// cuda_dequant's layer (the GEMV for small M, the weight-only path) plus the FP8 tensor-core path.
class CudaFp8Linear final : public cuda::DequantLinear {
 public:
  CudaFp8Linear(cuda::PackedWeight packed, DeviceContext& ctx, const KernelParams& params, bool native,
                int64_t chunk_rows, int64_t tile_rows)
      : DequantLinear(std::move(packed), ctx, params.get_int("gemv_max_m", 8), tile_rows), native_(native),
        chunk_rows_(chunk_rows) {
    fast_accum_ = fast_accum_requested_ = params.get_int("fast_accum", 1) != 0;
    per_token_ = params.get_int("per_token", 0) != 0;
    num_sms_ = ctx.props().multiProcessorCount;
    algo_index_ = static_cast<int>(params.get_int("algo", 0));
  }

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ec) override {
    if (forward_gemv(x, y, ec)) return;
    // The native path needs 16-byte aligned activations and a cuBLASLt algorithm for the row
    // counts of this call (full chunks and the remainder); otherwise the weight-only path, which
    // gives the same result more slowly.
    LtFp8Gemm* g = native_ && (reinterpret_cast<uintptr_t>(x.data) & 15) == 0 ? &gemm_for(x.dtype) : nullptr;
    if (g && !(g->ready_for(std::min(chunk_rows_, x.rows)) && g->ready_for(x.rows % chunk_rows_ ? x.rows % chunk_rows_ : chunk_rows_)))
      g = nullptr;
    if (!g) {
      forward_tiles(x, y, ec);
      return;
    }
    const auto& w = packed_.view();
    cudaStream_t st = cuda::as_stream(ec.cuda_stream);
    uint8_t* xq = static_cast<uint8_t*>(ctx_.workspace());
    float* xs = reinterpret_cast<float*>(xq + scale_offset());
    for (int64_t m0 = 0; m0 < x.rows; m0 += chunk_rows_) {
      const int64_t mm = std::min(chunk_rows_, x.rows - m0);
      const char* xp = static_cast<const char*>(x.data) + m0 * w.k * 2;
      char* yp = static_cast<char*>(y.data) + m0 * w.n * 2;
      if (mode_ == Fp8Mode::OuterVec) {
        cuda::launch_quantize_rows_fp8(xp, x.dtype, mm, w.k, xq, xs, st);
        g->run(xq, xs, w.words, yp, mm, st);
      } else if (mode_ == Fp8Mode::Tensorwise && per_token_) {
        cuda::launch_quantize_rows_fp8(xp, x.dtype, mm, w.k, xq, xs, st);
        g->run(xq, nullptr, w.words, yp, mm, st);
        cuda::launch_scale_cols_inplace(yp, xs, w.scale, w.bias, unscale_, mm, w.n, x.dtype, st);
      } else {
        float* tensor_scale = reinterpret_cast<float*>(xq + tensor_scale_offset());
        cuda::launch_quantize_tensor_fp8(xp, x.dtype, mm, w.k, xq, xs, tensor_scale, num_sms_, st);
        g->run(xq, tensor_scale, w.words, yp, mm, st);
        if (mode_ == Fp8Mode::Tensorwise)
          cuda::launch_scale_cols_inplace(yp, nullptr, w.scale, w.bias, unscale_, mm, w.n, x.dtype, st);
      }
    }
    if (w.bias && mode_ != Fp8Mode::Tensorwise) cuda::launch_add_bias(w.bias, y.data, x.rows, w.n, x.dtype, st);
  }

  // Builds the descriptors for both output dtypes and checks that cuBLASLt runs this layer.
  // Falls back to exact accumulation when cuBLASLt has no fast-accumulation kernel for the layer.
  // Tries the modes in order (per_token skips AlphaVec, whose activation scale is per tensor);
  // a mode counts only when a real GEMM of that layer ran, not merely when a heuristic answered.
  bool probe_native(std::string* why) {
    std::string reasons;
    for (Fp8Mode m : {Fp8Mode::OuterVec, Fp8Mode::Scalar, Fp8Mode::AlphaVec, Fp8Mode::Tensorwise}) {
      if ((m == Fp8Mode::AlphaVec || m == Fp8Mode::Scalar) && per_token_) continue;
      if (m == Fp8Mode::Scalar && !per_tensor_weight_) continue;
      mode_ = m;
      fast_accum_ = fast_accum_requested_;
      gemm_f16_.reset();
      gemm_bf16_.reset();
      std::string r;
      if (probe_mode(&r)) return true;
      reasons += (reasons.empty() ? "" : "; ") + r;
    }
    *why = reasons;
    return false;
  }
  bool probe_mode(std::string* why) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool ok = true;
      cublasLtMatmulAlgo_t algo{};
      const int64_t m = std::min<int64_t>(chunk_rows_, 64);
      for (DType t : {DType::BF16, DType::F16}) {
        ok = ok && gemm_for(t).find_algo(m, &algo, why);
        if (!ok) break;
        // One real run on workspace contents (values irrelevant): cuBLASLt may offer an algorithm
        // for a scale mode and still refuse the call.
        try {
          uint8_t* xq = static_cast<uint8_t*>(ctx_.workspace());
          float* s = reinterpret_cast<float*>(xq + scale_offset());
          char* d = reinterpret_cast<char*>(xq + probe_offset());
          gemm_for(t).ready_for(m);
          gemm_for(t).run(xq, s, packed_.view().words, d, m, nullptr);
          QRT_CUDA_CHECK(cudaStreamSynchronize(nullptr));
        } catch (const Error& e) {
          *why = std::string(fp8_mode_name(mode_)) + ": " + e.what();
          ok = false;
          cudaGetLastError();
        }
      }
      if (ok) return true;
      if (!fast_accum_) return false;
      fast_accum_ = false;
      gemm_f16_.reset();
      gemm_bf16_.reset();
    }
    return false;
  }
  void disable_native() { native_ = false; }
  bool native() const { return native_; }
  // Workspace: quantized rows | per-row scales or maxima | tensor scale | probe output (64 rows).
  static int64_t scale_offset(int64_t chunk, int64_t k) { return (chunk * k + 255) / 256 * 256; }
  static int64_t tensor_scale_offset(int64_t chunk, int64_t k) {
    return scale_offset(chunk, k) + (chunk * 4 + 255) / 256 * 256;
  }
  static int64_t probe_offset(int64_t chunk, int64_t k) { return tensor_scale_offset(chunk, k) + 256; }
  static size_t workspace_bytes(int64_t chunk, int64_t k, int64_t n) {
    return static_cast<size_t>(probe_offset(chunk, k) + std::min<int64_t>(chunk, 64) * n * 2);
  }
  int64_t scale_offset() const { return scale_offset(chunk_rows_, packed_.view().k); }
  int64_t tensor_scale_offset() const { return tensor_scale_offset(chunk_rows_, packed_.view().k); }
  int64_t probe_offset() const { return probe_offset(chunk_rows_, packed_.view().k); }
  void set_per_tensor_weight(bool v) { per_tensor_weight_ = v; }

 private:
  LtFp8Gemm& gemm_for(DType t) {
    auto& slot = t == DType::F16 ? gemm_f16_ : gemm_bf16_;
    if (!slot) {  // created at prepare by probe_native(); never in a steady-state forward
      // cublas_lt() allocates the workspace on its first call: it runs before the workspace is
      // read (as arguments of one call their order would be unspecified, and the first GEMM of a
      // process could be planned with no workspace).
      cublasLtHandle_t lt = ctx_.cublas_lt();
      slot = std::make_unique<LtFp8Gemm>(lt, packed_.view(), t, fast_accum_, algo_index_, ctx_.lt_workspace(),
                                         ctx_.lt_workspace_bytes(), mode_);
    }
    return *slot;
  }
  bool native_;
  int64_t chunk_rows_;
  bool fast_accum_ = true;
  bool fast_accum_requested_ = true;
  bool per_token_ = false;
  bool per_tensor_weight_ = false;
  const float unscale_ = 1.0f / tensorwise_prescale(packed_.view().k);  // undoes the Tensorwise GEMM's alpha
  Fp8Mode mode_ = Fp8Mode::OuterVec;
  int num_sms_ = 132;
  int algo_index_ = 0;
  std::unique_ptr<LtFp8Gemm> gemm_f16_, gemm_bf16_;
};

class CudaFp8Backend final : public cuda::CudaBackend {
 public:
  CudaFp8Backend()
      : CudaBackend("cuda_fp8",
                    "e4m3 weights on FP8 tensor cores via cuBLASLt (per-token activation scales); GEMV at small M") {}

  Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const override {
    return cuda::validate_known_params(params, {{"gemv_max_m", 0, 64},
                                                {"fast_accum", 0, 1},
                                                {"algo", 0, 7},
                                                {"per_token", 0, 1},
                                                {"tile_n", 0, int64_t(1) << 30}});
  }
  KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    KernelParams p;
    p.values["gemv_max_m"] = int64_t(8);
    p.values["fast_accum"] = int64_t(1);
    return p;
  }
  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    std::vector<KernelParams> out;
    for (int64_t algo = 0; algo < 4; ++algo) {
      KernelParams p = default_params(layer, m, device);
      p.values["gemv_max_m"] = int64_t(0);
      p.values["algo"] = algo;
      out.push_back(p);
    }
    if (m <= 16) {
      KernelParams p = default_params(layer, m, device);
      p.values["gemv_max_m"] = int64_t(16);
      out.push_back(p);
    }
    return out;
  }

  // A layer the FP8 tensor-core path cannot run still passes (the weight-only path is correct),
  // but the plan says so (the declaration's path note): a slow path is never silent.
  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    Verdict v = check_capability(layer, device);
    if (v.ok) v.note = cuda_backend_declaration(name()).path_note(layer, device);
    return v;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    const DeviceInfo& device = context.device;
    const LayerSpec& s = weight.spec;
    cuda::check_prepare(*this, weight, params, device, /*check_layer=*/false);
    if (s.encoding != WeightEncoding::Fp8E4M3) throw unsupported(s.name + ": cuda_fp8 runs fp8 e4m3 weights only");
    cuda::DeviceGuard guard(device.gpu.index);
    DeviceContext& ctx = DeviceContext::get(device.gpu.index);
    cuda::PackedWeight packed = cuda::PackedWeight::pack(weight);
    std::string why = fp8_tensor_core_obstacle(s, ctx.compute_capability());
    bool native = why.empty();
    const int64_t chunk = std::max<int64_t>(1, context.max_rows);
    const int64_t tile = cuda::dequant_tile_rows(weight.N(), weight.K(), params.get_int("tile_n", 0));
    // Native: quantized activations + their scales; weight-only: one dequantized tile.
    const size_t act_bytes = CudaFp8Linear::workspace_bytes(chunk, weight.K(), weight.N());
    const size_t tile_bytes = static_cast<size_t>(tile * cuda::dequant_ld(weight.K()) * 2);
    if (native) {
      if (chunk > (int64_t(1) << 40) / std::max<int64_t>(1, weight.K()))
        throw Error(ErrorKind::OutOfMemory,
                    fmt::format("{}: cuda_fp8 workspace for {} rows x {} is absurd (max_input_length too large)",
                                s.name, chunk, weight.K()));
      ctx.reserve_workspace(act_bytes);
    }
    ctx.reserve_workspace(tile_bytes);  // also the weight-only fallback of a layer cuBLASLt refuses
    ctx.cublas();
    auto lin = std::make_unique<CudaFp8Linear>(std::move(packed), ctx, params, native, chunk, tile);
    // One scale for the whole weight: cuBLASLt's scalar A scale carries it (no channel pass).
    lin->set_per_tensor_weight(!weight.scales.empty() &&
                               std::all_of(weight.scales.begin(), weight.scales.end(),
                                           [&](float v) { return v == weight.scales[0]; }));
    // cuBLASLt on this GPU and runtime may refuse what the shape allows: weight-only, still correct,
    // and said (the plan could not know; a shape it could know about is in check()'s verdict).
    if (native && !lin->probe_native(&why)) {
      lin->disable_native();
      context.say(s.name + ": cuda_fp8 runs weight-only (dequant + cuBLAS), not on FP8 tensor cores: " + why);
    }
    return lin;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_fp8_backend() { return std::make_unique<CudaFp8Backend>(); }

}  // namespace qrt
