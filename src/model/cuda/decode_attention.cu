// Decode attention of one layer in one launch: RoPE, the KV-cache store and split-KV attention
// over GQA groups (see rope_store_decode_attention in kernels.h).
//
// Work of a block (KV head g, row i, part sp): the query heads of group g at row i, rotated at
// the row's position p and kept in shared memory as float (rounded through fp16 first, as the
// unfused rope_store() leaves them), against the keys [j0, j1) of part sp. Keys and values come a
// tile at a time (8 KB of keys, 8 KB of values, fp16 or fp8 as the cache holds them) through
// cp.async into one of two shared-memory buffers while the other is scored. A tile is scored by
// lane groups (lanes_per_key lanes, 16 bytes of the key each, reduced by shuffles), its softmax updated per head by one warp, and its
// values accumulated with one thread per (head, pair of dims). Parts: the row's keys are cut into
// tiles and the tiles shared out over at most gridDim.z parts, so a context of one tile is one
// block that writes its result, and a long one is spread across the GPU and merged. The score
// scale and the window are the layer's, as kernel arguments. No soft-cap: a tanh per score in
// this kernel cost the uncapped kernel registers (and occupancy), so a model with one runs the
// unfused pair (CudaOps::allocate leaves the fused attention off).
#include <cuda_pipeline.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroup = 8;
constexpr int kMaxHeadDim = 256;
constexpr int kTileBytes = 8192;  // one tile of keys (and one of values)
constexpr int kMaxTileKeys = 128;
constexpr int kMaxParts = 64;
constexpr int kAccPairs = kMaxGroup * kMaxHeadDim / 2 / kThreads;  // (head, dim pair) slots per thread

__host__ __device__ constexpr int tile_keys(int row_bytes) {
  return kTileBytes / row_bytes < kMaxTileKeys ? kTileBytes / row_bytes : kMaxTileKeys;
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
  __shared__ __align__(16) T ks[2][kTileBytes / sizeof(T)];
  __shared__ __align__(16) T vs[2][kTileBytes / sizeof(T)];
  __shared__ __align__(16) float qs[kMaxGroup][kMaxHeadDim];
  __shared__ float sc[kMaxGroup][kMaxTileKeys];
  __shared__ float m_s[kMaxGroup], l_s[kMaxGroup], corr_s[kMaxGroup];
  __shared__ float weight_s[kMaxParts];
  __shared__ float sh[32];
  __shared__ bool is_last;
  pdl_entry();

  const int kvh = blockIdx.x, i = blockIdx.y, sp = blockIdx.z, parts = gridDim.z;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int half = hd / 2, kt = tile_keys(hd * static_cast<int>(sizeof(T))), chunks = hd / kPer;
  const int64_t pos0 = *d_pos, p = pos0 + i;
  const int64_t first = window > 0 ? max(int64_t(0), p - window + 1) : 0;
  const int64_t tiles = (p + 1 - first + kt - 1) / kt;
  const int64_t per_part = (tiles + parts - 1) / parts;
  const int active = static_cast<int>((tiles + per_part - 1) / per_part);
  if (sp >= active) return;
  const int64_t j0 = first + sp * per_part * kt, j1 = min(p + 1, j0 + per_part * kt);
  const bool last_part = sp == active - 1;  // holds key p, the row's own
  const T* K = kc + kvh * cap * hd;
  const T* V = vc + kvh * cap * hd;

  // Keys [t0, t0 + n) of the cache into buffer `buf`, asynchronously; this step's keys (>= pos0)
  // are left to fill_new (other blocks of this launch may be writing them into the cache).
  auto load_tile = [&](int64_t t0, int n, int buf) {
    const int cached = static_cast<int>(max(int64_t(0), min(t0 + n, pos0) - t0));
    for (int idx = tid; idx < cached * chunks; idx += kThreads) {
      const int t = idx / chunks, c = idx - t * chunks;
      __pipeline_memcpy_async(&ks[buf][t * hd + c * kPer], K + (t0 + t) * hd + c * kPer, 16);
      __pipeline_memcpy_async(&vs[buf][t * hd + c * kPer], V + (t0 + t) * hd + c * kPer, 16);
    }
    __pipeline_commit();
  };
  // This step's keys in [t0, t0 + n): rotated from k, rounded as the cache stores them.
  auto fill_new = [&](int64_t t0, int n, int buf) {
    const int64_t jn = max(t0, pos0);
    const int count = static_cast<int>(max(int64_t(0), t0 + n - jn)), tstart = static_cast<int>(jn - t0);
    for (int idx = tid; idx < count * half; idx += kThreads) {
      const int t = tstart + idx / half, d = idx % half;
      const int64_t j = t0 + t, r = j - pos0;
      const __half* kr = k + r * kv_stride + static_cast<int64_t>(kvh) * hd;
      const __half* vr = v + r * kv_stride + static_cast<int64_t>(kvh) * hd;
      const float c = cos_t[j * half + d], s = sin_t[j * half + d];
      const float a = __half2float(kr[d]), b = __half2float(kr[d + half]);
      ks[buf][t * hd + d] = E::from_float(a * c - b * s);
      ks[buf][t * hd + d + half] = E::from_float(b * c + a * s);
      vs[buf][t * hd + d] = E::from_half(vr[d]);
      vs[buf][t * hd + d + half] = E::from_half(vr[d + half]);
    }
  };

  const int64_t n_tiles = (j1 - j0 + kt - 1) / kt;
  load_tile(j0, static_cast<int>(min(static_cast<int64_t>(kt), j1 - j0)), 0);

  // The group's queries, rotated at p while the first tile is in flight.
  for (int idx = tid; idx < group * half; idx += kThreads) {
    const int g = idx / half, d = idx - g * half;
    const __half* qr = q + i * q_stride + static_cast<int64_t>(kvh * group + g) * hd;
    const float c = cos_t[p * half + d], s = sin_t[p * half + d];
    const float a = __half2float(qr[d]), b = __half2float(qr[d + half]);
    qs[g][d] = __half2float(__float2half_rn(a * c - b * s)) * scale;
    qs[g][d + half] = __half2float(__float2half_rn(b * c + a * s)) * scale;
  }
  if (tid < group) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.f;
  }
  float2 acc[kAccPairs];
  int acc_g[kAccPairs], acc_d2[kAccPairs];
#pragma unroll
  for (int r = 0; r < kAccPairs; ++r) {
    acc[r] = make_float2(0.f, 0.f);
    const int idx = tid + r * kThreads;
    acc_g[r] = idx < group * half ? idx / half : -1;
    acc_d2[r] = idx < group * half ? idx % half : 0;
  }
  const int lpk = lanes_per_key(chunks), sub = lane % lpk, keys_per_pass = kWarps * (32 / lpk);

  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    const int buf = static_cast<int>(tile & 1);
    const int64_t t0 = j0 + tile * kt;
    const int n = static_cast<int>(min(static_cast<int64_t>(kt), j1 - t0));
    if (tile + 1 < n_tiles) {
      load_tile(t0 + kt, static_cast<int>(min(static_cast<int64_t>(kt), j1 - t0 - kt)), buf ^ 1);
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    fill_new(t0, n, buf);
    __syncthreads();  // the tile (every thread's copies and new keys) and, first time, qs / m_s
    if (last_part && tile == n_tiles - 1) {
      // Key and value p (the tile's last) into the cache: the only write of position p.
      const int t = n - 1;
      for (int c = tid; c < chunks; c += kThreads) {
        *reinterpret_cast<uint4*>(kc + (kvh * cap + p) * hd + c * kPer) =
            *reinterpret_cast<const uint4*>(&ks[buf][t * hd + c * kPer]);
        *reinterpret_cast<uint4*>(vc + (kvh * cap + p) * hd + c * kPer) =
            *reinterpret_cast<const uint4*>(&vs[buf][t * hd + c * kPer]);
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
            E::chunk(*reinterpret_cast<const uint4*>(&ks[buf][t * hd + c * kPer]), kf);
#pragma unroll
            for (int g = 0; g < kMaxGroup; ++g) {
              if (g < group) {
                float dot = 0.f;
#pragma unroll
                for (int e = 0; e < kPer; e += 4) {
                  const float4 qv = *reinterpret_cast<const float4*>(&qs[g][c * kPer + e]);
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
          if (t < n && sub == 0) sc[g][t] = part[g];
        }
      }
    }
    __syncthreads();
    // Online softmax, one warp per head.
    for (int g = w; g < group; g += kWarps) {
      float mx = -INFINITY;
      for (int t = lane; t < n; t += 32) mx = fmaxf(mx, sc[g][t]);
      mx = warp_max(mx);
      const float m_old = m_s[g], m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int t = lane; t < n; t += 32) {
        const float e = __expf(sc[g][t] - m_new);
        sc[g][t] = e;
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
    // Values, one thread per (head, pair of dims).
#pragma unroll
    for (int r = 0; r < kAccPairs; ++r) {
      const int g = acc_g[r];
      if (g < 0) continue;
      const float corr = corr_s[g];
      float2 a = make_float2(acc[r].x * corr, acc[r].y * corr);
      const T* vcol = &vs[buf][0] + 2 * acc_d2[r];
#pragma unroll 4
      for (int t = 0; t < n; ++t) {
        const float pj = sc[g][t];
        const float2 vv = E::pair(vcol + t * hd, 0);
        a.x += pj * vv.x;
        a.y += pj * vv.y;
      }
      acc[r] = a;
    }
    __syncthreads();  // buffer `buf`, sc and corr_s are rewritten next
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
  auto part_of = [&](int g, int s) {
    const int64_t pair = static_cast<int64_t>(i) * n_heads + kvh * group + g;
    return partials + (pair * parts + s) * (hd + 2);
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
  // blocks' writes, not L1).
  for (int g = 0; g < group; ++g) {
    const float* base = part_of(g, 0);
    const float ms = tid < active ? __ldcg(base + tid * (hd + 2)) : -INFINITY;
    const float ls = tid < active ? __ldcg(base + tid * (hd + 2) + 1) : 0.f;
    const float mx = block_max(ms, sh);
    const float e = ms == -INFINITY ? 0.f : __expf(ms - mx);
    if (tid < active) weight_s[tid] = e;
    const float den = block_sum(ls * e, sh);  // its barriers also publish weight_s[]
    __half* o = out + i * q_dim + static_cast<int64_t>(kvh * group + g) * hd;
    for (int d = tid; d < hd; d += kThreads) {
      float num = 0.f;
      for (int s = 0; s < active; ++s) num += weight_s[s] * __ldcg(base + s * (hd + 2) + 2 + d);
      o[d] = __float2half_rn(num / den);
    }
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
    launch(rope_store_decode_attention_kernel<std::remove_pointer_t<decltype(kc)>>, grid, dim3(kThreads), s, q, k, v,
           q_stride, kv_stride, cos, sin, d_pos, kc, vc, out, static_cast<int>(n_heads),
           static_cast<int>(n_heads / n_kv), static_cast<int>(head_dim), capacity, window, scale, scratch.partials,
           scratch.counters);
  };
  if (cache.elem == KvElem::Fp8E4M3)
    run(static_cast<__nv_fp8_e4m3*>(cache.keys), static_cast<__nv_fp8_e4m3*>(cache.values));
  else
    run(static_cast<__half*>(cache.keys), static_cast<__half*>(cache.values));
}

}  // namespace qrt::cuda_model
