// Probe: can cuBLASLt on this GPU run 4-bit group-128 weights as an FP8 GEMM with 128-element
// block scales on both operands, and what would it cost next to fp16 cuBLAS?
//
// The idea: a 4-bit code minus its integer zero (-15..15) is exact in e4m3, and a group of 128
// along K with one scale is exactly cuBLASLt's VEC128_32F block scaling. So a layer can run as
//   (1) expand the packed codes to e4m3 (exact; N x K bytes written per call),
//   (2) quantize the activations to e4m3 with one fp32 scale per (token, 128 columns),
//   (3) one FP8 GEMM with block scales, fp32 accumulation, fp16 output.
// Only (2) loses precision (the activations' 3-bit mantissa). This probe checks that cuBLASLt
// accepts the scale modes, that its result equals a host reference computed from the same
// quantized operands (so the scale layouts are read as assumed), how far the result is from the
// unquantized activations, and times (1) + (2) + (3) against fp16 cuBLAS on four Llama-2-7B
// linears, all in one process.
//
// Build and run (on the GPU machine):
//   nvcc -O2 -std=c++17 -arch=sm_90a tools/fp8_block_gemm_probe.cu -lcublasLt -lcublas -o /tmp/probe
//   /tmp/probe
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CK(x)                                                                      \
  do {                                                                             \
    cudaError_t e_ = (x);                                                          \
    if (e_ != cudaSuccess) {                                                       \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)
#define CB(x)                                                                      \
  do {                                                                             \
    cublasStatus_t s_ = (x);                                                       \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                             \
      std::printf("cuBLAS status %d at %s:%d\n", int(s_), __FILE__, __LINE__);    \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)

// Packed codes: row-major N x K/8 words, nibble i of word w = code of column 8w + i.
// Output: row-major N x K e4m3 bytes of (code - 8).
__global__ void expand_codes(const uint32_t* __restrict__ packed, uint8_t* __restrict__ out, int64_t words) {
  // e4m3 bytes of -8..7, indexed by code 0..15.
  __shared__ uint8_t lut[16];
  if (threadIdx.x < 16) lut[threadIdx.x] = __nv_cvt_float_to_fp8(float(int(threadIdx.x) - 8), __NV_SATFINITE, __NV_E4M3);
  __syncthreads();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < words / 2; i += int64_t(gridDim.x) * blockDim.x) {
    const uint2 w = reinterpret_cast<const uint2*>(packed)[i];
    uint32_t o[4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t v = h ? w.y : w.x;
      o[2 * h] = lut[v & 15] | lut[(v >> 4) & 15] << 8 | lut[(v >> 8) & 15] << 16 | uint32_t(lut[(v >> 12) & 15]) << 24;
      o[2 * h + 1] = lut[(v >> 16) & 15] | lut[(v >> 20) & 15] << 8 | lut[(v >> 24) & 15] << 16 |
                     uint32_t(lut[(v >> 28) & 15]) << 24;
    }
    reinterpret_cast<uint4*>(out)[i] = make_uint4(o[0], o[1], o[2], o[3]);
  }
}

// One warp per (token, 128-column block): scale = amax / 448, stored at scales[block][token]
// (token-major, as VEC128_32F wants for the B operand), codes row-major M x K.
__global__ void quantize_blocks(const __half* __restrict__ x, int64_t m, int64_t k, uint8_t* __restrict__ q,
                                float* __restrict__ scales) {
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t blocks = k / 128;
  if (warp >= m * blocks) return;
  const int64_t row = warp / blocks, b = warp % blocks;
  const uint2 raw = reinterpret_cast<const uint2*>(x + row * k + b * 128)[lane];
  const __half* e = reinterpret_cast<const __half*>(&raw);
  float v[4], amax = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = __half2float(e[i]), amax = fmaxf(amax, fabsf(v[i]));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float s = amax > 0.f ? amax / 448.f : 1.f, inv = 1.f / s;
  uint32_t packed = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i)
    packed |= uint32_t(__nv_cvt_float_to_fp8(v[i] * inv, __NV_SATFINITE, __NV_E4M3)) << (8 * i);
  reinterpret_cast<uint32_t*>(q + row * k + b * 128)[lane] = packed;
  if (lane == 0) scales[b * m + row] = s;
}

float e4m3_to_float(uint8_t b) {
  __nv_fp8_e4m3 v;
  v.__x = b;
  return float(v);
}

struct Lt {
  cublasLtHandle_t h;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  void* ws;
  size_t ws_bytes;
  bool ok = false;
  // y (M x N row-major fp16) = x (M x K e4m3, scales [K/128][M]) . w^T (N x K e4m3, scales [K/128][N])
  Lt(cublasLtHandle_t h_, int64_t n, int64_t k, int64_t m, const float* wscale, const float* xscale, void* ws_,
     size_t wsb)
      : h(h_), ws(ws_), ws_bytes(wsb) {
    CB(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)));
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)));
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wscale, sizeof(wscale)));
    CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xscale, sizeof(xscale)));
    CB(cublasLtMatrixLayoutCreate(&a, CUDA_R_8F_E4M3, k, n, k));
    CB(cublasLtMatrixLayoutCreate(&b, CUDA_R_8F_E4M3, k, m, k));
    CB(cublasLtMatrixLayoutCreate(&d, CUDA_R_16F, n, m, n));
    cublasLtMatmulPreference_t pref;
    CB(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t w64 = wsb;
    CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &w64, sizeof(w64)));
    cublasLtMatmulHeuristicResult_t res[4];
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, op, a, b, d, d, pref, 4, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      std::printf("  heuristic: status %d, %d algorithms\n", int(st), found);
      return;
    }
    algo = res[0].algo;
    ok = true;
  }
  cublasStatus_t run(const void* wq, const void* xq, void* y, cudaStream_t s) {
    const float alpha = 1.f, beta = 0.f;
    return cublasLtMatmul(h, op, &alpha, wq, a, xq, b, &beta, y, d, y, d, &algo, ws, ws_bytes, s);
  }
  ~Lt() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

template <typename F>
float time_us(F&& f, int reps) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) f();
  CK(cudaEventRecord(e0));
  for (int i = 0; i < reps; ++i) f();
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms * 1000.f / reps;
}

int main() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, cuBLASLt %zu\n", prop.name, cublasLtGetVersion());
  cublasLtHandle_t lt;
  CB(cublasLtCreate(&lt));
  cublasHandle_t hb;
  CB(cublasCreate(&hb));
  const size_t ws_bytes = 64u << 20;
  void* ws;
  CK(cudaMalloc(&ws, ws_bytes));
  CB(cublasSetWorkspace(hb, ws, ws_bytes));
  std::mt19937 rng(7);

  // ---- correctness: one small layer, host reference from the same quantized operands ----
  {
    const int64_t n = 384, k = 512, m = 36;
    std::vector<uint32_t> packed(n * k / 8);
    for (auto& w : packed) w = rng();
    std::vector<float> wscale(k / 128 * n);  // [K/128][N]
    std::uniform_real_distribution<float> su(0.005f, 0.02f);
    for (auto& s : wscale) s = su(rng);
    std::vector<__half> x(m * k);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> xf(m * k);
    for (int64_t i = 0; i < m * k; ++i) {
      // A few large outliers per row, as real activations have.
      float v = nd(rng) * ((i % 97) == 0 ? 20.f : 1.f);
      x[i] = __float2half(v);
      xf[i] = __half2float(x[i]);
    }
    uint32_t* d_packed;
    uint8_t *d_wq, *d_xq;
    float *d_ws, *d_xs;
    __half *d_x, *d_y;
    CK(cudaMalloc(&d_packed, packed.size() * 4));
    CK(cudaMalloc(&d_wq, n * k));
    CK(cudaMalloc(&d_xq, m * k));
    CK(cudaMalloc(&d_ws, wscale.size() * 4));
    CK(cudaMalloc(&d_xs, k / 128 * m * 4));
    CK(cudaMalloc(&d_x, m * k * 2));
    CK(cudaMalloc(&d_y, m * n * 2));
    CK(cudaMemcpy(d_packed, packed.data(), packed.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_ws, wscale.data(), wscale.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_x, x.data(), m * k * 2, cudaMemcpyHostToDevice));
    expand_codes<<<64, 256>>>(d_packed, d_wq, n * k / 8);
    quantize_blocks<<<(m * k / 128 * 32 + 255) / 256, 256>>>(d_x, m, k, d_xq, d_xs);
    CK(cudaGetLastError());
    Lt g(lt, n, k, m, d_ws, d_xs, ws, ws_bytes);
    if (!g.ok) {
      std::printf("VEC128 x VEC128 e4m3: no algorithm (not supported here)\n");
      return 0;
    }
    cublasStatus_t st = g.run(d_wq, d_xq, d_y, nullptr);
    CK(cudaDeviceSynchronize());
    std::printf("VEC128 x VEC128 e4m3 -> fp16: run status %d\n", int(st));
    if (st != CUBLAS_STATUS_SUCCESS) return 0;
    std::vector<__half> y(m * n);
    std::vector<uint8_t> xq(m * k), wq(n * k);
    std::vector<float> xs(k / 128 * m);
    CK(cudaMemcpy(y.data(), d_y, m * n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(xq.data(), d_xq, m * k, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(wq.data(), d_wq, n * k, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(xs.data(), d_xs, xs.size() * 4, cudaMemcpyDeviceToHost));
    double max_q = 0, max_x = 0, ref_scale = 0;
    int code_errors = 0;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c) {
        const int code = (packed[(r * k + c) / 8] >> (4 * (c % 8))) & 15;
        if (e4m3_to_float(wq[r * k + c]) != float(code - 8)) ++code_errors;
      }
    for (int64_t t = 0; t < m; ++t)
      for (int64_t r = 0; r < n; ++r) {
        double ref_q = 0, ref_x = 0, mag = 0;
        for (int64_t c = 0; c < k; ++c) {
          const int code = (packed[(r * k + c) / 8] >> (4 * (c % 8))) & 15;
          const double w = double(wscale[(c / 128) * n + r]) * (code - 8);
          const double xqv = double(e4m3_to_float(xq[t * k + c])) * xs[(c / 128) * m + t];
          ref_q += w * xqv;
          ref_x += w * xf[t * k + c];
          mag += std::fabs(w * xf[t * k + c]);
        }
        const double got = __half2float(y[t * n + r]);
        max_q = std::max(max_q, std::fabs(got - ref_q) / (mag + 1e-6));
        max_x = std::max(max_x, std::fabs(got - ref_x) / (mag + 1e-6));
        ref_scale = std::max(ref_scale, mag);
      }
    std::printf("codes exact: %s (%d wrong)\n", code_errors ? "NO" : "yes", code_errors);
    std::printf("max |gpu - ref(quantized operands)| / sum|w x| = %.3g  (layouts as assumed if ~1e-3 or less)\n", max_q);
    std::printf("max |gpu - ref(fp16 activations)|  / sum|w x| = %.3g  (the cost of e4m3 activations)\n", max_x);
  }

  // ---- timing: four Llama-2-7B linears (N x K), summed ----
  const int64_t shapes[4][2] = {{12288, 4096}, {4096, 4096}, {22016, 4096}, {4096, 11008}};
  const int64_t ms[] = {64, 128, 256, 512, 1024, 2048, 4096};
  int64_t max_nk = 0;
  for (auto& s : shapes) max_nk = std::max(max_nk, s[0] * s[1]);
  uint32_t* d_packed;
  uint8_t *d_wq, *d_xq;
  float *d_wsc, *d_xs;
  __half *d_wh, *d_x, *d_y;
  const int64_t max_m = 4096, max_k = 11008, max_n = 22016;
  CK(cudaMalloc(&d_packed, max_nk / 2));
  CK(cudaMalloc(&d_wq, max_nk));
  CK(cudaMalloc(&d_wh, max_nk * 2));
  CK(cudaMalloc(&d_wsc, max_nk / 128 * 4));
  CK(cudaMalloc(&d_xq, max_m * max_k));
  CK(cudaMalloc(&d_xs, max_m * max_k / 128 * 4));
  CK(cudaMalloc(&d_x, max_m * max_k * 2));
  CK(cudaMalloc(&d_y, max_m * max_n * 2));
  CK(cudaMemset(d_packed, 0x5a, max_nk / 2));
  CK(cudaMemset(d_wh, 0x11, max_nk * 2));
  CK(cudaMemset(d_x, 0x22, max_m * max_k * 2));
  {
    std::vector<float> ones(max_nk / 128, 0.01f);
    CK(cudaMemcpy(d_wsc, ones.data(), ones.size() * 4, cudaMemcpyHostToDevice));
  }
  std::printf("\n%6s %10s %10s %10s %10s %10s %8s\n", "M", "fp16_us", "expand_us", "actq_us", "fp8gemm_us", "total_us",
              "speedup");
  for (int64_t m : ms) {
    double t16 = 0, te = 0, ta = 0, tg = 0;
    bool ok = true;
    for (auto& s : shapes) {
      const int64_t n = s[0], k = s[1];
      const __half one = __float2half(1.f), zero = __float2half(0.f);
      const float onef = 1.f, zerof = 0.f;
      t16 += time_us([&] {
        CB(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &onef, d_wh, CUDA_R_16F, k, d_x, CUDA_R_16F, k, &zerof,
                        d_y, CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      }, 20);
      (void)one;
      (void)zero;
      te += time_us([&] { expand_codes<<<prop.multiProcessorCount * 8, 256>>>(d_packed, d_wq, n * k / 8); }, 20);
      ta += time_us([&] {
        quantize_blocks<<<(m * k / 128 * 32 + 255) / 256, 256>>>(d_x, m, k, d_xq, d_xs);
      }, 20);
      CK(cudaMemset(d_xs, 0, m * k / 128 * 4));
      quantize_blocks<<<(m * k / 128 * 32 + 255) / 256, 256>>>(d_x, m, k, d_xq, d_xs);
      Lt g(lt, n, k, m, d_wsc, d_xs, ws, ws_bytes);
      if (!g.ok) {
        ok = false;
        continue;
      }
      tg += time_us([&] { CB(g.run(d_wq, d_xq, d_y, nullptr)); }, 20);
    }
    CK(cudaDeviceSynchronize());
    const double tot = te + ta + tg;
    std::printf("%6ld %10.1f %10.1f %10.1f %10.1f %10.1f %8.3f%s\n", long(m), t16, te, ta, tg, tot, t16 / tot,
                ok ? "" : "  (some shape had no algorithm)");
  }
  return 0;
}
