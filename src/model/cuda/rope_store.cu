// Rotate-half RoPE of q and k, and the store of k and v into the KV cache (see kernels.h).
#include <algorithm>
#include <type_traits>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

// One block per (row, head): thread d rotates the pair (d, d + hd/2) of a q head in place, or of a
// k head into the cache; k-head blocks also copy the row's v head into the cache. Rows of q / k / v
// are `q_stride` / `kv_stride` elements apart (a fused q/k/v projection interleaves them).
template <class T>
__global__ void rope_store_heads_kernel(__half* __restrict__ q, const __half* __restrict__ k,
                                        const __half* __restrict__ v, const float* __restrict__ cos_t,
                                        const float* __restrict__ sin_t, const int64_t* __restrict__ d_pos,
                                        T* __restrict__ kc, T* __restrict__ vc, int n_heads, int hd, int64_t cap,
                                        int64_t q_stride, int64_t kv_stride) {
  using E = CacheElem<T>;
  pdl_entry();
  const int i = blockIdx.x, hh = blockIdx.y, half = hd / 2;
  const int64_t p = *d_pos + i;
  for (int d = threadIdx.x; d < half; d += blockDim.x) {
    const float c = cos_t[p * half + d], sn = sin_t[p * half + d];
    if (hh < n_heads) {
      __half* xq = q + i * q_stride + hh * hd;
      const float a = __half2float(xq[d]), b = __half2float(xq[d + half]);
      xq[d] = __float2half_rn(a * c - b * sn);
      xq[d + half] = __float2half_rn(b * c + a * sn);
    } else {
      const int kh = hh - n_heads;
      const __half* xk = k + i * kv_stride + kh * hd;
      const float a = __half2float(xk[d]), b = __half2float(xk[d + half]);
      T* dst = kc + (kh * cap + p) * hd;
      dst[d] = E::from_float(a * c - b * sn);
      dst[d + half] = E::from_float(b * c + a * sn);
      const __half* xv = v + i * kv_stride + kh * hd;
      T* vdst = vc + (kh * cap + p) * hd;
      vdst[d] = E::from_half(xv[d]);
      vdst[d + half] = E::from_half(xv[d + half]);
    }
  }
}

}  // namespace

void rope_store(__half* q, const __half* k, const __half* v, const float* cos, const float* sin, const int64_t* d_pos,
                const KvCache& cache, int64_t m, int64_t n_heads, int64_t n_kv, int64_t head_dim, int64_t capacity,
                int64_t q_stride, int64_t kv_stride, cudaStream_t s) {
  const int threads = static_cast<int>(std::min<int64_t>(128, std::max<int64_t>(32, (head_dim / 2 + 31) / 32 * 32)));
  const dim3 grid(static_cast<unsigned>(m), static_cast<unsigned>(n_heads + n_kv));
  auto run = [&](auto* kc, auto* vc) {
    launch(rope_store_heads_kernel<std::remove_pointer_t<decltype(kc)>>, grid, dim3(threads), s, q, k, v, cos, sin,
           d_pos, kc, vc, static_cast<int>(n_heads), static_cast<int>(head_dim), capacity, q_stride, kv_stride);
  };
  if (cache.elem == KvElem::Fp8E4M3)
    run(static_cast<__nv_fp8_e4m3*>(cache.keys), static_cast<__nv_fp8_e4m3*>(cache.values));
  else
    run(static_cast<__half*>(cache.keys), static_cast<__half*>(cache.values));
}

}  // namespace qrt::cuda_model
