// FP8 (e4m3) quantization of activations for cuda_fp8, and the in-place scale pass of its
// tensorwise path. Scales are s = amax / 448 (1 for an all-zero input); values are x / s saturated
// to e4m3. Per token: one block per row. Per tensor: one block per row finds the row maxima, then
// a grid-stride pass quantizes everything with the maximum of those.
#include <algorithm>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "backends/cuda/fp8/fp8_quant.h"
#include "gpu/convert.cuh"

namespace qrt::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float e4m3_scale(float amax) { return amax > 0.f ? amax / 448.f : 1.f; }

// Max of v over the block, returned to every thread. Once per kernel: it owns its shared array.
__device__ __forceinline__ float block_max(float v) {
  __shared__ float warp_max[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = v;
  __syncthreads();
  v = 0.f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) v = fmaxf(v, warp_max[w]);
  return v;
}

// max |x| over one row of k (k % 8 == 0, 16-byte aligned: 16-byte loads), for the whole block.
template <typename T>
__device__ __forceinline__ float row_amax(const T* __restrict__ xr, int64_t k) {
  float amax = 0.f;
  for (int64_t v = threadIdx.x; v < k / 8; v += kThreads) {
    uint4 raw = __ldg(reinterpret_cast<const uint4*>(xr) + v);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(to_f<T>(e[i])));
  }
  return block_max(amax);
}

// The 8 values of one 16-byte load times inv, saturated to e4m3: 8 bytes.
template <typename T>
__device__ __forceinline__ uint2 to_e4m3x8(const uint4 raw, float inv) {
  const T* e = reinterpret_cast<const T*>(&raw);
  alignas(8) uint8_t q[8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
    q[i] = static_cast<uint8_t>(__nv_cvt_float_to_fp8(to_f<T>(e[i]) * inv, __NV_SATFINITE, __NV_E4M3));
  return *reinterpret_cast<const uint2*>(q);
}

// Per token: xs[row] = the row's scale, xq = the row quantized with it.
template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(const T* __restrict__ x, int64_t k,
                                                                  uint8_t* __restrict__ xq, float* __restrict__ xs) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * k;
  const float scale = e4m3_scale(row_amax(xr, k));
  const float inv = 1.f / scale;
  if (threadIdx.x == 0) xs[row] = scale;
  uint8_t* qr = xq + row * k;
  for (int64_t v = threadIdx.x; v < k / 8; v += kThreads)
    reinterpret_cast<uint2*>(qr)[v] = to_e4m3x8<T>(__ldg(reinterpret_cast<const uint4*>(xr) + v), inv);
}

// Per tensor, pass 1: amax of each row into row_amax[m].
template <typename T>
__global__ void __launch_bounds__(kThreads) row_amax_kernel(const T* __restrict__ x, int64_t k,
                                                             float* __restrict__ row_amax_out) {
  const float a = row_amax(x + int64_t(blockIdx.x) * k, k);
  if (threadIdx.x == 0) row_amax_out[blockIdx.x] = a;
}

// Pass 2: every block reduces the m row maxima (a few KiB from L2) to the tensor's scale, then
// quantizes a grid-stride share of the rows with it; block 0 publishes the scale for the GEMM.
template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_tensor_kernel(const T* __restrict__ x, int64_t m, int64_t k,
                                                                    const float* __restrict__ row_amax_in,
                                                                    uint8_t* __restrict__ xq, float* __restrict__ scale_out) {
  float amax = 0.f;
  for (int64_t r = threadIdx.x; r < m; r += kThreads) amax = fmaxf(amax, row_amax_in[r]);
  const float scale = e4m3_scale(block_max(amax));
  const float inv = 1.f / scale;
  if (blockIdx.x == 0 && threadIdx.x == 0) *scale_out = scale;
  const int64_t vecs = m * (k / 8);
  for (int64_t v = blockIdx.x * int64_t(kThreads) + threadIdx.x; v < vecs; v += int64_t(gridDim.x) * kThreads)
    reinterpret_cast<uint2*>(xq)[v] = to_e4m3x8<T>(__ldg(reinterpret_cast<const uint4*>(x) + v), inv);
}

// Tensorwise path (Hopper's cuBLASLt has neither per-row "outer vector" FP8 scales nor an alpha
// vector for FP8): the GEMM wrote y pre-scaled by 1/mul; this multiplies every element by
// mul * ws[n] (* xs[m] when per token) and adds the bias, in place, two elements per thread.
template <typename T>
__global__ void scale_cols_inplace_kernel(T* __restrict__ y, const float* __restrict__ xs, const float* __restrict__ ws,
                                          const float* __restrict__ bias, float mul, int64_t m, int64_t n) {
  for (int64_t r = blockIdx.y; r < m; r += gridDim.y) {
    const float sr = mul * (xs ? xs[r] : 1.f);
    T* yr = y + r * n;
    for (int64_t c = 2 * (blockIdx.x * int64_t(blockDim.x) + threadIdx.x); c < n; c += 2 * int64_t(gridDim.x) * blockDim.x) {
      if (c + 1 < n && ((n & 1) == 0)) {
        T v[2];
        *reinterpret_cast<uint32_t*>(v) = *reinterpret_cast<const uint32_t*>(yr + c);
        v[0] = from_f<T>(to_f<T>(v[0]) * sr * ws[c] + (bias ? bias[c] : 0.f));
        v[1] = from_f<T>(to_f<T>(v[1]) * sr * ws[c + 1] + (bias ? bias[c + 1] : 0.f));
        *reinterpret_cast<uint32_t*>(yr + c) = *reinterpret_cast<const uint32_t*>(v);
      } else {
        for (int64_t j = c; j < c + 2 && j < n; ++j) yr[j] = from_f<T>(to_f<T>(yr[j]) * sr * ws[j] + (bias ? bias[j] : 0.f));
      }
    }
  }
}

}  // namespace

void launch_quantize_rows_fp8(const void* x, DType dtype, int64_t m, int64_t k, uint8_t* xq, float* xs,
                              cudaStream_t stream) {
  if (m <= 0) return;
  if (dtype == DType::F16)
    quantize_rows_kernel<__half><<<static_cast<unsigned>(m), kThreads, 0, stream>>>(static_cast<const __half*>(x), k, xq, xs);
  else
    quantize_rows_kernel<__nv_bfloat16><<<static_cast<unsigned>(m), kThreads, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(x), k, xq, xs);
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_quantize_tensor_fp8(const void* x, DType dtype, int64_t m, int64_t k, uint8_t* xq, float* row_amax,
                                float* scale, int num_sms, cudaStream_t stream) {
  if (m <= 0) return;
  const int64_t vec_blocks = (m * (k / 8) + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(vec_blocks, int64_t(num_sms) * 4)));
  if (dtype == DType::F16) {
    const auto* xp = static_cast<const __half*>(x);
    row_amax_kernel<__half><<<static_cast<unsigned>(m), kThreads, 0, stream>>>(xp, k, row_amax);
    quantize_tensor_kernel<__half><<<blocks, kThreads, 0, stream>>>(xp, m, k, row_amax, xq, scale);
  } else {
    const auto* xp = static_cast<const __nv_bfloat16*>(x);
    row_amax_kernel<__nv_bfloat16><<<static_cast<unsigned>(m), kThreads, 0, stream>>>(xp, k, row_amax);
    quantize_tensor_kernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(xp, m, k, row_amax, xq, scale);
  }
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_scale_cols_inplace(void* y, const float* xs, const float* ws, const float* bias, float mul, int64_t m,
                               int64_t n, DType dtype, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return;
  const int threads = 256;
  const dim3 blocks(static_cast<unsigned>(std::min<int64_t>((n / 2 + threads) / threads, 64)),
                    static_cast<unsigned>(std::min<int64_t>(m, 65535)));
  if (dtype == DType::F16)
    scale_cols_inplace_kernel<<<blocks, threads, 0, stream>>>(static_cast<__half*>(y), xs, ws, bias, mul, m, n);
  else
    scale_cols_inplace_kernel<<<blocks, threads, 0, stream>>>(static_cast<__nv_bfloat16*>(y), xs, ws, bias, mul, m, n);
  QRT_CUDA_CHECK_LAUNCH();
}

}  // namespace qrt::cuda
