// Per-token FP8 (e4m3) quantization of activations for cuda_fp8: one block per row computes the
// row's absolute maximum, then writes x / s saturated to e4m3 with s = amax / 448 (the scale the
// GEMM multiplies back through cuBLASLt's per-row "outer vector" B scale).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "backends/cuda/fp8_quant.h"

namespace qrt::cuda {
namespace {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

constexpr int kThreads = 256;

// K % 8 == 0 and rows 16-byte aligned (checked by the caller): 16-byte loads, 8-byte stores.
template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(const T* __restrict__ x, int64_t k,
                                                                  uint8_t* __restrict__ xq, float* __restrict__ xs) {
  __shared__ float warp_max[kThreads / 32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * k;
  const int64_t vecs = k / 8;
  float amax = 0.f;
  for (int64_t v = threadIdx.x; v < vecs; v += kThreads) {
    uint4 raw = __ldg(reinterpret_cast<const uint4*>(xr) + v);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(to_f<T>(e[i])));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = amax;
  __syncthreads();
  amax = 0.f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) amax = fmaxf(amax, warp_max[w]);
  const float scale = amax > 0.f ? amax / 448.f : 1.f;
  const float inv = 1.f / scale;
  if (threadIdx.x == 0) xs[row] = scale;
  uint8_t* qr = xq + row * k;
  for (int64_t v = threadIdx.x; v < vecs; v += kThreads) {
    uint4 raw = __ldg(reinterpret_cast<const uint4*>(xr) + v);
    const T* e = reinterpret_cast<const T*>(&raw);
    alignas(8) uint8_t q[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      q[i] = static_cast<uint8_t>(__nv_cvt_float_to_fp8(to_f<T>(e[i]) * inv, __NV_SATFINITE, __NV_E4M3));
    reinterpret_cast<uint2*>(qr)[v] = *reinterpret_cast<const uint2*>(q);
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

}  // namespace qrt::cuda
