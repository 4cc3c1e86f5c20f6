// Decode attention of one layer in one launch: RoPE, the KV-cache store and split-KV attention
// over GQA groups (see rope_store_decode_attention in kernels.h).
//
// Work of a block (KV head g, row i, part sp): the query heads of group g at row i, rotated at
// the row's position p and kept in shared memory as float (rounded through fp16 first, as the
// unfused rope_store() leaves them), against the keys [j0, j1) of part sp. A decode step is a
// chain of short kernels, so what bounds this one is the number of dependent memory round trips
// after the kernel before it finishes, not bandwidth. Hence:
// - the cached keys and values of the block's first chunk (positions before this step's, which
//   no kernel of the step writes) are put in flight with cp.async *before* pdl_wait(), together
//   with the cos / sin of the row's position: they arrive while the q/k/v projection still runs;
// - a chunk is large (32 KB of keys and 32 KB of values: 256 keys of 64 fp16 dims), so a context
//   that fits one chunk is one block that writes its result, with no merge across blocks;
// - a longer context is cut into parts of at least kMinPartKeys keys over at most gridDim.z
//   blocks; each part walks its keys a chunk at a time, and the last part to finish merges.
// Within a chunk: scores by lane groups (lanes_per_key lanes, 16 bytes of the key each, reduced
// by shuffles), the softmax updated per head by one warp, the values accumulated by threads that
// each own one (head, pair of dims) and a share of the chunk's keys (kg key groups, summed at the
// end). Keys of this step's own rows come rotated from k / v, never from the cache (other blocks
// of this launch may be writing them). The score scale and the window are the layer's, as kernel
// arguments. No soft-cap: a model with one runs the unfused pair (CudaOps::allocate leaves the
// fused attention off).
#include <cuda_pipeline.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroup = 8;
constexpr int kMaxHeadDim = 256;
constexpr int kChunkBytes = 32768;  // keys of one chunk (and as much for its values)
constexpr int kMaxChunkKeys = 256;
constexpr int kMinPartKeys = 64;    // a context longer than one chunk: parts of at least this many keys
constexpr int kMaxParts = 64;
static_assert(2 * kMaxGroup * kMaxParts <= kMaxGroup * kMaxChunkKeys, "the merge keeps its weights in sc");
constexpr int kMaxSlots = kMaxGroup * kMaxHeadDim / 2;  // (head, dim pair) accumulators of a block
constexpr int kAccPairs = kMaxSlots / kThreads;          // at most this many a thread
constexpr int kQPer = kMaxSlots / kThreads;              // query pairs a thread rotates

// Dynamic shared memory: keys, values, the rotated queries, the chunk's scores, the key groups'
// accumulators.
constexpr int kSmemQs = 2 * kChunkBytes;
constexpr int kSmemSc = kSmemQs + kMaxGroup * kMaxHeadDim * 4;
constexpr int kSmemRed = kSmemSc + kMaxGroup * kMaxChunkKeys * 4;
constexpr int kSmemBytes = kSmemRed + kThreads * 8;

__host__ __device__ constexpr int chunk_keys(int row_bytes) {
  return kChunkBytes / row_bytes < kMaxChunkKeys ? kChunkBytes / row_bytes : kMaxChunkKeys;
}
// Lanes that score one key together: a power of two covering as many of its 16-byte chunks as
// possible (a lane takes chunks sub, sub + lanes, ...: at most 2 for head_dim <= 256).
__device__ __forceinline__ int lanes_per_key(int chunks) {
  int l = 1;
  while (l * 2 <= chunks && l < 32) l *= 2;
  return l;
}

template <class T>
__global__ void __launch_bounds__(kThreads) rope_store_decode_attention_kernel(
    const __half* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v, int64_t q_stride,
    int64_t kv_stride, const float* __restrict__ cos_t, const float* __restrict__ sin_t,
    const int64_t* __restrict__ d_pos, T* kc, T* vc, __half* __restrict__ out, int n_heads, int group, int hd,
    int64_t cap, int64_t window, float scale, float* partials, int* counters) {
  using E = CacheElem<T>;
  constexpr int kPer = E::kPerChunk;  // elements of a 16-byte chunk
  extern __shared__ __align__(16) unsigned char smem[];
  T* ks = reinterpret_cast<T*>(smem);
  T* vs = reinterpret_cast<T*>(smem + kChunkBytes);
  float* qs = reinterpret_cast<float*>(smem + kSmemQs);  // [kMaxGroup][hd]
  float* sc = reinterpret_cast<float*>(smem + kSmemSc);  // [kMaxGroup][kMaxChunkKeys]
  float2* red = reinterpret_cast<float2*>(smem + kSmemRed);
  __shared__ float m_s[kMaxGroup], l_s[kMaxGroup], corr_s[kMaxGroup];
  __shared__ bool is_last;
  pdl_trigger();

  const int kvh = blockIdx.x, i = blockIdx.y, sp = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int half = hd / 2, ck = chunk_keys(hd * static_cast<int>(sizeof(T))), chunks = hd / kPer;
  // The position is the step's (written before the graph or by the step before): safe to read
  // before pdl_wait().
  const int64_t pos0 = *d_pos, p = pos0 + i;
  const int64_t first = window > 0 ? max(int64_t(0), p - window + 1) : 0;
  const int64_t keys = p + 1 - first;
  int64_t parts = 1;
  if (keys > ck) parts = min(static_cast<int64_t>(gridDim.z), (keys + kMinPartKeys - 1) / kMinPartKeys);
  const int64_t per_part = (keys + parts - 1) / parts;
  const int active = static_cast<int>((keys + per_part - 1) / per_part);
  if (sp >= active) {
    pdl_wait();  // nothing to do, but the block may not end before the kernel before it
    return;
  }
  const int64_t j0 = first + sp * per_part, j1 = min(p + 1, j0 + per_part);
  const bool last_part = sp == active - 1;  // holds key p, the row's own
  const T* K = kc + kvh * cap * hd;
  const T* V = vc + kvh * cap * hd;

  // Cached keys and values [t0, t0 + n) into the chunk buffers, asynchronously; this step's keys
  // (>= pos0) are left to fill_new.
  auto load_chunk = [&](int64_t t0, int n) {
    const int cached = static_cast<int>(max(int64_t(0), min(t0 + n, pos0) - t0));
    for (int idx = tid; idx < cached * chunks; idx += kThreads) {
      const int t = idx / chunks, c = idx - t * chunks;
      __pipeline_memcpy_async(&ks[t * hd + c * kPer], K + (t0 + t) * hd + c * kPer, 16);
      __pipeline_memcpy_async(&vs[t * hd + c * kPer], V + (t0 + t) * hd + c * kPer, 16);
    }
    __pipeline_commit();
  };
  // This step's keys in [t0, t0 + n): rotated from k, rounded as the cache stores them.
  auto fill_new = [&](int64_t t0, int n) {
    const int64_t jn = max(t0, pos0);
    const int count = static_cast<int>(max(int64_t(0), t0 + n - jn)), tstart = static_cast<int>(jn - t0);
    for (int idx = tid; idx < count * half; idx += kThreads) {
      const int t = tstart + idx / half, d = idx % half;
      const NewKvPair<T> e = new_kv_pair<T>(k, v, kv_stride, cos_t, sin_t, pos0, t0 + t, kvh, hd, d);
      ks[t * hd + d] = e.k0;
      ks[t * hd + d + half] = e.k1;
      vs[t * hd + d] = e.v0;
      vs[t * hd + d + half] = e.v1;
    }
  };

  int n = static_cast<int>(min(static_cast<int64_t>(ck), j1 - j0));
  load_chunk(j0, n);
  float qc[kQPer], qsn[kQPer];
#pragma unroll
  for (int r = 0; r < kQPer; ++r) {
    const int idx = tid + r * kThreads, d = idx % half;
    qc[r] = idx < group * half ? cos_t[p * half + d] : 0.f;
    qsn[r] = idx < group * half ? sin_t[p * half + d] : 0.f;
  }
  pdl_wait();  // q, k, v of this step are the kernel before's

  // The group's queries, rotated at p.
#pragma unroll
  for (int r = 0; r < kQPer; ++r) {
    const int idx = tid + r * kThreads;
    if (idx < group * half) {
      const int g = idx / half, d = idx - g * half;
      const __half* qr = q + i * q_stride + static_cast<int64_t>(kvh * group + g) * hd;
      const float a = __half2float(qr[d]), b = __half2float(qr[d + half]);
      qs[g * hd + d] = __half2float(__float2half_rn(a * qc[r] - b * qsn[r])) * scale;
      qs[g * hd + d + half] = __half2float(__float2half_rn(b * qc[r] + a * qsn[r])) * scale;
    }
  }
  if (tid < group) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.f;
  }
  // Value accumulators: slot = (head, dim pair). With few slots each one is shared by kg threads
  // that take every kg-th key of a chunk (summed at the end); with many a thread owns several.
  const int slots = group * half;
  const int kg = slots <= kThreads ? kThreads / slots : 1;
  const int kgi = kg > 1 ? tid / slots : 0;
  float2 acc[kAccPairs];
  int acc_g[kAccPairs], acc_d2[kAccPairs];
#pragma unroll
  for (int r = 0; r < kAccPairs; ++r) {
    acc[r] = make_float2(0.f, 0.f);
    int slot = -1;
    if (kg > 1) {
      if (r == 0 && tid < kg * slots) slot = tid % slots;
    } else if (tid + r * kThreads < slots) {
      slot = tid + r * kThreads;
    }
    acc_g[r] = slot >= 0 ? slot / half : -1;
    acc_d2[r] = slot >= 0 ? slot % half : 0;
  }
  const int lpk = lanes_per_key(chunks), sub = lane % lpk, keys_per_pass = kWarps * (32 / lpk);

  for (int64_t t0 = j0; t0 < j1; t0 += ck) {
    if (t0 != j0) {
      n = static_cast<int>(min(static_cast<int64_t>(ck), j1 - t0));
      load_chunk(t0, n);
    }
    fill_new(t0, n);
    __pipeline_wait_prior(0);
    __syncthreads();  // the chunk (every thread's copies and new keys) and, first time, qs / m_s
    if (last_part && t0 + n == j1) {
      // Key and value p (the chunk's last) into the cache: the only write of position p.
      const int t = n - 1;
      for (int c = tid; c < chunks; c += kThreads) {
        *reinterpret_cast<uint4*>(kc + (kvh * cap + p) * hd + c * kPer) =
            *reinterpret_cast<const uint4*>(&ks[t * hd + c * kPer]);
        *reinterpret_cast<uint4*>(vc + (kvh * cap + p) * hd + c * kPer) =
            *reinterpret_cast<const uint4*>(&vs[t * hd + c * kPer]);
      }
    }
    // Scores of every head of the group.
    for (int tb = 0; tb < n; tb += keys_per_pass) {
      const int t = tb + (w * 32 + lane) / lpk;
      float part[kMaxGroup];
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) part[g] = 0.f;
      if (t < n) {
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          const int c = sub + u * lpk;
          if (c < chunks) {
            float kf[kPer];
            E::chunk(*reinterpret_cast<const uint4*>(&ks[t * hd + c * kPer]), kf);
#pragma unroll
            for (int g = 0; g < kMaxGroup; ++g) {
              if (g < group) {
                float dot = 0.f;
#pragma unroll
                for (int e = 0; e < kPer; e += 4) {
                  const float4 qv = *reinterpret_cast<const float4*>(&qs[g * hd + c * kPer + e]);
                  dot += qv.x * kf[e] + qv.y * kf[e + 1] + qv.z * kf[e + 2] + qv.w * kf[e + 3];
                }
                part[g] += dot;
              }
            }
          }
        }
      }
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < group) {
          for (int o = lpk / 2; o > 0; o >>= 1) part[g] += __shfl_xor_sync(0xffffffffu, part[g], o);
          if (t < n && sub == 0) sc[g * kMaxChunkKeys + t] = part[g];
        }
      }
    }
    __syncthreads();
    // Online softmax, one warp per head.
    for (int g = w; g < group; g += kWarps) {
      float* scg = sc + g * kMaxChunkKeys;
      float mx = -INFINITY;
      for (int t = lane; t < n; t += 32) mx = fmaxf(mx, scg[t]);
      mx = warp_max(mx);
      const float m_old = m_s[g], m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int t = lane; t < n; t += 32) {
        const float e = __expf(scg[t] - m_new);
        scg[t] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float corr = __expf(m_old - m_new);
        corr_s[g] = corr;
        l_s[g] = l_s[g] * corr + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // Values: each slot over its key group's share of the chunk.
#pragma unroll
    for (int r = 0; r < kAccPairs; ++r) {
      const int g = acc_g[r];
      if (g < 0) continue;
      const float corr = corr_s[g];
      float2 a = make_float2(acc[r].x * corr, acc[r].y * corr);
      const T* vcol = vs + 2 * acc_d2[r];
      const float* scg = sc + g * kMaxChunkKeys;
#pragma unroll 4
      for (int t = kgi; t < n; t += kg) {
        const float pj = scg[t];
        const float2 vv = E::pair(vcol + t * hd, 0);
        a.x += pj * vv.x;
        a.y += pj * vv.y;
      }
      acc[r] = a;
    }
    __syncthreads();  // the buffers, sc and corr_s are rewritten next
  }
  // The key groups' sums into the first group's threads.
  if (kg > 1) {
    if (acc_g[0] >= 0) red[tid] = acc[0];
    __syncthreads();
    if (kgi == 0 && acc_g[0] >= 0) {
      float2 s = acc[0];
      for (int e = 1; e < kg; ++e) {
        const float2 o = red[tid + e * slots];
        s.x += o.x;
        s.y += o.y;
      }
      acc[0] = s;
    } else {
      acc_g[0] = -1;  // summed into another thread's slot
    }
  }

  const int64_t q_dim = static_cast<int64_t>(n_heads) * hd;
  if (active == 1) {
#pragma unroll
    for (int r = 0; r < kAccPairs; ++r) {
      const int g = acc_g[r];
      if (g < 0) continue;
      const float inv = 1.f / l_s[g];
      __half2* o = reinterpret_cast<__half2*>(out + i * q_dim + static_cast<int64_t>(kvh * group + g) * hd);
      o[acc_d2[r]] = __floats2half2_rn(acc[r].x * inv, acc[r].y * inv);
    }
    return;
  }
  // Partial result of this part: (max, sum, unnormalised accumulator) per head.
  const int pstride = static_cast<int>(gridDim.z);
  auto part_of = [&](int g, int s) {
    const int64_t pair = static_cast<int64_t>(i) * n_heads + kvh * group + g;
    return partials + (pair * pstride + s) * (hd + 2);
  };
  if (tid < group) {
    part_of(tid, sp)[0] = m_s[tid];
    part_of(tid, sp)[1] = l_s[tid];
  }
#pragma unroll
  for (int r = 0; r < kAccPairs; ++r) {
    const int g = acc_g[r];
    if (g < 0) continue;
    float* pr = part_of(g, sp) + 2 + 2 * acc_d2[r];
    pr[0] = acc[r].x;
    pr[1] = acc[r].y;
  }
  __threadfence();
  __syncthreads();
  int* counter = counters + static_cast<int64_t>(i) * (n_heads / group) + kvh;
  if (tid == 0) is_last = atomicAdd(counter, 1) == active - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  // The last part to finish merges every part of every head of the group (__ldcg: other
  // blocks' writes, not L1). All heads at once, with every load of a phase in flight together: the
  // merge is a chain of L2 round trips after the slowest part, so it is the round trips that count.
  // Phase 1: each part's (max, sum) of each head into shared memory (sc is free now).
  float* mx_s = sc;                          // [group][active]
  float* wt_s = sc + kMaxGroup * kMaxParts;  // [group][active]: the parts' sums
  for (int idx = tid; idx < group * active; idx += kThreads) {
    const int g = idx / active, s = idx - g * active;
    const float* pr = part_of(g, s);
    mx_s[idx] = __ldcg(pr);
    wt_s[idx] = __ldcg(pr + 1);
  }
  __syncthreads();
  // Phase 2: one warp per head: the weights exp(m_s - max) and the denominator.
  __shared__ float den_s[kMaxGroup];
  for (int g = w; g < group; g += kWarps) {
    float mx = -INFINITY;
    for (int s = lane; s < active; s += 32) mx = fmaxf(mx, mx_s[g * active + s]);
    mx = warp_max(mx);
    float den = 0.f;
    for (int s = lane; s < active; s += 32) {
      const float ms = mx_s[g * active + s];
      const float e = ms == -INFINITY ? 0.f : __expf(ms - mx);
      den += wt_s[g * active + s] * e;
      mx_s[g * active + s] = e;  // the weight, in place of the max
    }
    den = warp_sum(den);
    if (lane == 0) den_s[g] = den;
  }
  __syncthreads();
  // Phase 3: thread per (head, dim): the weighted sum over the parts, eight loads in flight.
  for (int idx = tid; idx < group * hd; idx += kThreads) {
    const int g = idx / hd, d = idx - g * hd;
    const float* base = part_of(g, 0) + 2 + d;
    const float* wg = mx_s + g * active;
    float num = 0.f;
    int s = 0;
    for (; s + 8 <= active; s += 8) {
      float x[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) x[u] = __ldcg(base + (s + u) * (hd + 2));
#pragma unroll
      for (int u = 0; u < 8; ++u) num += wg[s + u] * x[u];
    }
    for (; s < active; ++s) num += wg[s] * __ldcg(base + s * (hd + 2));
    out[i * q_dim + static_cast<int64_t>(kvh * group + g) * hd + d] = __float2half_rn(num / den_s[g]);
  }
  if (tid == 0) *counter = 0;
}

}  // namespace

bool decode_attention_fusable(int64_t n_heads, int64_t n_kv, int64_t head_dim, KvElem elem) {
  const int64_t per_chunk = 16 / kv_elem_bytes(elem);
  return n_kv > 0 && n_heads % n_kv == 0 && n_heads / n_kv <= kMaxGroup && head_dim >= per_chunk &&
         head_dim % per_chunk == 0 && head_dim <= kMaxHeadDim;
}

int decode_attention_group_splits(int sms, int64_t n_kv) {
  // Enough parts for about two blocks per SM at one row; a short context uses fewer on the device.
  return static_cast<int>(std::clamp<int64_t>((2 * sms + n_kv - 1) / std::max<int64_t>(1, n_kv), 1, kMaxParts));
}

void rope_store_decode_attention(const __half* q, const __half* k, const __half* v, int64_t q_stride,
                                 int64_t kv_stride, const float* cos, const float* sin, const int64_t* d_pos,
                                 const KvCache& cache, __half* out, int64_t m, int64_t n_heads, int64_t n_kv,
                                 int64_t head_dim, int64_t capacity, int64_t window, float scale,
                                 const DecodeAttentionScratch& scratch, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(n_kv), static_cast<unsigned>(m),
                  static_cast<unsigned>(std::clamp(scratch.group_splits, 1, kMaxParts)));
  auto run = [&](auto* kc, auto* vc) {
    using T = std::remove_pointer_t<decltype(kc)>;
    auto* kernel = rope_store_decode_attention_kernel<T>;
    // More than the 48 KB a block gets without asking: set once per device (a host-side attribute
    // of the current device, not an operation of a stream being captured).
    static std::atomic<uint64_t> done{0};
    int dev = 0;
    QRT_CUDA_CHECK(cudaGetDevice(&dev));
    const uint64_t bit = uint64_t(1) << (dev & 63);
    if (!(done.load() & bit)) {
      QRT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
      done.fetch_or(bit);
    }
    launch_smem(kernel, grid, dim3(kThreads), kSmemBytes, s, q, k, v, q_stride, kv_stride, cos, sin, d_pos, kc, vc, out,
                static_cast<int>(n_heads), static_cast<int>(n_heads / n_kv), static_cast<int>(head_dim), capacity,
                window, scale, scratch.partials, scratch.counters);
  };
  if (cache.elem == KvElem::Fp8E4M3)
    run(static_cast<__nv_fp8_e4m3*>(cache.keys), static_cast<__nv_fp8_e4m3*>(cache.values));
  else
    run(static_cast<__half*>(cache.keys), static_cast<__half*>(cache.values));
}

}  // namespace qrt::cuda_model
