// fp16 / bf16 <-> float in kernels templated on the activation type (T = __half or
// __nv_bfloat16): to_f<T>(v), from_f<T>(f) (round to nearest). Internal header for .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace qrt::cuda {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

}  // namespace qrt::cuda
