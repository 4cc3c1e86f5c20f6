// Sampling of the next token on the device: greedy, or temperature + top-k + top-p, then the
// step and position advance (see kernels.h).
#include <cfloat>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr int kSampleThreads = 1024;

__global__ void __launch_bounds__(kSampleThreads) sample_kernel(const float* logits, int64_t vocab,
                                                                const SamplingState* st, int32_t* token,
                                                                int32_t* out_tokens, int64_t* d_pos, int64_t* step) {
  pdl_entry();
  __shared__ float sh[32];
  __shared__ float prefix[kSampleThreads];
  __shared__ int chosen;
  const int tid = threadIdx.x;
  // Greedy: arg max, lowest index on ties.
  float best = -FLT_MAX;
  int64_t best_i = 0;
  for (int64_t i = tid; i < vocab; i += kSampleThreads)
    if (logits[i] > best) best = logits[i], best_i = i;
  const float mx = block_max(best, sh);
  if (tid == 0) chosen = INT32_MAX;
  __syncthreads();
  if (best == mx) atomicMin(&chosen, static_cast<int>(best_i));
  __syncthreads();
  const float temp = st->temperature;
  if (temp > 0.f) {
    const float inv_t = 1.f / temp;
    // Threshold for top-k: the largest t with count(logit >= t) >= k (bisection on the value).
    float lo_v = -FLT_MAX;
    float mn = FLT_MAX;
    for (int64_t i = tid; i < vocab; i += kSampleThreads) mn = fminf(mn, logits[i]);
    mn = -block_max(-mn, sh);
    if (st->top_k > 0 && st->top_k < vocab) {
      float lo = mn, hi = mx;
      for (int it = 0; it < 40; ++it) {
        const float mid = 0.5f * (lo + hi);
        float c = 0.f;
        for (int64_t i = tid; i < vocab; i += kSampleThreads) c += logits[i] >= mid ? 1.f : 0.f;
        c = block_sum(c, sh);
        if (c >= static_cast<float>(st->top_k)) lo = mid; else hi = mid;
      }
      lo_v = lo;
    }
    float total = 0.f;
    for (int64_t i = tid; i < vocab; i += kSampleThreads)
      if (logits[i] >= lo_v) total += __expf((logits[i] - mx) * inv_t);
    total = block_sum(total, sh);
    if (st->top_p < 1.f) {
      // Largest t whose tokens (logit >= t) still carry top_p of the mass.
      float lo = fmaxf(lo_v, mn), hi = mx;
      for (int it = 0; it < 40; ++it) {
        const float mid = 0.5f * (lo + hi);
        float c = 0.f;
        for (int64_t i = tid; i < vocab; i += kSampleThreads)
          if (logits[i] >= mid) c += __expf((logits[i] - mx) * inv_t);
        c = block_sum(c, sh);
        if (c >= st->top_p * total) lo = mid; else hi = mid;
      }
      lo_v = fmaxf(lo_v, lo);
    }
    // Sample from the kept tokens in index order: chunk masses, prefix sums, then one walk.
    const int64_t chunk = (vocab + kSampleThreads - 1) / kSampleThreads;
    const int64_t b = tid * chunk, e = min(vocab, b + chunk);
    float mass = 0.f;
    for (int64_t i = b; i < e; ++i)
      if (logits[i] >= lo_v) mass += __expf((logits[i] - mx) * inv_t);
    prefix[tid] = mass;
    __syncthreads();
    if (tid == 0) {
      float run = 0.f;
      for (int t = 0; t < kSampleThreads; ++t) {
        const float v = prefix[t];
        prefix[t] = run;
        run += v;
      }
      sh[0] = run;
    }
    __syncthreads();
    const float z = sh[0];
    const uint64_t r = mix64(st->seed ^ mix64(static_cast<uint64_t>(*step) + 1));
    const float target = static_cast<float>((r >> 40) * (1.0 / 16777216.0)) * z;
    __syncthreads();
    if (target >= prefix[tid] && target < prefix[tid] + mass) {
      float run = prefix[tid];
      int64_t pick = -1, last = -1;
      for (int64_t i = b; i < e; ++i) {
        if (logits[i] < lo_v) continue;
        last = i;
        run += __expf((logits[i] - mx) * inv_t);
        if (run > target) {
          pick = i;
          break;
        }
      }
      if (pick < 0) pick = last;
      if (pick >= 0) chosen = static_cast<int>(pick);  // one thread's range holds the target
    }
    __syncthreads();
  }
  if (tid == 0) {
    *token = chosen;
    out_tokens[*step] = chosen;
    *step += 1;
    *d_pos += 1;
  }
}

}  // namespace

void sample_and_advance(const float* logits, int64_t vocab, const SamplingState* state, int32_t* token,
                        int32_t* out_tokens, int64_t* d_pos, int64_t* step, cudaStream_t s) {
  launch(sample_kernel, dim3(1), dim3(kSampleThreads), s, logits, vocab, state, token, out_tokens, d_pos, step);
}

}  // namespace qrt::cuda_model
