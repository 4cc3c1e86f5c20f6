// Causal GQA attention over the KV cache: one block per (head, query row), or split across
// blocks over the keys for few rows (decode) (see kernels.h). Both take the score scale, the
// soft-cap (0: none; a branch on the argument, so the uncapped path runs as before) and the
// layer's window as arguments: a captured decode step passes each layer its own.
#include <algorithm>
#include <type_traits>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

constexpr int kAttnWarps = 4;
constexpr int kMaxHeadDim = 256;

// One block per (head, query row); each warp walks every 4th key with an online softmax, then the
// four partial results are merged.
template <class T>
__global__ void __launch_bounds__(kAttnWarps * 32) attention_kernel(const __half* q, const T* kc, const T* vc,
                                                                   __half* out, const int64_t* d_pos, int64_t n_heads,
                                                                   int64_t group, int64_t hd, int64_t cap,
                                                                   int64_t window, float scale, float softcap,
                                                                   int64_t q_stride) {
  using E = CacheElem<T>;
  pdl_entry();
  __shared__ float qs[kMaxHeadDim];
  __shared__ float sm_m[kAttnWarps], sm_l[kAttnWarps];
  __shared__ float sm_acc[kAttnWarps][kMaxHeadDim];
  const int64_t h = blockIdx.x, i = blockIdx.y;
  const int64_t p = *d_pos + i;
  const int64_t first = window > 0 ? max(int64_t(0), p - window + 1) : 0;
  const int64_t kvh = h / group;
  const T* K = kc + kvh * cap * hd;
  const T* V = vc + kvh * cap * hd;
  const int64_t q_dim = n_heads * hd;
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = __half2float(q[i * q_stride + h * hd + d]) * scale;
  __syncthreads();
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  float m = -INFINITY, l = 0.f;
  float acc[kMaxHeadDim / 32];
#pragma unroll
  for (int t = 0; t < kMaxHeadDim / 32; ++t) acc[t] = 0.f;
  for (int64_t j = first + w; j <= p; j += kAttnWarps) {
    const T* kr = K + j * hd;
    float s = 0.f;
#pragma unroll
    for (int t = 0; t < kMaxHeadDim / 32; ++t) {
      const int d = lane + 32 * t;
      if (d < hd) s += qs[d] * E::to_float(kr[d]);
    }
    s = warp_sum(s);
    if (softcap > 0.f) s = softcap * tanhf(s / softcap);
    const float m_new = fmaxf(m, s);
    const float corr = __expf(m - m_new), pj = __expf(s - m_new);
    l = l * corr + pj;
    const T* vr = V + j * hd;
#pragma unroll
    for (int t = 0; t < kMaxHeadDim / 32; ++t) {
      const int d = lane + 32 * t;
      if (d < hd) acc[t] = acc[t] * corr + pj * E::to_float(vr[d]);
    }
    m = m_new;
  }
  if (lane == 0) {
    sm_m[w] = m;
    sm_l[w] = l;
  }
#pragma unroll
  for (int t = 0; t < kMaxHeadDim / 32; ++t) {
    const int d = lane + 32 * t;
    if (d < hd) sm_acc[w][d] = acc[t];
  }
  __syncthreads();
  float mx = -INFINITY;
#pragma unroll
  for (int ww = 0; ww < kAttnWarps; ++ww) mx = fmaxf(mx, sm_m[ww]);
  float den = 0.f;
#pragma unroll
  for (int ww = 0; ww < kAttnWarps; ++ww) den += sm_l[ww] * __expf(sm_m[ww] - mx);
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.f;
#pragma unroll
    for (int ww = 0; ww < kAttnWarps; ++ww) num += sm_acc[ww][d] * __expf(sm_m[ww] - mx);
    out[i * q_dim + h * hd + d] = __float2half_rn(num / den);
  }
}

constexpr int kSplitThreads = 128;
constexpr int kSplitWarps = kSplitThreads / 32;
constexpr int kSplitSub = 64;  // keys scored per pass of a block (shared-memory scores)
constexpr int kMaxSplits = 32;  // decode_attention_splits() never returns more

// Split-KV attention for few query rows ("flash-decoding"): one decode step has only n_heads
// (row, head) pairs, too few blocks for the GPU, and the plain kernel walks every key of a head in
// one block. Here grid = (heads, rows, splits): block `sp` takes an equal share of the row's keys,
// scores them a sub-chunk at a time (all keys' loads in flight, then one softmax pass), keeps
// running (max, sum, acc) and writes them to `partials`; the last block of the (row, head) to
// finish (a counter per pair, reset by that block) merges the splits. Chunk sizes come from the
// position on the device, so one captured graph serves every step.
template <class T>
__global__ void __launch_bounds__(kSplitThreads) attention_split_kernel(
    const __half* q, const T* kc, const T* vc, __half* out, const int64_t* d_pos, int64_t n_heads,
    int64_t group, int64_t hd, int64_t cap, int64_t window, float scale, float softcap, int64_t q_stride,
    float* partials, int* counters) {
  pdl_entry();
  __shared__ float sc[kSplitSub];
  __shared__ float sh[32];
  __shared__ bool is_last;
  const int64_t h = blockIdx.x, i = blockIdx.y;
  const int sp = blockIdx.z, splits = gridDim.z;
  const int64_t p = *d_pos + i;
  const int64_t first = window > 0 ? max(int64_t(0), p - window + 1) : 0;
  const int64_t total = p + 1 - first;
  const int64_t chunk = (total + splits - 1) / splits;
  const int64_t j0 = first + sp * chunk, j1 = min(p + 1, j0 + chunk);
  const int64_t kvh = h / group;
  using E = CacheElem<T>;
  const T* K = kc + kvh * cap * hd;
  const T* V = vc + kvh * cap * hd;
  const int64_t q_dim = n_heads * hd;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  // Every lane keeps the query pairs it multiplies (pairs lane, lane + 32, ...) in registers: no
  // shared-memory round trip and barrier before the keys' loads can start.
  float2 qv[kMaxHeadDim / 64];
  const __half2* qh = reinterpret_cast<const __half2*>(q + i * q_stride + h * hd);
#pragma unroll
  for (int c = 0; c < kMaxHeadDim / 64; ++c) {
    const int d2 = lane + 32 * c;
    const float2 f = d2 < hd / 2 ? __half22float2(qh[d2]) : make_float2(0.f, 0.f);
    qv[c] = make_float2(f.x * scale, f.y * scale);
  }
  // Each thread owns dims tid and tid + 128 of the accumulator (head_dim <= 256).
  float m = -INFINITY, l = 0.f, acc0 = 0.f, acc1 = 0.f;
  for (int64_t s0 = j0; s0 < j1; s0 += kSplitSub) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kSplitSub), j1 - s0));
    // Scores: warp w takes keys w, w + 4, ...; four keys per iteration keep four loads in flight.
    for (int t0 = w; t0 < n; t0 += 4 * kSplitWarps) {
      float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int t = t0 + u * kSplitWarps;
        if (t >= n) break;
        const T* kr = K + (s0 + t) * hd;
#pragma unroll
        for (int c = 0; c < kMaxHeadDim / 64; ++c) {
          const int d2 = lane + 32 * c;
          if (d2 < hd / 2) {
            const float2 kv = E::pair(kr, 2 * d2);
            part[u] += qv[c].x * kv.x + qv[c].y * kv.y;
          }
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const float v = warp_sum(part[u]);
        const int t = t0 + u * kSplitWarps;
        if (lane == 0 && t < n) sc[t] = v;
      }
    }
    __syncthreads();
    // Soft-capped where the scores are first read: the exp pass below reads each score in the
    // same thread.
    float mx = -INFINITY;
    for (int t = tid; t < n; t += kSplitThreads) {
      if (softcap > 0.f) sc[t] = softcap * tanhf(sc[t] / softcap);
      mx = fmaxf(mx, sc[t]);
    }
    mx = block_max(mx, sh);
    const float m_new = fmaxf(m, mx);
    const float corr = __expf(m - m_new);
    __syncthreads();
    float psum = 0.f;
    for (int t = tid; t < n; t += kSplitThreads) {
      const float e = __expf(sc[t] - m_new);
      sc[t] = e;
      psum += e;
    }
    psum = block_sum(psum, sh);  // its barriers also publish sc[]
    l = l * corr + psum;
    m = m_new;
    float a0 = 0.f, a1 = 0.f;
    if (tid < hd) {
#pragma unroll 8
      for (int t = 0; t < n; ++t) a0 += sc[t] * E::to_float(V[(s0 + t) * hd + tid]);
    }
    if (tid + kSplitThreads < hd) {
#pragma unroll 8
      for (int t = 0; t < n; ++t) a1 += sc[t] * E::to_float(V[(s0 + t) * hd + tid + kSplitThreads]);
    }
    acc0 = acc0 * corr + a0;
    acc1 = acc1 * corr + a1;
    __syncthreads();  // sc[] is rewritten by the next sub-chunk
  }
  const int64_t pair = i * n_heads + h;
  float* part = partials + (pair * splits + sp) * (hd + 2);
  if (tid == 0) {
    part[0] = m;
    part[1] = l;
  }
  if (tid < hd) part[2 + tid] = acc0;
  if (tid + kSplitThreads < hd) part[2 + tid + kSplitThreads] = acc1;
  __threadfence();
  __syncthreads();
  if (tid == 0) is_last = atomicAdd(&counters[pair], 1) == splits - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  // Merge: thread s < splits reads split s's (max, sum) (all in parallel: a serial loop of
  // dependent L2 reads cost several microseconds), then every dim sums its splits' weighted
  // accumulators, all loaded at once. __ldcg: other blocks' writes, not L1.
  __shared__ float weight_s[kMaxSplits];
  const float* base = partials + pair * splits * (hd + 2);
  const float ms = tid < splits ? __ldcg(base + tid * (hd + 2)) : -INFINITY;
  const float ls = tid < splits ? __ldcg(base + tid * (hd + 2) + 1) : 0.f;
  const float mx = block_max(ms, sh);
  const float e = ms == -INFINITY ? 0.f : __expf(ms - mx);
  if (tid < splits) weight_s[tid] = e;
  const float den = block_sum(ls * e, sh);  // its barriers also publish weight_s[]
  for (int64_t d = tid; d < hd; d += kSplitThreads) {
    // Every split's value of dim d in flight at once (one L2 round trip, not one per 8 splits),
    // then summed in split order.
    float v[kMaxSplits];
#pragma unroll
    for (int sp2 = 0; sp2 < kMaxSplits; ++sp2) v[sp2] = sp2 < splits ? __ldcg(base + sp2 * (hd + 2) + 2 + d) : 0.f;
    float num = 0.f;
#pragma unroll
    for (int sp2 = 0; sp2 < kMaxSplits; ++sp2)
      if (sp2 < splits) num += weight_s[sp2] * v[sp2];
    out[i * q_dim + h * hd + d] = __float2half_rn(num / den);
  }
  if (tid == 0) counters[pair] = 0;
}

}  // namespace

int decode_attention_splits(int sms, int64_t n_heads) {
  // About two blocks per SM for one row; never more than 32 splits.
  return static_cast<int>(std::clamp<int64_t>((2 * sms + n_heads - 1) / n_heads, 1, 32));
}
size_t decode_attention_partial_floats(int64_t rows, int64_t n_heads, int splits, int64_t head_dim) {
  return static_cast<size_t>(rows * n_heads * splits * (head_dim + 2));
}

void attention(const __half* q, const KvCache& cache, __half* out, const int64_t* d_pos, int64_t m, int64_t n_heads,
               int64_t n_kv, int64_t head_dim, int64_t capacity, int64_t window, float scale, float softcap,
               int64_t q_stride, cudaStream_t s, const DecodeAttentionScratch* scratch) {
  auto run = [&](const auto* kc, const auto* vc) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(kc)>>;
    if (scratch && scratch->splits > 1 && m <= scratch->max_rows) {
      const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(m), static_cast<unsigned>(scratch->splits));
      launch(attention_split_kernel<T>, grid, dim3(kSplitThreads), s, q, kc, vc, out, d_pos, n_heads, n_heads / n_kv,
             head_dim, capacity, window, scale, softcap, q_stride, scratch->partials, scratch->counters);
      return;
    }
    const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(m));
    launch(attention_kernel<T>, grid, dim3(kAttnWarps * 32), s, q, kc, vc, out, d_pos, n_heads, n_heads / n_kv,
           head_dim, capacity, window, scale, softcap, q_stride);
  };
  if (cache.elem == KvElem::Fp8E4M3)
    run(static_cast<const __nv_fp8_e4m3*>(cache.keys), static_cast<const __nv_fp8_e4m3*>(cache.values));
  else
    run(static_cast<const __half*>(cache.keys), static_cast<const __half*>(cache.values));
}

}  // namespace qrt::cuda_model
