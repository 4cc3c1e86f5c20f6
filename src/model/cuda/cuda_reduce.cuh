// Warp and block reductions shared by the model's kernels (device code only; internal header).
#pragma once

#include <cfloat>
#include <cstdint>

namespace qrt::cuda_model {

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

}  // namespace qrt::cuda_model
