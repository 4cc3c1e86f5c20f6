// Decode attention of one layer in one launch for short contexts: RoPE, the KV-cache store and the
// attention of one query head over its whole context in one block (see
// rope_store_short_attention in kernels.h).
//
// A decode step is a chain of short kernels, so what a kernel of it costs is the number of
// dependent memory round trips after the kernel before it ends, not bandwidth. Per block
// (query head h, row i):
// - before pdl_wait(): the cached keys and values of the first chunk (positions before this step's:
//   no kernel of the step writes them) are put in flight with cp.async, with the row's cos / sin;
// - after it: q of the row and this step's k / v rows (one round trip, all loads at once), rotated;
//   the owner block of a key (the first query head of its group) writes it into the cache;
// - scores one key per thread (the query in shared memory, read as a broadcast; key rows
//   swizzled by 16-byte chunks so that eight consecutive keys hit eight different bank groups),
//   one block max and sum, then each thread a pair of dims over its slice of the keys.
// No partial results and no merge across blocks: a context of up to kMaxKeys keys is one chunk,
// a longer one walks chunk after chunk (correct, but slower than the split kernels there; the
// caller picks by position).
#include <cuda_pipeline.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxKeys = 512;        // keys of a chunk (fewer where they exceed the buffer)
constexpr int kMaxBufBytes = 65536;  // keys of one chunk (and as much for its values)
constexpr int kKeysPerThread = kMaxKeys / kThreads;
// Dynamic shared memory past the two buffers: the query, the chunk's scores, the slices' sums.
constexpr int kSmemTail = kMaxHeadDim * 4 + kMaxKeys * 4 + kThreads * 8;

__host__ __device__ constexpr int short_chunk_keys(int buf_bytes, int row_bytes) {
  return buf_bytes / row_bytes < kMaxKeys ? buf_bytes / row_bytes : kMaxKeys;
}

template <class T>
__global__ void __launch_bounds__(kThreads) rope_store_short_attention_kernel(
    const __half* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v, int64_t q_stride,
    int64_t kv_stride, const float* __restrict__ cos_t, const float* __restrict__ sin_t,
    const int64_t* __restrict__ d_pos, T* kc, T* vc, __half* __restrict__ out, int n_heads, int group, int hd,
    int64_t cap, int64_t window, float scale, float softcap, int buf_bytes) {
  using E = CacheElem<T>;
  constexpr int kPer = E::kPerChunk;  // elements of a 16-byte chunk
  extern __shared__ __align__(16) unsigned char smem[];
  T* ks = reinterpret_cast<T*>(smem);
  T* vs = reinterpret_cast<T*>(smem + buf_bytes);
  float* qs = reinterpret_cast<float*>(smem + 2 * buf_bytes);
  float* sc = qs + kMaxHeadDim;
  float2* red = reinterpret_cast<float2*>(sc + kMaxKeys);
  __shared__ float red_m[kWarps], red_l[kWarps];
  pdl_trigger();

  const int h = blockIdx.x, i = blockIdx.y, kvh = h / group;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int half = hd / 2, chunks = hd / kPer;  // 16-byte chunks of a row
  const int ck = short_chunk_keys(buf_bytes, hd * static_cast<int>(sizeof(T)));
  // Chunk c of key row t sits at chunk slot c ^ (t & mask): for rows of 2, 4 or 8+ chunks (a power
  // of two) consecutive keys then read different banks; other widths are left as they are.
  const int mask = (chunks & (chunks - 1)) == 0 ? min(chunks, 8) - 1 : 0;
  auto slot = [&](int t, int c) { return t * hd + (c ^ (t & mask)) * kPer; };
  // The position is the step's (written before the graph or by the step before): safe to read
  // before pdl_wait().
  const int64_t pos0 = *d_pos, p = pos0 + i;
  const int64_t first = window > 0 ? max(int64_t(0), p - window + 1) : 0;
  const T* K = kc + static_cast<int64_t>(kvh) * cap * hd;
  const T* V = vc + static_cast<int64_t>(kvh) * cap * hd;

  // Cached keys and values [t0, t0 + n) into the chunk buffers, asynchronously; this step's keys
  // (>= pos0) are left to fill_new.
  auto load_chunk = [&](int64_t t0, int n) {
    const int cached = static_cast<int>(max(int64_t(0), min(t0 + n, pos0) - t0));
    for (int idx = tid; idx < cached * chunks; idx += kThreads) {
      const int t = idx / chunks, c = idx - t * chunks;
      __pipeline_memcpy_async(&ks[slot(t, c)], K + (t0 + t) * hd + c * kPer, 16);
      __pipeline_memcpy_async(&vs[slot(t, c)], V + (t0 + t) * hd + c * kPer, 16);
    }
    __pipeline_commit();
  };
  int n = static_cast<int>(min(static_cast<int64_t>(ck), p + 1 - first));
  load_chunk(first, n);
  // The query's cos / sin at p: thread d < half rotates the pair (d, d + half).
  const float qc = tid < half ? cos_t[p * half + tid] : 0.f, qsn = tid < half ? sin_t[p * half + tid] : 0.f;
  pdl_wait();  // q, k, v of this step are the kernel before's

  if (tid < half) {
    const __half* qr = q + i * q_stride + static_cast<int64_t>(h) * hd;
    const float a = __half2float(qr[tid]), b = __half2float(qr[tid + half]);
    qs[tid] = __half2float(__float2half_rn(a * qc - b * qsn)) * scale;
    qs[tid + half] = __half2float(__float2half_rn(b * qc + a * qsn)) * scale;
  }
  const bool owner = h % group == 0;  // writes this row's own key and value into the cache
  // Value accumulators: thread (slice, pair) sums the dims 2 * pair, 2 * pair + 1 over the keys
  // slice, slice + slices, ... of each chunk.
  const int slices = max(1, kThreads / half);
  const int pair = tid % half, sl = tid / half;
  const bool acc_on = sl < slices && tid < slices * half;
  float m_run = -INFINITY, l_run = 0.f;
  float2 acc = make_float2(0.f, 0.f);

  for (int64_t t0 = first; t0 <= p; t0 += ck) {
    if (t0 != first) {
      n = static_cast<int>(min(static_cast<int64_t>(ck), p + 1 - t0));
      __syncthreads();  // the buffers and sc of the chunk before are free
      load_chunk(t0, n);
    }
    // This step's keys in [t0, t0 + n): rotated from k at their own positions, rounded as the
    // cache stores them; the row's own key also into the cache.
    const int64_t jn = max(t0, pos0);
    const int fresh = static_cast<int>(max(int64_t(0), t0 + n - jn)), tstart = static_cast<int>(jn - t0);
    for (int idx = tid; idx < fresh * half; idx += kThreads) {
      const int t = tstart + idx / half, d = idx % half;
      const int64_t j = t0 + t;
      const NewKvPair<T> e = new_kv_pair<T>(k, v, kv_stride, cos_t, sin_t, pos0, j, kvh, hd, d);
      const int c0 = d / kPer, c1 = (d + half) / kPer;
      ks[slot(t, c0) + d % kPer] = e.k0;
      ks[slot(t, c1) + (d + half) % kPer] = e.k1;
      vs[slot(t, c0) + d % kPer] = e.v0;
      vs[slot(t, c1) + (d + half) % kPer] = e.v1;
      if (owner && j == p) {
        T* kd = kc + (static_cast<int64_t>(kvh) * cap + p) * hd;
        T* vd = vc + (static_cast<int64_t>(kvh) * cap + p) * hd;
        kd[d] = e.k0;
        kd[d + half] = e.k1;
        vd[d] = e.v0;
        vd[d + half] = e.v1;
      }
    }
    __pipeline_wait_prior(0);
    __syncthreads();  // the chunk (every thread's copies and the new keys) and qs

    // Scores: thread tid takes keys tid, tid + kThreads, ...
    float s[kKeysPerThread];
    float mx = -INFINITY;
#pragma unroll
    for (int u = 0; u < kKeysPerThread; ++u) {
      const int t = tid + u * kThreads;
      s[u] = -INFINITY;
      if (t < n) {
        float dot = 0.f;
        for (int c = 0; c < chunks; ++c) {
          float kf[kPer];
          E::chunk(*reinterpret_cast<const uint4*>(&ks[slot(t, c)]), kf);
#pragma unroll
          for (int e = 0; e < kPer; e += 4) {
            const float4 qv = *reinterpret_cast<const float4*>(&qs[c * kPer + e]);
            dot += qv.x * kf[e] + qv.y * kf[e + 1] + qv.z * kf[e + 2] + qv.w * kf[e + 3];
          }
        }
        if (softcap > 0.f) dot = softcap * tanhf(dot / softcap);
        s[u] = dot;
        mx = fmaxf(mx, dot);
      }
    }
    mx = warp_max(mx);
    if (lane == 0) red_m[w] = mx;
    __syncthreads();
    mx = red_m[0];
#pragma unroll
    for (int ww = 1; ww < kWarps; ++ww) mx = fmaxf(mx, red_m[ww]);
    const float m_new = fmaxf(m_run, mx);  // finite: every chunk holds at least one key
    const float corr = __expf(m_run - m_new);
    float sum = 0.f;
#pragma unroll
    for (int u = 0; u < kKeysPerThread; ++u) {
      const int t = tid + u * kThreads;
      if (t < n) {
        const float e = __expf(s[u] - m_new);
        sc[t] = e;
        sum += e;
      }
    }
    sum = warp_sum(sum);
    if (lane == 0) red_l[w] = sum;
    __syncthreads();  // sc and red_l
#pragma unroll
    for (int ww = 0; ww < kWarps; ++ww) l_run = (ww == 0 ? l_run * corr : l_run) + red_l[ww];
    m_run = m_new;
    if (acc_on) {
      float2 a = make_float2(acc.x * corr, acc.y * corr);
      const int c = (2 * pair) / kPer, e = (2 * pair) % kPer;
#pragma unroll 8
      for (int t = sl; t < n; t += slices) {
        const float pj = sc[t];
        const float2 vv = E::pair(&vs[slot(t, c)], e);
        a.x += pj * vv.x;
        a.y += pj * vv.y;
      }
      acc = a;
    }
  }
  // The slices' sums into slice 0's threads.
  if (slices > 1) {
    if (acc_on) red[tid] = acc;
    __syncthreads();
    if (acc_on && sl == 0) {
      for (int e = 1; e < slices; ++e) {
        const float2 o = red[tid + e * half];
        acc.x += o.x;
        acc.y += o.y;
      }
    }
  }
  if (acc_on && sl == 0) {
    const float inv = 1.f / l_run;
    __half2* o = reinterpret_cast<__half2*>(out + i * static_cast<int64_t>(n_heads) * hd + static_cast<int64_t>(h) * hd);
    o[pair] = __floats2half2_rn(acc.x * inv, acc.y * inv);
  }
}

// Bytes of each of the two chunk buffers on the current device: 64 KB, or what its opt-in shared
// memory leaves (a multiple of 16), at least one 256-dim fp16 key row.
int short_buffer_bytes() {
  int dev = 0, optin = 0;
  QRT_CUDA_CHECK(cudaGetDevice(&dev));
  QRT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  // Static shared memory of the kernel (a few reduction slots) and a margin.
  const int room = (optin - kSmemTail - 1024) / 2 / 16 * 16;
  return std::min(kMaxBufBytes, room);
}

}  // namespace

bool short_attention_fits(int64_t n_heads, int64_t n_kv, int64_t head_dim, KvElem elem) {
  const int64_t per_chunk = 16 / kv_elem_bytes(elem);
  return n_kv > 0 && n_heads % n_kv == 0 && head_dim >= per_chunk && head_dim % per_chunk == 0 &&
         head_dim <= kMaxHeadDim && n_heads <= 65535 && short_buffer_bytes() >= head_dim * kv_elem_bytes(elem);
}

void rope_store_short_attention(const __half* q, const __half* k, const __half* v, int64_t q_stride, int64_t kv_stride,
                                const float* cos, const float* sin, const int64_t* d_pos, const KvCache& cache,
                                __half* out, int64_t m, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                                int64_t capacity, int64_t window, float scale, float softcap, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(m));
  auto run = [&](auto* kc, auto* vc) {
    using T = std::remove_pointer_t<decltype(kc)>;
    auto* kernel = rope_store_short_attention_kernel<T>;
    // Per device: the buffers' size, and the attribute for more than the 48 KB a block gets
    // without asking (a host-side attribute of the current device, not an operation of a stream
    // being captured).
    static std::atomic<int> bytes_of[64];  // 0 until set for that device
    int dev = 0;
    QRT_CUDA_CHECK(cudaGetDevice(&dev));
    int buf = bytes_of[dev & 63].load();
    if (buf == 0) {
      buf = short_buffer_bytes();
      QRT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * buf + kSmemTail));
      bytes_of[dev & 63].store(buf);
    }
    launch_smem(kernel, grid, dim3(kThreads), static_cast<size_t>(2 * buf + kSmemTail), s, q, k, v, q_stride, kv_stride,
                cos, sin, d_pos, kc, vc, out, static_cast<int>(n_heads), static_cast<int>(n_heads / n_kv),
                static_cast<int>(head_dim), capacity, window, scale, softcap, buf);
  };
  if (cache.elem == KvElem::Fp8E4M3)
    run(static_cast<__nv_fp8_e4m3*>(cache.keys), static_cast<__nv_fp8_e4m3*>(cache.values));
  else
    run(static_cast<__half*>(cache.keys), static_cast<__half*>(cache.values));
}

}  // namespace qrt::cuda_model
