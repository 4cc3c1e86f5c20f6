// Backend `cuda_int8`: 8-bit per-row symmetric weights (bitsandbytes LLM.int8's layout) multiplied
// with int8 activations on int8 tensor cores through cuBLASLt, the LLM.int8 way (docs/LLM_INT8.md):
//   M <= gemv_max_m: a weight-only GEMV over the same int8 rows (fp16/bf16 activations as they are);
//   above: the activation columns holding some |x| >= the layer's llm_int8_threshold (at most
//     max_outliers of them, the largest kept) are set aside; each row of the rest is quantized to
//     int8 by its absolute maximum; cuBLASLt multiplies int8 x int8 into int32; one epilogue scales
//     by row scale x weight scale and adds the set-aside columns times the matching weight columns
//     (fp32) and the bias, rounding once to fp16/bf16.
// One copy of the weight serves both paths: int8 rows [n_pad][k_pad], K and N padded to multiples
// of 16 with zeros (cuBLASLt's int8 kernels need multiples of 4 with plain layouts; 16 keeps every
// row 16-byte aligned), so no shape is refused. Every launch of forward() is asynchronous on the
// call's stream with no allocation: the columns found are counted on the device and read there.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <vector>

#include "backends/backend_factories.h"
#include "backends/cuda/common/backend_helpers.h"
#include "backends/cuda/int8/int8_kernels.h"
#include "backends/cuda_capabilities.h"
#include "gpu/runtime.h"

namespace qrt {
namespace {

using cuda::DeviceContext;

// Where the weight-only GEMV hands over to the tensor-core path. Prediction (not yet measured on a
// GPU): at M = 1 both read the N x K int8 bytes once and decode is memory-bound, but the tensor-core
// path adds the quantization launches and a cuBLASLt call sized for larger M, so the GEMV should win
// up to a handful of rows; the GEMV's CUDA-core multiplies grow with M while the tensor cores' do
// not, so from some M between 8 and 32 the int8 GEMM should. 8 matches cuda_gemv's range; `qrt tune`
// measures the crossover per shape (tuning_space below) and the plan takes the tuned value.
constexpr int64_t kDefaultGemvMaxM = 8;
// Outlier columns one call decomposes at most. The outlier features of a model sit in a few to a
// few dozen hidden dimensions (docs/LLM_INT8.md, "The bound"); 256 leaves room for long prompts and
// the wider down_proj inputs while bounding the workspace (max_outliers floats per row). Beyond it
// the columns of the largest |x| are decomposed and the others stay in the int8 part (their rows
// then get a larger scale, as LLM.int8 without decomposition would).
constexpr int64_t kDefaultMaxOutliers = 256;
// Workspace that grows with M (int32 products, quantized rows, set-aside columns): at most this
// much per call; a larger M runs in chunks of rows, each with its own outlier columns.
constexpr int64_t kChunkBudgetBytes = int64_t(64) << 20;

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }
int64_t align256(int64_t v) { return round_up(v, 256); }

template <typename T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const T& v) {
  QRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, a, &v, sizeof(v)));
}

// cuBLASLt's int8 GEMM of one layer: C[M][n_pad] int32 = xq[M][k_pad] * W[n_pad][k_pad]^T. In its
// column-major terms A = W (k_pad x n_pad, transposed), B = xq (k_pad x M), D = C (n_pad x M): the
// "TN" form its int8 kernels take with plain layouts, with m = n_pad and k = k_pad multiples of 4.
class LtInt8Gemm {
 public:
  LtInt8Gemm(cublasLtHandle_t lt, int64_t k_pad, int64_t n_pad, void* ws, size_t ws_bytes)
      : lt_(lt), ws_(ws), ws_bytes_(ws_bytes) {
    QRT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32I, CUDA_R_32I));
    set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSA, cublasOperation_t(CUBLAS_OP_T));
    set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSB, cublasOperation_t(CUBLAS_OP_N));
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_8I, k_pad, n_pad, k_pad));
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_8I, k_pad, 64, k_pad));
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d_, CUDA_R_32I, n_pad, 64, n_pad));
    QRT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_));
    const uint64_t wsb = ws_bytes_;
    QRT_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)));
  }
  ~LtInt8Gemm() {
    if (pref_) cublasLtMatmulPreferenceDestroy(pref_);
    if (d_) cublasLtMatrixLayoutDestroy(d_);
    if (b_) cublasLtMatrixLayoutDestroy(b_);
    if (a_) cublasLtMatrixLayoutDestroy(a_);
    if (op_) cublasLtMatmulDescDestroy(op_);
  }
  LtInt8Gemm(const LtInt8Gemm&) = delete;
  LtInt8Gemm& operator=(const LtInt8Gemm&) = delete;

  // cuBLASLt's algorithm number `index` (its heuristic's order, clamped to what it offers) for M
  // rows, or false with `why`.
  bool find_algo(int64_t m, int index, cublasLtMatmulAlgo_t* algo, std::string* why) {
    set_cols(m);
    std::array<cublasLtMatmulHeuristicResult_t, 8> res{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, op_, a_, b_, d_, d_, pref_,
                                                             static_cast<int>(res.size()), res.data(), &found);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      if (why)
        *why = fmt::format("no int8 algorithm for M = {} ({}, {} found)", m, cuda::cublas_status_name(st), found);
      return false;
    }
    *algo = res[std::min(index, found - 1)].algo;
    return true;
  }

  // The algorithm of (M, index) looked up once and kept in a small cache; false when cuBLASLt has
  // none for this M (the caller then runs the GEMV).
  bool ready_for(int64_t m, int index) {
    if (find_cached(m, index)) return true;
    cublasLtMatmulAlgo_t algo{};
    if (!find_algo(m, index, &algo, nullptr)) return false;
    cache_[next_] = {m, index, algo};
    next_ = (next_ + 1) % cache_.size();
    return true;
  }

  // Needs ready_for(m, index) first.
  void run(const int8_t* xq, const int8_t* w, int32_t* c, int64_t m, int index, cudaStream_t stream) {
    const cublasLtMatmulAlgo_t* algo = find_cached(m, index);
    set_cols(m);
    const int32_t alpha = 1, beta = 0;
    QRT_CUBLAS_CHECK(
        cublasLtMatmul(lt_, op_, &alpha, w, a_, xq, b_, &beta, c, d_, c, d_, algo, ws_, ws_bytes_, stream));
  }

 private:
  struct Entry {
    int64_t m = -1;
    int index = 0;
    cublasLtMatmulAlgo_t algo{};
  };
  const cublasLtMatmulAlgo_t* find_cached(int64_t m, int index) const {
    for (const auto& e : cache_)
      if (e.m == m && e.index == index) return &e.algo;
    return nullptr;
  }
  void set_cols(int64_t m) {
    const uint64_t cols = static_cast<uint64_t>(m);
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(b_, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols)));
    QRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(d_, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols)));
  }
  cublasLtHandle_t lt_;
  void* ws_;
  size_t ws_bytes_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  std::array<Entry, 16> cache_{};
  size_t next_ = 0;
};

// The per-call scratch of the tensor-core path inside the device's shared workspace (byte offsets,
// each 256-aligned): column maxima, taken-column flags and numbers, the two counters, then per row
// the quantized activations, their scales and the set-aside values, the weight's outlier columns,
// and the int32 product.
struct Int8Scratch {
  int64_t colmax = 0, is_out = 0, idx = 0, counters = 0, xq = 0, rs = 0, xo = 0, wo = 0, c32 = 0, end = 0;
  Int8Scratch(int64_t chunk, int64_t k, int64_t k_pad, int64_t n_pad, int64_t max_out) {
    int64_t at = 0;
    auto take = [&](int64_t bytes) {
      const int64_t here = at;
      at += align256(std::max<int64_t>(bytes, 1));
      return here;
    };
    colmax = take(4 * k);
    is_out = take(k_pad);
    idx = take(4 * std::max<int64_t>(max_out, 1));
    counters = take(8);
    xq = take(chunk * k_pad);
    rs = take(4 * chunk);
    xo = take(4 * chunk * std::max<int64_t>(max_out, 1));
    wo = take(std::max<int64_t>(max_out, 1) * n_pad);
    c32 = take(4 * chunk * n_pad);
    end = at;
  }
  // Bytes per row of the parts that grow with the chunk (for sizing it).
  static int64_t per_row(int64_t k_pad, int64_t n_pad, int64_t max_out) {
    return k_pad + 4 + 4 * std::max<int64_t>(max_out, 1) + 4 * n_pad;
  }
};

class CudaInt8Linear final : public PreparedLinear {
 public:
  CudaInt8Linear(DeviceContext& ctx, const QuantizedWeight& weight, float threshold, int64_t max_out, int64_t chunk,
                 int64_t gemv_max_m, int algo)
      : ctx_(ctx), threshold_(threshold), max_out_(static_cast<int>(max_out)), chunk_(chunk),
        gemv_max_m_(gemv_max_m), algo_(algo),
        scratch_(chunk, weight.K(), round_up(weight.K(), 16), round_up(weight.N(), 16), max_out) {
    const int64_t n = weight.N(), k = weight.K();
    view_.n = n;
    view_.k = k;
    view_.n_pad = round_up(n, 16);
    view_.k_pad = round_up(k, 16);
    // Signed int8 rows: the canonical code is the LLM.int8 value + 128.
    std::vector<int8_t> rows(static_cast<size_t>(view_.n_pad * view_.k_pad), 0);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c)
        rows[r * view_.k_pad + c] = static_cast<int8_t>(static_cast<int>(weight.codes[r * k + c]) - 128);
    const std::string& name = weight.spec.name;
    w_ = cuda::DeviceBuffer::upload(rows, name + " int8 rows");
    ws_ = cuda::DeviceBuffer::upload(weight.scales, name + " row scales");
    if (!weight.bias.empty()) bias_ = cuda::DeviceBuffer::upload(weight.bias, name + " bias");
    view_.w = w_.as<int8_t>();
    view_.ws = ws_.as<float>();
    view_.bias = bias_ ? bias_.as<float>() : nullptr;
    cublasLtHandle_t lt = ctx.cublas_lt();  // first: it also makes the cuBLASLt workspace
    gemm_ = std::make_unique<LtInt8Gemm>(lt, view_.k_pad, view_.n_pad, ctx.lt_workspace(), ctx.lt_workspace_bytes());
  }

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ec) override {
    const KernelParams* p = ec.call_params;
    const int64_t gemv_max_m = p ? p->get_int("gemv_max_m", gemv_max_m_) : gemv_max_m_;
    const int algo = p ? static_cast<int>(p->get_int("algo", algo_)) : algo_;
    cudaStream_t st = cuda::as_stream(ec.cuda_stream);
    // The row counts this call hands to cuBLASLt: whole chunks and the last one.
    const int64_t first = std::min(chunk_, x.rows);
    const int64_t last = x.rows - (x.rows - 1) / chunk_ * chunk_;
    if (x.rows <= gemv_max_m || !gemm_->ready_for(first, algo) || !gemm_->ready_for(last, algo)) {
      cuda::launch_int8_gemv(view_, x.data, y.data, x.rows, x.dtype, st);
      return;
    }
    constexpr int64_t es = 2;  // F16 / BF16
    for (int64_t m0 = 0; m0 < x.rows; m0 += chunk_) {
      const int64_t mm = std::min(chunk_, x.rows - m0);
      run_chunk(static_cast<const char*>(x.data) + m0 * view_.k * es, static_cast<char*>(y.data) + m0 * view_.n * es,
                mm, x.dtype, algo, st);
    }
  }

  int64_t weight_bytes() const override {
    return static_cast<int64_t>(w_.bytes() + ws_.bytes() + bias_.bytes());
  }

  // One real GEMM at prepare on workspace contents (values irrelevant): cuBLASLt may offer an
  // algorithm and still refuse the call. False with `why` when it does.
  bool probe(std::string* why) {
    const int64_t m = std::min<int64_t>(chunk_, 64);
    cublasLtMatmulAlgo_t algo{};
    if (!gemm_->find_algo(m, algo_, &algo, why)) return false;
    try {
      char* ws = static_cast<char*>(ctx_.workspace());
      gemm_->ready_for(m, algo_);
      gemm_->run(reinterpret_cast<const int8_t*>(ws + scratch_.xq), view_.w,
                 reinterpret_cast<int32_t*>(ws + scratch_.c32), m, algo_, nullptr);
      QRT_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    } catch (const Error& e) {
      *why = e.what();
      cudaGetLastError();
      return false;
    }
    return true;
  }

  static int64_t chunk_rows(int64_t max_rows, int64_t k_pad, int64_t n_pad, int64_t max_out) {
    const int64_t fit = kChunkBudgetBytes / Int8Scratch::per_row(k_pad, n_pad, max_out);
    return std::clamp<int64_t>(max_rows, 1, std::max<int64_t>(16, fit));
  }
  int64_t workspace_bytes() const { return scratch_.end; }

 private:
  void run_chunk(const void* x, void* y, int64_t m, DType dtype, int algo, cudaStream_t st) {
    char* ws = static_cast<char*>(ctx_.workspace());
    auto at = [&](int64_t off) { return ws + off; };
    uint32_t* colmax = reinterpret_cast<uint32_t*>(at(scratch_.colmax));
    uint8_t* is_out = reinterpret_cast<uint8_t*>(at(scratch_.is_out));
    int32_t* idx = reinterpret_cast<int32_t*>(at(scratch_.idx));
    int32_t* counters = reinterpret_cast<int32_t*>(at(scratch_.counters));
    int8_t* xq = reinterpret_cast<int8_t*>(at(scratch_.xq));
    float* rs = reinterpret_cast<float*>(at(scratch_.rs));
    float* xo = reinterpret_cast<float*>(at(scratch_.xo));
    int8_t* wo = reinterpret_cast<int8_t*>(at(scratch_.wo));
    int32_t* c32 = reinterpret_cast<int32_t*>(at(scratch_.c32));
    // threshold 0 (or max_outliers 0): no decomposition, none of its launches.
    const bool decompose = threshold_ > 0.f && max_out_ > 0;
    if (decompose) {
      QRT_CUDA_CHECK(cudaMemsetAsync(colmax, 0, static_cast<size_t>(view_.k) * 4, st));
      cuda::launch_column_absmax(x, dtype, m, view_.k, colmax, st);
      cuda::launch_select_outliers(colmax, view_.k, threshold_, max_out_, idx, is_out, counters, st);
    }
    cuda::launch_quantize_rows_int8(x, dtype, m, view_.k, view_.k_pad, decompose ? is_out : nullptr, idx,
                                    decompose ? counters : nullptr, max_out_, xq, rs, xo, st);
    if (decompose) cuda::launch_gather_outlier_columns(view_, idx, counters, max_out_, wo, st);
    gemm_->run(xq, view_.w, c32, m, algo, st);
    cuda::launch_int8_epilogue(view_, c32, view_.n_pad, rs, xo, wo, decompose ? counters : nullptr, max_out_, m, y,
                               dtype, st);
  }

  DeviceContext& ctx_;
  float threshold_;
  int max_out_;
  int64_t chunk_;
  int64_t gemv_max_m_;
  int algo_;
  Int8Scratch scratch_;
  cuda::DeviceBuffer w_, ws_, bias_;
  cuda::Int8WeightView view_;
  std::unique_ptr<LtInt8Gemm> gemm_;
};

class CudaInt8Backend final : public cuda::CudaBackend {
 public:
  CudaInt8Backend()
      : CudaBackend("cuda_int8",
                    "int8 activations x int8 weights on tensor cores (cuBLASLt), LLM.int8's outlier columns in fp32; "
                    "weight-only GEMV at small M") {}

  Verdict validate_params(const LayerSpec&, const KernelParams& params) const override {
    return cuda::validate_known_params(params, {{"gemv_max_m", 0, 64}, {"algo", 0, 7}, {"max_outliers", 0, 4096}});
  }
  KernelParams default_params(const LayerSpec&, int64_t, const DeviceInfo&) const override {
    KernelParams p;
    p.values["gemv_max_m"] = kDefaultGemvMaxM;
    p.values["max_outliers"] = kDefaultMaxOutliers;
    return p;
  }
  // The tensor-core path with cuBLASLt's first four algorithms, and, for M above the default
  // boundary, the GEMV: the tuner measures at each M which side of the boundary it belongs to.
  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    const KernelParams base = default_params(layer, m, device);
    std::vector<KernelParams> out;
    for (int64_t algo = 0; algo < 4; ++algo) {
      KernelParams p = base;
      p.values["gemv_max_m"] = int64_t(0);
      p.values["algo"] = algo;
      out.push_back(p);
    }
    if (m > kDefaultGemvMaxM && m <= 64) {
      KernelParams p = base;
      p.values["gemv_max_m"] = m;
      out.push_back(p);
    }
    return out;
  }
  // One packing serves every M range: forward() reads gemv_max_m and algo per call; max_outliers
  // sizes the workspace.
  bool reads_call_params() const override { return true; }
  KernelParams packing_params(const KernelParams& params) const override {
    KernelParams p;
    if (params.has("max_outliers")) p.values["max_outliers"] = params.values.at("max_outliers");
    return p;
  }

  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    Verdict v = check_capability(layer, device);
    if (v.ok) v.note = int8_path_note(layer);
    return v;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    const DeviceInfo& device = context.device;
    const LayerSpec& s = weight.spec;
    cuda::check_prepare(*this, weight, params, device, /*check_layer=*/true);
    if (weight.scales.size() != static_cast<size_t>(weight.N()))
      throw unsupported(s.name + ": cuda_int8 needs one scale per output row");
    cuda::DeviceGuard guard(device.gpu.index);
    DeviceContext& ctx = DeviceContext::get(device.gpu.index);
    const int64_t max_out = params.get_int("max_outliers", kDefaultMaxOutliers);
    const int64_t chunk = CudaInt8Linear::chunk_rows(std::max<int64_t>(1, context.max_rows), round_up(weight.K(), 16),
                                                     round_up(weight.N(), 16), max_out);
    auto lin = std::make_unique<CudaInt8Linear>(ctx, weight, std::max(0.f, s.llm_int8_threshold), max_out, chunk,
                                                params.get_int("gemv_max_m", kDefaultGemvMaxM),
                                                static_cast<int>(params.get_int("algo", 0)));
    ctx.reserve_workspace(static_cast<size_t>(lin->workspace_bytes()));
    std::string why;
    if (!lin->probe(&why))
      throw unsupported(fmt::format("{}: cuda_int8: cuBLASLt runs no int8 GEMM for K={} N={} on {}: {}", s.name,
                                    weight.K(), weight.N(), device.gpu.name, why));
    return lin;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_int8_backend() { return std::make_unique<CudaInt8Backend>(); }

}  // namespace qrt
