// What the model's kernels share (internal header, .cu files only): warp and block reductions,
// the greedy comparison, the KV cache's element types, this step's rotated key / value pairs for
// the decode attention kernels, the grid size of the grid-stride kernels, and programmatic
// dependent launch (PDL).
//
// PDL. Every kernel of src/model/cuda (but hold_kernel, a test aid launched plainly) starts with
// pdl_trigger() then pdl_wait(), and is launched through launch(), which sets the
// programmatic-serialization attribute on sm_90+ (unless QRT_CUDA_PDL=0). The next kernel on the
// stream may then be scheduled as soon as every block of this one has started, and runs up to its
// own pdl_wait(), which returns once this kernel has finished and its writes are visible: a kernel
// reads and writes nothing another kernel writes before its pdl_wait() (the int4 kernels of
// src/backends/cuda stream their weights meanwhile, the decode attention kernels the keys and
// values that earlier steps cached; the others wait first). A kernel launched without the attribute
// waits for its predecessor as usual and both calls are no-ops.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <utility>

#include "gpu/check.h"
#include "gpu/pdl.cuh"

namespace qrt::cuda_model {

using qrt::cuda::pdl_trigger;
using qrt::cuda::pdl_wait;

// Both, at a kernel's entry.
__device__ __forceinline__ void pdl_entry() {
  pdl_trigger();
  pdl_wait();
}

// True when the current device runs PDL (sm_90+) and QRT_CUDA_PDL is not 0 (kernel_common.cu).
bool pdl_enabled();

// kernel<<<grid, block, smem, s>>>(args...), with the PDL attribute where pdl_enabled(); a launch
// error throws qrt::Error.
template <typename... Params, typename... Args>
void launch_smem(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  if (pdl_enabled()) {
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  QRT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}
// The same without dynamic shared memory.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t s, Args&&... args) {
  launch_smem(kernel, grid, block, 0, s, std::forward<Args>(args)...);
}

// Blocks of `threads` covering n elements, at most 65535 (the kernels stride over the rest).
inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, 65535));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide sum / max (blockDim.x multiple of 32, <= 1024; every thread calls it); every thread
// gets the result. sh: 32 floats of shared memory, free again when the call returns.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  float t = lane < nw ? sh[lane] : 0.f;
  return warp_sum(t);
}
__device__ __forceinline__ float block_max(float v, float* sh) {
  v = warp_max(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  float t = lane < nw ? sh[lane] : -FLT_MAX;
  return warp_max(t);
}

// The greedy choice between two (logit, index) candidates: the larger logit, the lower index
// among equal ones. NaN logits must have been turned into -infinity (the host sampler's rule).
__device__ __forceinline__ bool better_candidate(float v, int32_t i, float best_v, int32_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}
// Warp-wide greedy reduction of (value, index): every lane gets the best of the warp.
__device__ __forceinline__ void warp_best(float& v, int32_t& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (better_candidate(ov, oi, v, i)) v = ov, i = oi;
  }
}

// The KV cache's element types: fp16, or fp8 e4m3 (round to nearest even, saturating at 448).
// pair(row, k): elements k and k + 1 (k even) as float2; chunk(raw, out): the 16 / sizeof(T)
// elements of 16 bytes as floats.
template <class T>
struct CacheElem;
template <>
struct CacheElem<__half> {
  static constexpr int kPerChunk = 8;
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
  static __device__ __forceinline__ __half from_half(__half v) { return v; }
  static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
  static __device__ __forceinline__ float2 pair(const __half* row, int k) {
    return __half22float2(*reinterpret_cast<const __half2*>(row + k));
  }
  static __device__ __forceinline__ void chunk(const uint4& raw, float* out) {
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
};
template <>
struct CacheElem<__nv_fp8_e4m3> {
  static constexpr int kPerChunk = 16;
  static __device__ __forceinline__ __nv_fp8_e4m3 from_float(float v) { return __nv_fp8_e4m3(v); }
  static __device__ __forceinline__ __nv_fp8_e4m3 from_half(__half v) { return __nv_fp8_e4m3(v); }
  static __device__ __forceinline__ float to_float(__nv_fp8_e4m3 v) { return static_cast<float>(v); }
  static __device__ __forceinline__ float2 two(uint16_t bits) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(bits), __NV_E4M3);
    return __half22float2(*reinterpret_cast<const __half2*>(&h));
  }
  static __device__ __forceinline__ float2 pair(const __nv_fp8_e4m3* row, int k) {
    return two(*reinterpret_cast<const uint16_t*>(row + k));
  }
  static __device__ __forceinline__ void chunk(const uint4& raw, float* out) {
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 lo = two(static_cast<uint16_t>(w[i] & 0xFFFFu)), hi = two(static_cast<uint16_t>(w[i] >> 16));
      out[4 * i] = lo.x;
      out[4 * i + 1] = lo.y;
      out[4 * i + 2] = hi.x;
      out[4 * i + 3] = hi.y;
    }
  }
};

// The pair of dims (d, d + hd / 2) of this step's key and value at position j, KV head kvh: the
// key rotated (rotate-half RoPE, cos / sin tables of hd / 2 columns) from row j - pos0 of k, both
// rounded as the cache stores them. Rows of k / v are kv_stride elements apart. The decode
// attention kernels take this step's keys from here, never from the cache other blocks write.
template <class T>
struct NewKvPair {
  T k0, k1, v0, v1;
};
template <class T>
__device__ __forceinline__ NewKvPair<T> new_kv_pair(const __half* __restrict__ k, const __half* __restrict__ v,
                                                    int64_t kv_stride, const float* __restrict__ cos_t,
                                                    const float* __restrict__ sin_t, int64_t pos0, int64_t j, int kvh,
                                                    int hd, int d) {
  using E = CacheElem<T>;
  const int half = hd / 2;
  const int64_t r = j - pos0;
  const __half* kr = k + r * kv_stride + static_cast<int64_t>(kvh) * hd;
  const __half* vr = v + r * kv_stride + static_cast<int64_t>(kvh) * hd;
  const float c = cos_t[j * half + d], s = sin_t[j * half + d];
  const float a = __half2float(kr[d]), b = __half2float(kr[d + half]);
  return {E::from_float(a * c - b * s), E::from_float(b * c + a * s), E::from_half(vr[d]), E::from_half(vr[d + half])};
}

}  // namespace qrt::cuda_model
