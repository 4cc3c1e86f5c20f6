// The end of a decode step on the device: the final norm, a dense fp16 head and the greedy choice
// in one launch (rmsnorm_head_argmax), and the greedy choice alone over float logits (argmax).
// See kernels.h.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

constexpr int kHeadThreads = 256;
constexpr int kHeadWarps = kHeadThreads / 32;
constexpr int kRowsPerWarp = 8;  // rows a warp reads at once: 8 x 16 bytes in flight per lane
constexpr int kMaxHidden = 8192;
constexpr int kBlocksPerSm = 4;

// One row's greedy candidate: NaN counts as -infinity.
__device__ __forceinline__ float candidate_value(float v) { return isnan(v) ? -INFINITY : v; }

// The best (value, index) of a block into (*v, *i) of thread 0. sv / si: kHeadWarps slots.
__device__ void block_best(float& v, int32_t& i, float* sv, int32_t* si) {
  warp_best(v, i);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sv[w] = v, si[w] = i;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int k = 1; k < static_cast<int>(blockDim.x >> 5); ++k)
      if (better_candidate(sv[k], si[k], v, i)) v = sv[k], i = si[k];
}

__global__ void __launch_bounds__(kHeadThreads) rmsnorm_head_argmax_kernel(
    const float* __restrict__ x, const __half* __restrict__ delta, const float* __restrict__ weight, float eps,
    const __half* __restrict__ W, int64_t vocab, int hidden, float* __restrict__ logits, int32_t* token,
    float* part_v, int32_t* part_i, int* counter, bool advance, int32_t* tokens, int32_t* out_tokens, int64_t* d_pos,
    int64_t* step) {
  __shared__ __align__(16) float xs[kMaxHidden];
  __shared__ float sh[32];
  __shared__ float sv[kHeadWarps];
  __shared__ int32_t si[kHeadWarps];
  __shared__ bool is_last;
  pdl_entry();
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  // The normed row, as add_rmsnorm rounds it; every block computes it (a few KB of L2 reads next
  // to the head's megabytes).
  float ss = 0.f;
  for (int d = tid; d < hidden; d += kHeadThreads) {
    float v = x[d];
    if (delta) v += __half2float(delta[d]);
    xs[d] = v;
    ss += v * v;
  }
  ss = block_sum(ss, sh);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
  for (int d = tid; d < hidden; d += kHeadThreads) xs[d] = __half2float(__float2half_rn(xs[d] * inv * weight[d]));
  __syncthreads();

  const int chunks = hidden / 8;
  float best_v = -INFINITY;
  int32_t best_i = INT32_MAX;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kHeadWarps * kRowsPerWarp;
  for (int64_t r0 = (static_cast<int64_t>(blockIdx.x) * kHeadWarps + w) * kRowsPerWarp; r0 < vocab; r0 += stride) {
    float acc[kRowsPerWarp];
#pragma unroll
    for (int u = 0; u < kRowsPerWarp; ++u) acc[u] = 0.f;
    for (int c = lane; c < chunks; c += 32) {
      const float4 xa = *reinterpret_cast<const float4*>(&xs[c * 8]);
      const float4 xb = *reinterpret_cast<const float4*>(&xs[c * 8 + 4]);
      uint4 raw[kRowsPerWarp];
#pragma unroll
      for (int u = 0; u < kRowsPerWarp; ++u)
        if (r0 + u < vocab) raw[u] = __ldg(reinterpret_cast<const uint4*>(W + (r0 + u) * hidden) + c);
#pragma unroll
      for (int u = 0; u < kRowsPerWarp; ++u) {
        if (r0 + u >= vocab) continue;
        const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&raw[u].x));
        const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&raw[u].y));
        const float2 e = __half22float2(*reinterpret_cast<const __half2*>(&raw[u].z));
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&raw[u].w));
        acc[u] += xa.x * a.x + xa.y * a.y + xa.z * b.x + xa.w * b.y + xb.x * e.x + xb.y * e.y + xb.z * f.x + xb.w * f.y;
      }
    }
#pragma unroll
    for (int u = 0; u < kRowsPerWarp; ++u) {
      const float dot = warp_sum(acc[u]);
      const int64_t r = r0 + u;
      if (r >= vocab) continue;
      if (logits && lane == 0) logits[r] = dot;
      const float cv = candidate_value(dot);
      if (better_candidate(cv, static_cast<int32_t>(r), best_v, best_i)) best_v = cv, best_i = static_cast<int32_t>(r);
    }
  }
  block_best(best_v, best_i, sv, si);
  if (tid == 0) {
    part_v[blockIdx.x] = best_v;
    part_i[blockIdx.x] = best_i;
    __threadfence();
    is_last = atomicAdd(counter, 1) == static_cast<int>(gridDim.x) - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  best_v = -INFINITY;
  best_i = INT32_MAX;
  for (int b = tid; b < static_cast<int>(gridDim.x); b += kHeadThreads) {
    const float v = __ldcg(part_v + b);
    const int32_t i = __ldcg(part_i + b);
    if (better_candidate(v, i, best_v, best_i)) best_v = v, best_i = i;
  }
  block_best(best_v, best_i, sv, si);
  if (tid == 0) {
    *token = best_i;
    if (advance) {
      tokens[0] = best_i;
      out_tokens[*step] = best_i;
      *step += 1;
      *d_pos += 1;
    }
    *counter = 0;
  }
}

constexpr int kArgmaxThreads = 1024;

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const float* logits, int64_t vocab, int32_t* token) {
  pdl_entry();
  __shared__ float sv[kArgmaxThreads / 32];
  __shared__ int32_t si[kArgmaxThreads / 32];
  float best_v = -INFINITY;
  int32_t best_i = INT32_MAX;
  for (int64_t r = threadIdx.x; r < vocab; r += kArgmaxThreads) {
    const float cv = candidate_value(logits[r]);
    if (better_candidate(cv, static_cast<int32_t>(r), best_v, best_i)) best_v = cv, best_i = static_cast<int32_t>(r);
  }
  warp_best(best_v, best_i);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) sv[w] = best_v, si[w] = best_i;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 1; k < kArgmaxThreads / 32; ++k)
      if (better_candidate(sv[k], si[k], best_v, best_i)) best_v = sv[k], best_i = si[k];
    *token = best_i;
  }
}

}  // namespace

bool head_argmax_fusable(int64_t hidden) { return hidden >= 8 && hidden % 8 == 0 && hidden <= kMaxHidden; }

int head_argmax_blocks(int sms) { return std::max(1, kBlocksPerSm * sms); }

void rmsnorm_head_argmax(const float* x, const __half* delta, const float* weight, float eps, const __half* W,
                         int64_t vocab, int64_t hidden, float* logits, int32_t* token, const HeadArgmaxScratch& scratch,
                         int sms, bool advance, int32_t* tokens, int32_t* out_tokens, int64_t* d_pos, int64_t* step,
                         cudaStream_t s) {
  // As few passes over the rows as head_argmax_blocks() allows, every block with the same number
  // (a last pass with half the warps idle would cost a whole pass).
  const int64_t rows_per_pass = int64_t(kHeadWarps) * kRowsPerWarp;
  const int64_t max_blocks = head_argmax_blocks(sms);
  const int64_t passes = (vocab + rows_per_pass * max_blocks - 1) / (rows_per_pass * max_blocks);
  const int blocks = static_cast<int>((vocab + rows_per_pass * passes - 1) / (rows_per_pass * passes));
  launch(rmsnorm_head_argmax_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kHeadThreads), s, x, delta, weight, eps,
         W, vocab, static_cast<int>(hidden), logits, token, scratch.values, scratch.indices, scratch.counter, advance,
         tokens, out_tokens, d_pos, step);
}

void argmax(const float* logits, int64_t vocab, int32_t* token, cudaStream_t s) {
  launch(argmax_kernel, dim3(1), dim3(kArgmaxThreads), s, logits, vocab, token);
}

}  // namespace qrt::cuda_model
