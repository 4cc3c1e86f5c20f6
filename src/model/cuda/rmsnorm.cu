// The RMS norm on the GPU, with the residual add (add_rmsnorm) or the embedding lookup
// (embed_rmsnorm) folded in, and of fp16 rows in place (rmsnorm_half) (see kernels.h).
#include <algorithm>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

// The residual row comes from x (plus delta when given) or, with tokens, from the embedding table
// (x is then written, times embed_scale): the first norm of a step folds the embedding lookup in.
__global__ void add_rmsnorm_kernel(float* x, const __half* delta, const int32_t* tokens, const __half* table,
                                   float embed_scale, const float* weight, __half* out, int64_t hidden, float eps) {
  pdl_entry();
  __shared__ float sh[32];
  const int64_t row = blockIdx.x;
  float* xr = x + row * hidden;
  const __half* er = tokens ? table + static_cast<int64_t>(tokens[row]) * hidden : nullptr;
  float ss = 0.f;
  for (int64_t d = threadIdx.x; d < hidden; d += blockDim.x) {
    float v;
    if (er) {
      v = __half2float(er[d]) * embed_scale;
      xr[d] = v;
    } else {
      v = xr[d];
      if (delta) {
        v += __half2float(delta[row * hidden + d]);
        xr[d] = v;
      }
    }
    ss += v * v;
  }
  ss = block_sum(ss, sh);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
  for (int64_t d = threadIdx.x; d < hidden; d += blockDim.x) out[row * hidden + d] = __float2half_rn(xr[d] * inv * weight[d]);
}

// The same for hidden % 4 == 0 and hidden <= 4 * kNormVecs * 1024: every load of a row is issued
// before any store (restrict pointers, values kept in registers), so a row costs one round trip to
// memory instead of one per loop iteration; float4 / half4 accesses.
constexpr int kNormVecs = 4;  // float4s per thread
__device__ __forceinline__ float4 half4_to_float4(uint2 raw) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__global__ void add_rmsnorm_vec_kernel(float* __restrict__ x, const __half* __restrict__ delta,
                                       const int32_t* __restrict__ tokens, const __half* __restrict__ table,
                                       float embed_scale, const float* __restrict__ weight, __half* __restrict__ out,
                                       int hidden, float eps) {
  pdl_entry();
  __shared__ float sh[32];
  const int64_t row = blockIdx.x;
  float4* xr = reinterpret_cast<float4*>(x + row * hidden);
  const uint2* er = tokens ? reinterpret_cast<const uint2*>(table + static_cast<int64_t>(tokens[row]) * hidden) : nullptr;
  const int n4 = hidden / 4;
  float4 v[kNormVecs], wv[kNormVecs];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kNormVecs; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < n4) {
      wv[j] = reinterpret_cast<const float4*>(weight)[i];  // in flight with x, not after the sum
      if (er) {
        v[j] = half4_to_float4(er[i]);
        v[j].x *= embed_scale, v[j].y *= embed_scale, v[j].z *= embed_scale, v[j].w *= embed_scale;
      } else {
        v[j] = xr[i];
        if (delta) {
          const float4 a = half4_to_float4(reinterpret_cast<const uint2*>(delta + row * hidden)[i]);
          v[j].x += a.x, v[j].y += a.y, v[j].z += a.z, v[j].w += a.w;
        }
      }
      ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
    }
  }
  ss = block_sum(ss, sh);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
#pragma unroll
  for (int j = 0; j < kNormVecs; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < n4) {
      if (delta || er) xr[i] = v[j];
      const __half2 lo = __floats2half2_rn(v[j].x * inv * wv[j].x, v[j].y * inv * wv[j].y);
      const __half2 hi = __floats2half2_rn(v[j].z * inv * wv[j].z, v[j].w * inv * wv[j].w);
      uint2 raw;
      raw.x = *reinterpret_cast<const uint32_t*>(&lo);
      raw.y = *reinterpret_cast<const uint32_t*>(&hi);
      reinterpret_cast<uint2*>(out + row * hidden)[i] = raw;
    }
  }
}

// x = x / rms(x) * weight over fp16 rows, in place: each thread reads its elements in the first
// loop and rewrites the same ones in the second, so no thread reads what another writes.
__global__ void rmsnorm_half_kernel(__half* x, const float* weight, int64_t hidden, float eps) {
  pdl_entry();
  __shared__ float sh[32];
  __half* xr = x + static_cast<int64_t>(blockIdx.x) * hidden;
  float ss = 0.f;
  for (int64_t d = threadIdx.x; d < hidden; d += blockDim.x) {
    const float v = __half2float(xr[d]);
    ss += v * v;
  }
  ss = block_sum(ss, sh);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
  for (int64_t d = threadIdx.x; d < hidden; d += blockDim.x)
    xr[d] = __float2half_rn(__half2float(xr[d]) * inv * weight[d]);
}

}  // namespace

namespace {
void launch_rmsnorm(float* x, const __half* delta, const int32_t* tokens, const __half* table, float embed_scale,
                    const float* weight, __half* out, int64_t m, int64_t hidden, float eps, cudaStream_t s) {
  const int64_t n4 = hidden / 4;
  if (hidden % 4 == 0 && n4 <= int64_t(kNormVecs) * 1024) {
    const int threads = static_cast<int>(std::max<int64_t>(32, ((n4 + kNormVecs - 1) / kNormVecs + 31) / 32 * 32));
    launch(add_rmsnorm_vec_kernel, dim3(static_cast<unsigned>(m)), dim3(threads), s, x, delta, tokens, table,
           embed_scale, weight, out, static_cast<int>(hidden), eps);
    return;
  }
  launch(add_rmsnorm_kernel, dim3(static_cast<unsigned>(m)), dim3(512), s, x, delta, tokens, table, embed_scale, weight,
         out, hidden, eps);
}
}  // namespace

void add_rmsnorm(float* x, const __half* delta, const float* weight, __half* out, int64_t m, int64_t hidden, float eps,
                 cudaStream_t s) {
  launch_rmsnorm(x, delta, nullptr, nullptr, 1.f, weight, out, m, hidden, eps, s);
}
void embed_rmsnorm(const int32_t* tokens, const __half* table, float scale, float* x, const float* weight, __half* out,
                   int64_t m, int64_t hidden, float eps, cudaStream_t s) {
  launch_rmsnorm(x, nullptr, tokens, table, scale, weight, out, m, hidden, eps, s);
}
void rmsnorm_half(__half* x, const float* weight, int64_t m, int64_t hidden, float eps, cudaStream_t s) {
  launch(rmsnorm_half_kernel, dim3(static_cast<unsigned>(m)), dim3(256), s, x, weight, hidden, eps);
}

}  // namespace qrt::cuda_model
