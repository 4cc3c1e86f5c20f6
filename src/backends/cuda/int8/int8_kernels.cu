// cuda_int8's kernels (int8_kernels.h; the method in docs/LLM_INT8.md). Activations are read with
// 16-byte loads where x is 16-byte aligned and K % 8 == 0, element by element otherwise: the slow
// form is only for shapes no real model has, and it keeps every shape correct.
#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backends/cuda/int8/int8_kernels.h"
#include "gpu/convert.cuh"

namespace qrt::cuda {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;

bool vector_loads_ok(const void* x, int64_t k) {
  return k % 8 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
}

// ---------------------------------------------------------------------------------------------
// Weight-only GEMV: one warp per output row. A lane takes 16 weights (one 16-byte load of the row)
// and the 16 activations of each of the M rows at those columns; M <= 8 rows share every weight
// load. Rows are 16-byte aligned (k_pad % 16 == 0), so the weight loads always vectorize.
template <typename T, int M, bool kVec>
__global__ void __launch_bounds__(kThreads) int8_gemv_kernel(const int8_t* __restrict__ w, int64_t ldw,
                                                             const float* __restrict__ ws,
                                                             const float* __restrict__ bias, const T* __restrict__ x,
                                                             int64_t k, T* __restrict__ y, int64_t n) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= n) return;
  const int8_t* wr = w + row * ldw;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.f;
  int64_t tail = 0;
  if (kVec) {
    const int64_t k16 = k / 16 * 16;
    for (int64_t c = int64_t(lane) * 16; c < k16; c += 32 * 16) {
      const int4 wv = __ldg(reinterpret_cast<const int4*>(wr + c));
      const int8_t* wb = reinterpret_cast<const int8_t*>(&wv);
      float wf[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) wf[i] = static_cast<float>(wb[i]);
#pragma unroll
      for (int r = 0; r < M; ++r) {
        const uint4* xr = reinterpret_cast<const uint4*>(x + r * k + c);
        const uint4 a = __ldg(xr), b = __ldg(xr + 1);
        const T* ea = reinterpret_cast<const T*>(&a);
        const T* eb = reinterpret_cast<const T*>(&b);
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) s = fmaf(to_f<T>(ea[i]), wf[i], s);
#pragma unroll
        for (int i = 0; i < 8; ++i) s = fmaf(to_f<T>(eb[i]), wf[8 + i], s);
        acc[r] += s;
      }
    }
    tail = k16;
  }
  for (int64_t c = tail + lane; c < k; c += 32) {
    const float wf = static_cast<float>(wr[c]);
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = fmaf(to_f<T>(x[r * k + c]), wf, acc[r]);
  }
  const float scale = ws[row], b = bias ? bias[row] : 0.f;
#pragma unroll
  for (int r = 0; r < M; ++r) {
    float v = acc[r];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if (lane == r) y[r * n + row] = from_f<T>(fmaf(v, scale, b));
  }
}

template <typename T, int M>
void gemv_rows(const Int8WeightView& w, const T* x, T* y, bool vec, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((w.n + kThreads / 32 - 1) / (kThreads / 32)));
  if (vec)
    int8_gemv_kernel<T, M, true><<<grid, kThreads, 0, stream>>>(w.w, w.k_pad, w.ws, w.bias, x, w.k, y, w.n);
  else
    int8_gemv_kernel<T, M, false><<<grid, kThreads, 0, stream>>>(w.w, w.k_pad, w.ws, w.bias, x, w.k, y, w.n);
}

template <typename T>
void gemv_typed(const Int8WeightView& w, const T* x, T* y, int64_t m, cudaStream_t stream) {
  const bool vec = vector_loads_ok(x, w.k);
  for (int64_t r0 = 0; r0 < m; r0 += 8) {
    const T* xr = x + r0 * w.k;
    T* yr = y + r0 * w.n;
    switch (std::min<int64_t>(8, m - r0)) {
      case 1: gemv_rows<T, 1>(w, xr, yr, vec, stream); break;
      case 2: gemv_rows<T, 2>(w, xr, yr, vec, stream); break;
      case 3: gemv_rows<T, 3>(w, xr, yr, vec, stream); break;
      case 4: gemv_rows<T, 4>(w, xr, yr, vec, stream); break;
      case 5: gemv_rows<T, 5>(w, xr, yr, vec, stream); break;
      case 6: gemv_rows<T, 6>(w, xr, yr, vec, stream); break;
      case 7: gemv_rows<T, 7>(w, xr, yr, vec, stream); break;
      default: gemv_rows<T, 8>(w, xr, yr, vec, stream); break;
    }
    QRT_CUDA_CHECK_LAUNCH();
  }
}

// ---------------------------------------------------------------------------------------------
// Column maxima: a thread per column and a slab of rows per block, folded with atomicMax on the
// float's bits (non-negative floats order like their bit patterns).
constexpr int kSlabRows = 16;

template <typename T>
__global__ void __launch_bounds__(kThreads) column_absmax_kernel(const T* __restrict__ x, int64_t m, int64_t k,
                                                                 uint32_t* __restrict__ colmax) {
  const int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= k) return;
  const int64_t r0 = int64_t(blockIdx.y) * kSlabRows, r1 = min(m, r0 + kSlabRows);
  float a = 0.f;
  for (int64_t r = r0; r < r1; ++r) a = fmaxf(a, fabsf(to_f<T>(x[r * k + c])));
  if (a > 0.f) atomicMax(colmax + c, __float_as_uint(a));
}

// ---------------------------------------------------------------------------------------------
// Outlier selection, one block of 1024 threads; thread t owns the contiguous columns
// [t * per, (t + 1) * per), so that block-wide exclusive scans give every taken column its place
// in increasing column order.
constexpr int kSelectThreads = 1024;

// Exclusive prefix sum of v over the block (1024 threads) and the total; `sm` holds 33 ints.
__device__ int block_exclusive_scan(int v, int* total, int* sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) sm[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int wsum = sm[lane];
    int wincl = wsum;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int t = __shfl_up_sync(kFull, wincl, o);
      if (lane >= o) wincl += t;
    }
    sm[lane] = wincl - wsum;
    if (lane == 31) sm[32] = wincl;
  }
  __syncthreads();
  const int out = sm[warp] + incl - v;
  *total = sm[32];
  __syncthreads();  // sm is free again for the next scan
  return out;
}

__global__ void __launch_bounds__(kSelectThreads) select_outliers_kernel(const uint32_t* __restrict__ colmax,
                                                                         int64_t k, uint32_t thr_bits, int max_out,
                                                                         int32_t* __restrict__ idx,
                                                                         uint8_t* __restrict__ is_out,
                                                                         int32_t* __restrict__ counters) {
  __shared__ int s_scan[33];
  __shared__ unsigned s_hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;
  const int t = threadIdx.x;
  const int64_t per = (k + kSelectThreads - 1) / kSelectThreads;
  const int64_t lo = min(k, int64_t(t) * per), hi = min(k, lo + per);

  int flagged = 0;
  for (int64_t c = lo; c < hi; ++c) flagged += colmax[c] >= thr_bits;
  int total = 0;
  block_exclusive_scan(flagged, &total, s_scan);

  // A column is taken when its key > cut, or == cut and among the first take_equal such columns.
  // Within the bound: every column >= the threshold.
  uint32_t cut = thr_bits;
  int take_equal = INT_MAX;
  if (total > max_out) {
    // Over the bound: the key of the max_out-th largest column maximum, found 8 bits at a time from
    // the top (a radix select); `remaining` ends as how many columns of exactly that key to take.
    uint32_t prefix = 0, mask = 0;
    int remaining = max_out;
    for (int shift = 24; shift >= 0; shift -= 8) {
      if (t < 256) s_hist[t] = 0;
      __syncthreads();
      for (int64_t c = t; c < k; c += kSelectThreads) {
        const uint32_t key = colmax[c];
        if ((key & mask) == prefix) atomicAdd(&s_hist[(key >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (t == 0) {
        int b = 255;
        for (; b > 0; --b) {
          if (static_cast<int>(s_hist[b]) >= remaining) break;
          remaining -= static_cast<int>(s_hist[b]);
        }
        s_prefix = prefix | (uint32_t(b) << shift);
        s_remaining = remaining;
      }
      __syncthreads();
      prefix = s_prefix;
      remaining = s_remaining;
      mask |= 255u << shift;
      __syncthreads();
    }
    cut = prefix;
    take_equal = remaining;
  }

  int gt = 0, eq = 0;
  for (int64_t c = lo; c < hi; ++c) {
    const uint32_t key = colmax[c];
    gt += key > cut;
    eq += key == cut;
  }
  int eq_total = 0;
  const int eq_before = block_exclusive_scan(eq, &eq_total, s_scan);
  const int eq_take = max(0, min(eq, take_equal - eq_before));
  int taken = 0;
  int pos = block_exclusive_scan(gt + eq_take, &taken, s_scan);
  int eq_seen = 0;
  for (int64_t c = lo; c < hi; ++c) {
    const uint32_t key = colmax[c];
    const bool take = key > cut || (key == cut && eq_seen++ < eq_take);
    is_out[c] = take ? 1 : 0;
    if (take) idx[pos++] = static_cast<int32_t>(c);
  }
  if (t == 0) {
    counters[0] = taken;
    counters[1] = total - taken;
  }
}

// ---------------------------------------------------------------------------------------------
// Per-row int8 quantization, one block per row. The row maximum keeps a NaN (fmaxf would drop it):
// the row's scale is then NaN and so is its output, as in the weight-only kernels, instead of a
// quiet zero where the NaN was.
__device__ __forceinline__ float nan_max(float a, float b) { return (a != a || a > b) ? a : b; }

__device__ __forceinline__ float block_max(float v) {
  __shared__ float warp_max[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(kFull, v, o));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = v;
  __syncthreads();
  v = 0.f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) v = nan_max(v, warp_max[w]);
  return v;
}

__device__ __forceinline__ int8_t to_int8(float v, float inv) {
  const int q = __float2int_rn(v * inv);  // round half to even (docs/LLM_INT8.md, step 3)
  return static_cast<int8_t>(max(-127, min(127, q)));
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kThreads) quantize_rows_int8_kernel(
    const T* __restrict__ x, int64_t k, int64_t k_pad, const uint8_t* __restrict__ is_out,
    const int32_t* __restrict__ idx, const int32_t* __restrict__ counters, int max_out, int8_t* __restrict__ xq,
    float* __restrict__ rs, float* __restrict__ xo) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * k;
  int8_t* qr = xq + row * k_pad;
  float amax = 0.f;
  if (kVec) {
    for (int64_t v = threadIdx.x; v < k / 8; v += kThreads) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(xr) + v);
      const T* e = reinterpret_cast<const T*>(&raw);
      uint2 fl = make_uint2(0u, 0u);
      if (is_out) fl = __ldg(reinterpret_cast<const uint2*>(is_out) + v);
      const uint8_t* f = reinterpret_cast<const uint8_t*>(&fl);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (!f[i]) amax = nan_max(amax, fabsf(to_f<T>(e[i])));
    }
  } else {
    for (int64_t c = threadIdx.x; c < k; c += kThreads)
      if (!is_out || !is_out[c]) amax = nan_max(amax, fabsf(to_f<T>(xr[c])));
  }
  amax = block_max(amax);
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  if (threadIdx.x == 0) rs[row] = amax / 127.f;
  if (kVec) {
    for (int64_t v = threadIdx.x; v < k / 8; v += kThreads) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(xr) + v);
      const T* e = reinterpret_cast<const T*>(&raw);
      uint2 fl = make_uint2(0u, 0u);
      if (is_out) fl = __ldg(reinterpret_cast<const uint2*>(is_out) + v);
      const uint8_t* f = reinterpret_cast<const uint8_t*>(&fl);
      alignas(8) int8_t q[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) q[i] = f[i] ? int8_t(0) : to_int8(to_f<T>(e[i]), inv);
      reinterpret_cast<uint2*>(qr)[v] = *reinterpret_cast<const uint2*>(q);
    }
  } else {
    for (int64_t c = threadIdx.x; c < k; c += kThreads)
      qr[c] = (is_out && is_out[c]) ? int8_t(0) : to_int8(to_f<T>(xr[c]), inv);
  }
  for (int64_t c = k + threadIdx.x; c < k_pad; c += kThreads) qr[c] = 0;
  if (counters) {
    const int count = min(counters[0], max_out);
    for (int j = threadIdx.x; j < count; j += kThreads) xo[row * max_out + j] = to_f<T>(xr[idx[j]]);
  }
}

// ---------------------------------------------------------------------------------------------
// The weight's outlier columns, gathered once per call: wo[j][n] = w[n][idx[j]].
__global__ void __launch_bounds__(kThreads) gather_outlier_columns_kernel(const int8_t* __restrict__ w, int64_t ldw,
                                                                          int64_t n, const int32_t* __restrict__ idx,
                                                                          const int32_t* __restrict__ counters,
                                                                          int max_out, int8_t* __restrict__ wo) {
  const int j = blockIdx.y;
  if (j >= min(counters[0], max_out)) return;
  const int64_t c = idx[j];
  for (int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x; r < n; r += int64_t(gridDim.x) * kThreads)
    wo[j * n + r] = w[r * ldw + c];
}

// ---------------------------------------------------------------------------------------------
// Epilogue: a block covers 16 rows x 128 columns of y; thread (tx, ty) the column tx and the rows
// ty, ty + 2, ..., ty + 14. The outlier part is a small dot product per output (count terms),
// staged through shared memory 32 outlier columns at a time; with no outliers the block only scales.
constexpr int kEpiCols = 128, kEpiRows = 16, kEpiJ = 32, kEpiRowsPerThread = kEpiRows * kEpiCols / kThreads;

template <typename T>
__global__ void __launch_bounds__(kThreads) int8_epilogue_kernel(
    const int32_t* __restrict__ c32, int64_t ldc, const float* __restrict__ rs, const float* __restrict__ ws,
    const float* __restrict__ bias, const float* __restrict__ xo, const int8_t* __restrict__ wo,
    const int32_t* __restrict__ counters, int max_out, int64_t m, int64_t n, T* __restrict__ y) {
  __shared__ float s_x[kEpiRows][kEpiJ + 1];
  __shared__ float s_w[kEpiJ][kEpiCols];
  constexpr int kRowStep = kThreads / kEpiCols;
  const int tx = threadIdx.x % kEpiCols, ty = threadIdx.x / kEpiCols;
  const int64_t col0 = int64_t(blockIdx.x) * kEpiCols, col = col0 + tx;
  const int64_t row0 = int64_t(blockIdx.y) * kEpiRows;
  float acc[kEpiRowsPerThread];
#pragma unroll
  for (int i = 0; i < kEpiRowsPerThread; ++i) acc[i] = 0.f;
  const int count = counters ? min(counters[0], max_out) : 0;
  for (int j0 = 0; j0 < count; j0 += kEpiJ) {
    const int jn = min(kEpiJ, count - j0);
    for (int i = threadIdx.x; i < kEpiRows * kEpiJ; i += kThreads) {
      const int r = i / kEpiJ, jj = i % kEpiJ;
      s_x[r][jj] = (row0 + r < m && jj < jn) ? xo[(row0 + r) * max_out + j0 + jj] : 0.f;
    }
    for (int i = threadIdx.x; i < kEpiJ * kEpiCols; i += kThreads) {
      const int jj = i / kEpiCols, cc = i % kEpiCols;
      s_w[jj][cc] = (jj < jn && col0 + cc < n) ? static_cast<float>(wo[int64_t(j0 + jj) * n + col0 + cc]) : 0.f;
    }
    __syncthreads();
    for (int jj = 0; jj < jn; ++jj) {
      const float wv = s_w[jj][tx];
#pragma unroll
      for (int i = 0; i < kEpiRowsPerThread; ++i) acc[i] = fmaf(s_x[ty + kRowStep * i][jj], wv, acc[i]);
    }
    __syncthreads();
  }
  if (col >= n) return;
  const float scale = ws[col], b = bias ? bias[col] : 0.f;
#pragma unroll
  for (int i = 0; i < kEpiRowsPerThread; ++i) {
    const int64_t row = row0 + ty + kRowStep * i;
    if (row < m)
      y[row * n + col] = from_f<T>(fmaf(fmaf(static_cast<float>(c32[row * ldc + col]), rs[row], acc[i]), scale, b));
  }
}

}  // namespace

void launch_int8_gemv(const Int8WeightView& w, const void* x, void* y, int64_t m, DType dtype, cudaStream_t stream) {
  if (m <= 0) return;
  if (dtype == DType::F16)
    gemv_typed(w, static_cast<const __half*>(x), static_cast<__half*>(y), m, stream);
  else
    gemv_typed(w, static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(y), m, stream);
}

void launch_column_absmax(const void* x, DType dtype, int64_t m, int64_t k, uint32_t* colmax, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((k + kThreads - 1) / kThreads),
                  static_cast<unsigned>((m + kSlabRows - 1) / kSlabRows));
  if (dtype == DType::F16)
    column_absmax_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const __half*>(x), m, k, colmax);
  else
    column_absmax_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), m, k, colmax);
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_select_outliers(const uint32_t* colmax, int64_t k, float threshold, int max_outliers, int32_t* idx,
                            uint8_t* is_out, int32_t* counters, cudaStream_t stream) {
  // The threshold as a key: a column qualifies when its maximum's bits are >= these (threshold > 0).
  uint32_t thr_bits = 0;
  static_assert(sizeof(float) == sizeof(uint32_t));
  std::memcpy(&thr_bits, &threshold, sizeof(thr_bits));
  select_outliers_kernel<<<1, kSelectThreads, 0, stream>>>(colmax, k, thr_bits, max_outliers, idx, is_out, counters);
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_quantize_rows_int8(const void* x, DType dtype, int64_t m, int64_t k, int64_t k_pad, const uint8_t* is_out,
                               const int32_t* idx, const int32_t* counters, int max_outliers, int8_t* xq, float* rs,
                               float* xo, cudaStream_t stream) {
  if (m <= 0) return;
  const bool vec = vector_loads_ok(x, k);
  const dim3 grid(static_cast<unsigned>(m));
  auto go = [&](auto* typed) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(typed)>>;
    if (vec)
      quantize_rows_int8_kernel<T, true><<<grid, kThreads, 0, stream>>>(typed, k, k_pad, is_out, idx, counters,
                                                                        max_outliers, xq, rs, xo);
    else
      quantize_rows_int8_kernel<T, false><<<grid, kThreads, 0, stream>>>(typed, k, k_pad, is_out, idx, counters,
                                                                         max_outliers, xq, rs, xo);
  };
  if (dtype == DType::F16)
    go(static_cast<const __half*>(x));
  else
    go(static_cast<const __nv_bfloat16*>(x));
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_gather_outlier_columns(const Int8WeightView& w, const int32_t* idx, const int32_t* counters,
                                   int max_outliers, int8_t* wo, cudaStream_t stream) {
  if (max_outliers <= 0) return;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(32, (w.n + kThreads - 1) / kThreads)),
                  static_cast<unsigned>(max_outliers));
  gather_outlier_columns_kernel<<<grid, kThreads, 0, stream>>>(w.w, w.k_pad, w.n, idx, counters, max_outliers, wo);
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_int8_epilogue(const Int8WeightView& w, const int32_t* c32, int64_t ldc, const float* rs, const float* xo,
                          const int8_t* wo, const int32_t* counters, int max_outliers, int64_t m, void* y,
                          DType dtype, cudaStream_t stream) {
  if (m <= 0) return;
  const dim3 grid(static_cast<unsigned>((w.n + kEpiCols - 1) / kEpiCols),
                  static_cast<unsigned>((m + kEpiRows - 1) / kEpiRows));
  if (dtype == DType::F16)
    int8_epilogue_kernel<<<grid, kThreads, 0, stream>>>(c32, ldc, rs, w.ws, w.bias, xo, wo, counters, max_outliers, m,
                                                        w.n, static_cast<__half*>(y));
  else
    int8_epilogue_kernel<<<grid, kThreads, 0, stream>>>(c32, ldc, rs, w.ws, w.bias, xo, wo, counters, max_outliers, m,
                                                        w.n, static_cast<__nv_bfloat16*>(y));
  QRT_CUDA_CHECK_LAUNCH();
}

}  // namespace qrt::cuda
