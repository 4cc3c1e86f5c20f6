// The batched engine's paged KV pool: RoPE + KV store at each row's own position, and causal GQA
// attention of each row over its own sequence's blocks (see kernels.h, "the batched engine's paged
// KV pool"). Correctness first: the store is rope_store's kernel with a block-mapped slot; the
// attention is the split-KV attention of attention.cu (one block per (head, row, split), a
// sub-chunk of keys scored at a time into shared memory, online softmax) with each key's pool
// slot looked up in the row's block table, the score scale, soft-capping and the window passed
// in, and the splits cut from each row's own context.
#include <algorithm>
#include <string>
#include <type_traits>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"
#include "qrt/error.h"

namespace qrt::cuda_model {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kSub = 64;             // keys scored per pass of a block (shared-memory scores)
constexpr int64_t kMinSplitKeys = 128;  // positions of a split, at least (paged_attention_splits)

// The pool slot of position p of the sequence whose block table is `table`.
__device__ __forceinline__ int64_t pool_slot(const int32_t* table, int64_t p) {
  return static_cast<int64_t>(table[p / kPagedBlock]) * kPagedBlock + p % kPagedBlock;
}

// One block per (row, head): as rope_store_heads_kernel (rope_store.cu), at pos[i] and its slot.
template <class T>
__global__ void paged_rope_store_kernel(__half* __restrict__ q, const __half* __restrict__ k,
                                        const __half* __restrict__ v, const float* __restrict__ cos_t,
                                        const float* __restrict__ sin_t, PagedRows rows, T* __restrict__ kc,
                                        T* __restrict__ vc, int n_heads, int hd, int64_t q_stride,
                                        int64_t kv_stride) {
  using E = CacheElem<T>;
  pdl_entry();
  const int i = blockIdx.x, hh = blockIdx.y, half = hd / 2;
  const int64_t p = rows.pos[i];
  for (int d = threadIdx.x; d < half; d += blockDim.x) {
    const float c = cos_t[p * half + d], sn = sin_t[p * half + d];
    if (hh < n_heads) {
      __half* xq = q + i * q_stride + static_cast<int64_t>(hh) * hd;
      const float a = __half2float(xq[d]), b = __half2float(xq[d + half]);
      xq[d] = __float2half_rn(a * c - b * sn);
      xq[d + half] = __float2half_rn(b * c + a * sn);
    } else {
      const int kh = hh - n_heads;
      const int64_t slot = pool_slot(rows.tables + rows.table_off[i], p);
      const __half* xk = k + i * kv_stride + static_cast<int64_t>(kh) * hd;
      const float a = __half2float(xk[d]), b = __half2float(xk[d + half]);
      T* dst = kc + (kh * rows.pool_positions + slot) * hd;
      dst[d] = E::from_float(a * c - b * sn);
      dst[d + half] = E::from_float(b * c + a * sn);
      const __half* xv = v + i * kv_stride + static_cast<int64_t>(kh) * hd;
      T* vdst = vc + (kh * rows.pool_positions + slot) * hd;
      vdst[d] = E::from_half(xv[d]);
      vdst[d + half] = E::from_half(xv[d + half]);
    }
  }
}

// grid = (heads, rows, splits). Block `sp` takes the sp-th of `splits` equal ranges of row i's
// positions [first, p] (a short row leaves the last ranges empty), scores a sub-chunk of keys at
// a time (their pool slots looked up first, then every key's loads in flight, then one softmax
// pass), and keeps running (max, sum, acc). One split: the block writes its result. Several:
// each writes its partial result, and the last of the (row, head) to finish (a counter per pair,
// reset by that block) merges them, as attention_split_kernel (attention.cu) does.
template <class T>
__global__ void __launch_bounds__(kThreads) paged_attention_kernel(
    const __half* __restrict__ q, const T* __restrict__ kc, const T* __restrict__ vc, __half* __restrict__ out,
    PagedRows rows, int64_t n_heads, int64_t group, int hd, int64_t window, float scale, float softcap,
    int64_t q_stride, float* partials, int* counters) {
  using E = CacheElem<T>;
  pdl_entry();
  __shared__ float sc[kSub];
  __shared__ int64_t slot_s[kSub];
  __shared__ float sh[32];
  __shared__ float weight_s[kPagedMaxSplits];
  __shared__ bool is_last;
  const int64_t h = blockIdx.x, i = blockIdx.y;
  const int sp = blockIdx.z, splits = gridDim.z;
  const int64_t p = rows.pos[i];
  const int32_t* table = rows.tables + rows.table_off[i];
  const int64_t first = window > 0 ? max(int64_t(0), p - window + 1) : 0;
  const int64_t total = p + 1 - first;
  const int64_t chunk = (total + splits - 1) / splits;
  const int64_t j0 = min(p + 1, first + sp * chunk), j1 = min(p + 1, j0 + chunk);
  const int64_t kvh = h / group;
  const T* K = kc + kvh * rows.pool_positions * hd;
  const T* V = vc + kvh * rows.pool_positions * hd;
  const int64_t q_dim = n_heads * hd;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  // Every lane keeps the query pairs it multiplies (pairs lane, lane + 32, ...), scaled.
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
  for (int64_t s0 = j0; s0 < j1; s0 += kSub) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kSub), j1 - s0));
    for (int t = tid; t < n; t += kThreads) slot_s[t] = pool_slot(table, s0 + t);
    __syncthreads();
    // Scores: warp w takes keys w, w + 4, ...; four keys per iteration keep four loads in flight.
    for (int t0 = w; t0 < n; t0 += 4 * kWarps) {
      float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int t = t0 + u * kWarps;
        if (t >= n) break;
        const T* kr = K + slot_s[t] * hd;
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
        float v = warp_sum(part[u]);
        if (softcap > 0.f) v = softcap * tanhf(v / softcap);
        const int t = t0 + u * kWarps;
        if (lane == 0 && t < n) sc[t] = v;
      }
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int t = tid; t < n; t += kThreads) mx = fmaxf(mx, sc[t]);
    mx = block_max(mx, sh);
    const float m_new = fmaxf(m, mx);
    const float corr = __expf(m - m_new);
    __syncthreads();
    float psum = 0.f;
    for (int t = tid; t < n; t += kThreads) {
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
      for (int t = 0; t < n; ++t) a0 += sc[t] * E::to_float(V[slot_s[t] * hd + tid]);
    }
    if (tid + kThreads < hd) {
#pragma unroll 8
      for (int t = 0; t < n; ++t) a1 += sc[t] * E::to_float(V[slot_s[t] * hd + tid + kThreads]);
    }
    acc0 = acc0 * corr + a0;
    acc1 = acc1 * corr + a1;
    __syncthreads();  // sc[] and slot_s[] are rewritten by the next sub-chunk
  }
  if (splits == 1) {  // the row's whole range (never empty: it holds position p)
    const float inv = 1.f / l;
    if (tid < hd) out[i * q_dim + h * hd + tid] = __float2half_rn(acc0 * inv);
    if (tid + kThreads < hd) out[i * q_dim + h * hd + tid + kThreads] = __float2half_rn(acc1 * inv);
    return;
  }
  const int64_t pair = i * n_heads + h;
  float* part = partials + (pair * splits + sp) * (hd + 2);
  if (tid == 0) {
    part[0] = m;  // -infinity for an empty range: weight 0 in the merge
    part[1] = l;
  }
  if (tid < hd) part[2 + tid] = acc0;
  if (tid + kThreads < hd) part[2 + tid + kThreads] = acc1;
  __threadfence();
  __syncthreads();
  if (tid == 0) is_last = atomicAdd(&counters[pair], 1) == splits - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  // Merge (__ldcg: other blocks' writes, not L1).
  const float* base = partials + pair * splits * (hd + 2);
  const float ms = tid < splits ? __ldcg(base + tid * (hd + 2)) : -INFINITY;
  const float ls = tid < splits ? __ldcg(base + tid * (hd + 2) + 1) : 0.f;
  const float mx = block_max(ms, sh);
  const float e = ms == -INFINITY ? 0.f : __expf(ms - mx);
  if (tid < splits) weight_s[tid] = e;
  const float den = block_sum(ls * e, sh);  // its barriers also publish weight_s[]
  for (int d = tid; d < hd; d += kThreads) {
    float num = 0.f;
    for (int s2 = 0; s2 < splits; ++s2) num += weight_s[s2] * __ldcg(base + s2 * (hd + 2) + 2 + d);
    out[i * q_dim + h * hd + d] = __float2half_rn(num / den);
  }
  if (tid == 0) counters[pair] = 0;
}

}  // namespace

void paged_rope_store(__half* q, const __half* k, const __half* v, const float* cos, const float* sin,
                      const PagedRows& rows, const KvCache& cache, int64_t m, int64_t n_heads, int64_t n_kv,
                      int64_t head_dim, int64_t q_stride, int64_t kv_stride, cudaStream_t s) {
  if (m < 1) return;
  const int threads = static_cast<int>(std::min<int64_t>(128, std::max<int64_t>(32, (head_dim / 2 + 31) / 32 * 32)));
  const dim3 grid(static_cast<unsigned>(m), static_cast<unsigned>(n_heads + n_kv));
  auto run = [&](auto* kc, auto* vc) {
    launch(paged_rope_store_kernel<std::remove_pointer_t<decltype(kc)>>, grid, dim3(threads), s, q, k, v, cos, sin,
           rows, kc, vc, static_cast<int>(n_heads), static_cast<int>(head_dim), q_stride, kv_stride);
  };
  if (cache.elem == KvElem::Fp8E4M3)
    run(static_cast<__nv_fp8_e4m3*>(cache.keys), static_cast<__nv_fp8_e4m3*>(cache.values));
  else
    run(static_cast<__half*>(cache.keys), static_cast<__half*>(cache.values));
}

int paged_attention_splits(int sms, int64_t m, int64_t n_heads, int64_t longest) {
  // About two blocks per SM: a split only where the (row, head) pairs alone are fewer, and each
  // split at least kMinSplitKeys positions. pairs * splits < 2 * sms + pairs < 4 * sms (the
  // scratch's slots); pairs < 2 * sms (its counters).
  const int64_t pairs = std::max<int64_t>(1, m * n_heads), target = 2 * static_cast<int64_t>(std::max(sms, 1));
  if (pairs >= target) return 1;
  const int64_t by_gpu = (target + pairs - 1) / pairs;
  const int64_t by_keys = (std::max<int64_t>(1, longest) + kMinSplitKeys - 1) / kMinSplitKeys;
  return static_cast<int>(std::clamp<int64_t>(std::min(by_gpu, by_keys), 1, kPagedMaxSplits));
}

void paged_attention_scratch_sizes(int sms, int64_t* slots, int64_t* pairs) {
  const int64_t target = 2 * static_cast<int64_t>(std::max(sms, 1));
  *pairs = target;
  *slots = 2 * target;
}

void paged_attention(const __half* q, const KvCache& cache, __half* out, const PagedRows& rows, int64_t m,
                     int64_t n_heads, int64_t n_kv, int64_t head_dim, int64_t window, float scale, float softcap,
                     int64_t q_stride, int splits, const PagedAttentionScratch& scratch, cudaStream_t s) {
  if (m < 1) return;
  if (head_dim > kMaxHeadDim || head_dim % 2 || n_kv < 1 || n_heads % n_kv)
    throw internal_error("paged_attention: head_dim " + std::to_string(head_dim) + ", heads " +
                         std::to_string(n_heads) + " / " + std::to_string(n_kv) + " unsupported");
  if (splits < 1 || splits > kPagedMaxSplits)
    throw internal_error("paged_attention: " + std::to_string(splits) + " splits, expected 1 to " +
                         std::to_string(kPagedMaxSplits));
  if (splits > 1 && (m * n_heads > scratch.pairs || m * n_heads * splits > scratch.slots || !scratch.partials ||
                     !scratch.counters))
    throw internal_error("paged_attention: " + std::to_string(m) + " rows x " + std::to_string(n_heads) + " heads x " +
                         std::to_string(splits) + " splits exceed the scratch (" + std::to_string(scratch.pairs) +
                         " pairs, " + std::to_string(scratch.slots) + " slots)");
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(m), static_cast<unsigned>(splits));
  auto run = [&](const auto* kc, const auto* vc) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(kc)>>;
    launch(paged_attention_kernel<T>, grid, dim3(kThreads), s, q, kc, vc, out, rows, n_heads, n_heads / n_kv,
           static_cast<int>(head_dim), window, scale, softcap, q_stride, scratch.partials, scratch.counters);
  };
  if (cache.elem == KvElem::Fp8E4M3)
    run(static_cast<const __nv_fp8_e4m3*>(cache.keys), static_cast<const __nv_fp8_e4m3*>(cache.values));
  else
    run(static_cast<const __half*>(cache.keys), static_cast<const __half*>(cache.values));
}

}  // namespace qrt::cuda_model
