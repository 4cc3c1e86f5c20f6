// cuda_higgs' kernels (see higgs_weight.h): the block Hadamard rotation of the activations, the
// lookup GEMV over the codes, the sum of its K slices, and the decoder of V to fp16/bf16.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "backends/cuda/higgs/higgs_weight.h"
#include "gpu/convert.cuh"

namespace qrt::cuda {
namespace {

__device__ __forceinline__ float load_f(float v) { return v; }
__device__ __forceinline__ float load_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float load_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T store_f(float v) { return from_f<T>(v); }
template <> __device__ __forceinline__ float store_f<float>(float v) { return v; }

// ---- rotation ----
// One block transforms `hs` values of one row: x[row][base + i * stride], i < hs, with
// base = (t / stride) * hs * stride + t % stride for transform t = blockIdx.x (stride 1: the
// contiguous block t; stride h1 > 1: the second pass of a two-pass transform, see
// launch_higgs_rotate). The butterflies are those of core/hadamard.h (the Sylvester order), in fp32
// in shared memory, then a scale. The first block of a row also zeroes columns [k, pad_end).
// In and out may be the same fp32 buffer: a block reads all of its values before it writes any,
// and no two blocks share one.
template <typename In, typename Out>
__global__ void hadamard_pass_kernel(const In* x, int64_t ldi, Out* out, int64_t ldo, int64_t k, int hs,
                                     int64_t stride, float scale, int64_t pad_end) {
  extern __shared__ float buf[];
  const int64_t t = blockIdx.x;
  const int64_t row = blockIdx.y;
  const int64_t base = (t / stride) * (static_cast<int64_t>(hs) * stride) + t % stride;
  const In* xr = x + row * ldi;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) buf[i] = load_f(xr[base + i * stride]);
  __syncthreads();
  const int half = hs >> 1;
  for (int len = 1; len < hs; len <<= 1) {
    for (int b = threadIdx.x; b < half; b += blockDim.x) {
      const int i = ((b & ~(len - 1)) << 1) | (b & (len - 1));
      const float a = buf[i], c = buf[i + len];
      buf[i] = a + c;
      buf[i + len] = a - c;
    }
    __syncthreads();
  }
  Out* orow = out + row * ldo;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) orow[base + i * stride] = store_f<Out>(buf[i] * scale);
  if (t == 0)
    for (int64_t i = k + threadIdx.x; i < pad_end; i += blockDim.x) orow[i] = store_f<Out>(0.f);
}

template <typename In, typename Out>
void hadamard_pass(const In* x, int64_t ldi, Out* out, int64_t ldo, int64_t rows, int64_t k, int hs, int64_t stride,
                   int64_t pad_end, cudaStream_t st) {
  const int threads = std::clamp(hs / 2, 32, 512);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  const size_t smem = static_cast<size_t>(hs) * sizeof(float);
  for (int64_t r0 = 0; r0 < rows; r0 += 65535) {
    const dim3 grid(static_cast<unsigned>(k / hs), static_cast<unsigned>(std::min<int64_t>(65535, rows - r0)));
    hadamard_pass_kernel<In, Out><<<grid, threads, smem, st>>>(x + r0 * ldi, ldi, out + r0 * ldo, ldo, k, hs, stride,
                                                               scale, pad_end);
  }
}

// x (T) -> out (Out) through the passes of hadamard_size h: one when h <= kHiggsMaxPass; otherwise
// H_h = H_(h/h1) (x) H_h1 (Kronecker, h1 = kHiggsMaxPass): the contiguous blocks of h1 first, into
// fp32 `mid`, then the h/h1 values h1 apart, from `mid` into out.
template <typename T, typename Out>
void rotate_rows(const HiggsView& w, const T* x, int64_t rows, Out* out, int64_t ldo, int64_t pad_end, float* mid,
                 int64_t ldm, cudaStream_t st) {
  const int h = w.hadamard;
  if (h <= kHiggsMaxPass) {
    hadamard_pass<T, Out>(x, w.k, out, ldo, rows, w.k, h, 1, pad_end, st);
    return;
  }
  const int h1 = kHiggsMaxPass, h2 = h / kHiggsMaxPass;
  hadamard_pass<T, float>(x, w.k, mid, ldm, rows, w.k, h1, 1, w.k, st);
  hadamard_pass<float, Out>(mid, ldm, out, ldo, rows, w.k, h2, h1, pad_end, st);
}

// ---- lookup GEMV ----
constexpr int kLutThreads = 128;
constexpr int kLutWarps = kLutThreads / 32;
constexpr int kLutRows = 2;  // output rows one thread carries at a time

// Block (bx, by): output rows [bx * tile_n, +tile_n) over runs of 16 codes [by * chunk_slice,
// +chunk_slice). A warp is 32 / TK row groups of TK lanes (TK = 1 << tk_log2); a row group takes
// kLutRows rows at a time and its lanes walk the runs of the slice, each run one 16-byte load of
// codes per row. Every code is looked up in the grid (shared memory), scaled by its group scale and
// multiplied with the rotated activations (fp32, read through the L1 cache); the TK lanes' sums
// meet by shuffles. With a `partial` buffer, slice by writes its fp32 sums to
// partial[by][m][n] (summed by higgs_reduce_kernel); without, the one slice writes y (+ bias).
template <typename T, int P, int MT, bool UNIFORM>
__global__ void __launch_bounds__(kLutThreads)
    higgs_lut_kernel(HiggsView w, const float* __restrict__ x, int64_t ldx, int m_total, int tile_n,
                     int64_t chunk_slice, int tk_log2, float* __restrict__ partial, T* __restrict__ y) {
  __shared__ __align__(16) float lut[256 * 2];
  for (int i = threadIdx.x; i < w.points * P; i += kLutThreads) lut[i] = __ldg(w.grid + i);
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tk = 1 << tk_log2;
  const int kt = lane & (tk - 1);
  const int sub = lane >> tk_log2;
  const int subs = 32 >> tk_log2;
  const int64_t n_begin = static_cast<int64_t>(blockIdx.x) * tile_n;
  const int64_t n_end = min(n_begin + tile_n, w.n);
  const int64_t chunks = (w.k / P + 15) >> 4;
  const int64_t c_begin = static_cast<int64_t>(blockIdx.y) * chunk_slice;
  const int64_t c_end = min(c_begin + chunk_slice, chunks);
  const int64_t round_rows = static_cast<int64_t>(kLutWarps) * subs * kLutRows;

  // The loop bound depends on the warp only, so every lane of a warp reaches the shuffles below.
  for (int64_t base = n_begin + static_cast<int64_t>(warp) * subs * kLutRows; base < n_end; base += round_rows) {
    const int64_t r0 = base + static_cast<int64_t>(sub) * kLutRows;
    bool valid[kLutRows];
    const uint8_t* crow[kLutRows];
    const float* srow[kLutRows];
#pragma unroll
    for (int r = 0; r < kLutRows; ++r) {
      valid[r] = r0 + r < n_end;
      const int64_t row = valid[r] ? r0 + r : n_begin;  // a row past the tile reads a real one, unused
      crow[r] = w.codes + row * w.ldc;
      srow[r] = w.scales + row * w.groups;
    }
    float acc[MT][kLutRows];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < kLutRows; ++r) acc[m][r] = 0.f;

    for (int64_t c = c_begin + kt; c < c_end; c += tk) {
      uint32_t cw[kLutRows][4];
      float s[kLutRows];
#pragma unroll
      for (int r = 0; r < kLutRows; ++r) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(crow[r] + c * 16));
        cw[r][0] = v.x;
        cw[r][1] = v.y;
        cw[r][2] = v.z;
        cw[r][3] = v.w;
        s[r] = UNIFORM && valid[r] ? __ldg(srow[r] + (c * 16 * P) / w.group_size) : 0.f;
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        float wv[kLutRows][4 * P];
#pragma unroll
        for (int r = 0; r < kLutRows; ++r)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const uint32_t code = (cw[r][q] >> (8 * j)) & 0xFFu;
            float sc = s[r];
            if (!UNIFORM) {
              const int64_t col = (c * 16 + q * 4 + j) * P;
              const int g = static_cast<int>(min(col / w.group_size, static_cast<int64_t>(w.groups - 1)));
              sc = valid[r] ? __ldg(srow[r] + g) : 0.f;
            }
            if constexpr (P == 2) {
              const float2 gv = reinterpret_cast<const float2*>(lut)[code];
              wv[r][2 * j] = gv.x * sc;
              wv[r][2 * j + 1] = gv.y * sc;
            } else {
              wv[r][j] = lut[code] * sc;
            }
          }
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m < m_total) {
            const float* xp = x + m * ldx + (c * 16 + q * 4) * P;
            float xv[4 * P];
            const float4 a = __ldg(reinterpret_cast<const float4*>(xp));
            xv[0] = a.x;
            xv[1] = a.y;
            xv[2] = a.z;
            xv[3] = a.w;
            if constexpr (P == 2) {
              const float4 b = __ldg(reinterpret_cast<const float4*>(xp) + 1);
              xv[4] = b.x;
              xv[5] = b.y;
              xv[6] = b.z;
              xv[7] = b.w;
            }
#pragma unroll
            for (int r = 0; r < kLutRows; ++r)
#pragma unroll
              for (int i = 0; i < 4 * P; ++i) acc[m][r] = fmaf(xv[i], wv[r][i], acc[m][r]);
          }
        }
      }
    }

#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < kLutRows; ++r) {
        float v = acc[m][r];
        for (int o = tk >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        acc[m][r] = v;
      }
    if (kt == 0) {
#pragma unroll
      for (int r = 0; r < kLutRows; ++r) {
        if (!valid[r]) continue;
        const int64_t n = r0 + r;
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m >= m_total) continue;
          if (partial)
            partial[(static_cast<int64_t>(blockIdx.y) * m_total + m) * w.n + n] = acc[m][r];
          else
            y[m * w.n + n] = from_f<T>(acc[m][r] + (w.bias ? w.bias[n] : 0.f));
        }
      }
    }
  }
}

// y[i] = sum over the slices of partial[s][i] (+ bias), i over m x n.
template <typename T>
__global__ void higgs_reduce_kernel(const float* __restrict__ partial, int split, int64_t mn, int64_t n,
                                    const float* __restrict__ bias, T* __restrict__ y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < mn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int s = 0; s < split; ++s) v += partial[s * mn + i];
    if (bias) v += bias[i % n];
    y[i] = from_f<T>(v);
  }
}

template <typename T, int P, int MT>
void lut_launch(const HiggsView& w, const HiggsLutGeometry& g, const float* xr, int64_t ldx, int m, float* partial,
                T* y, cudaStream_t st) {
  const dim3 grid(static_cast<unsigned>((w.n + g.tile_n - 1) / g.tile_n), static_cast<unsigned>(g.split));
  if (w.uniform)
    higgs_lut_kernel<T, P, MT, true><<<grid, kLutThreads, 0, st>>>(w, xr, ldx, m, g.tile_n, g.chunk_slice, g.tk_log2,
                                                                   partial, y);
  else
    higgs_lut_kernel<T, P, MT, false><<<grid, kLutThreads, 0, st>>>(w, xr, ldx, m, g.tile_n, g.chunk_slice,
                                                                    g.tk_log2, partial, y);
}

template <typename T, int P>
void lut_dispatch_m(const HiggsView& w, const HiggsLutGeometry& g, const float* xr, int64_t ldx, int m,
                    float* partial, T* y, cudaStream_t st) {
  if (m <= 1) lut_launch<T, P, 1>(w, g, xr, ldx, m, partial, y, st);
  else if (m <= 2) lut_launch<T, P, 2>(w, g, xr, ldx, m, partial, y, st);
  else if (m <= 4) lut_launch<T, P, 4>(w, g, xr, ldx, m, partial, y, st);
  else lut_launch<T, P, 8>(w, g, xr, ldx, m, partial, y, st);
}

template <typename T>
void lut_run(const HiggsView& w, const HiggsLutGeometry& g, const float* xr, int64_t ldx, int m, float* partial,
             T* y, cudaStream_t st) {
  float* part = g.split > 1 ? partial : nullptr;
  if (w.p == 2) lut_dispatch_m<T, 2>(w, g, xr, ldx, m, part, y, st);
  else lut_dispatch_m<T, 1>(w, g, xr, ldx, m, part, y, st);
  if (part) {
    const int64_t mn = static_cast<int64_t>(m) * w.n;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((mn + 255) / 256, 4096));
    higgs_reduce_kernel<T><<<blocks, 256, 0, st>>>(part, g.split, mn, w.n, w.bias, y);
  }
}

// ---- V to fp16 / bf16 ----
template <typename T, int P>
__global__ void higgs_decode_kernel(HiggsView w, int64_t n0, int64_t rows, T* __restrict__ out, int64_t ld) {
  const int64_t vectors = w.k / P;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= vectors) return;
  const int g = static_cast<int>((c * P) / w.group_size);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t n = n0 + r;
    const uint32_t code = w.codes[n * w.ldc + c];
    const float s = __ldg(w.scales + n * w.groups + g);
    T* dst = out + r * ld + c * P;
#pragma unroll
    for (int i = 0; i < P; ++i) dst[i] = from_f<T>(__ldg(w.grid + code * P + i) * s);
  }
}

template <typename T>
void decode_run(const HiggsView& w, int64_t n0, int64_t rows, T* out, int64_t ld, cudaStream_t st) {
  const int64_t vectors = w.k / w.p;
  const dim3 grid(static_cast<unsigned>((vectors + 255) / 256), static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  if (w.p == 2) higgs_decode_kernel<T, 2><<<grid, 256, 0, st>>>(w, n0, rows, out, ld);
  else higgs_decode_kernel<T, 1><<<grid, 256, 0, st>>>(w, n0, rows, out, ld);
}

}  // namespace

void launch_higgs_rotate(const HiggsView& w, const void* x, DType dtype, int64_t rows, void* out, bool out_f32,
                         int64_t ldo, float* tmp, cudaStream_t stream) {
  if (rows <= 0) return;
  const int64_t pad_end = out_f32 ? ldo : w.k;
  if (dtype == DType::F16) {
    const auto* xs = static_cast<const __half*>(x);
    if (out_f32) rotate_rows<__half, float>(w, xs, rows, static_cast<float*>(out), ldo, pad_end, static_cast<float*>(out), ldo, stream);
    else rotate_rows<__half, __half>(w, xs, rows, static_cast<__half*>(out), ldo, pad_end, tmp, w.k, stream);
  } else {
    const auto* xs = static_cast<const __nv_bfloat16*>(x);
    if (out_f32)
      rotate_rows<__nv_bfloat16, float>(w, xs, rows, static_cast<float*>(out), ldo, pad_end, static_cast<float*>(out), ldo, stream);
    else
      rotate_rows<__nv_bfloat16, __nv_bfloat16>(w, xs, rows, static_cast<__nv_bfloat16*>(out), ldo, pad_end, tmp, w.k,
                                                stream);
  }
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_higgs_lut(const HiggsView& w, const HiggsLutGeometry& g, const float* xr, int64_t ldx, int64_t m,
                      void* y, DType dtype, float* partial, cudaStream_t stream) {
  const int mm = static_cast<int>(std::min<int64_t>(m, 8));
  if (dtype == DType::F16) lut_run<__half>(w, g, xr, ldx, mm, partial, static_cast<__half*>(y), stream);
  else lut_run<__nv_bfloat16>(w, g, xr, ldx, mm, partial, static_cast<__nv_bfloat16*>(y), stream);
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_higgs_decode(const HiggsView& w, int64_t n0, int64_t rows, void* out, int64_t ld, DType dtype,
                         cudaStream_t stream) {
  if (rows <= 0) return;
  if (dtype == DType::F16) decode_run<__half>(w, n0, rows, static_cast<__half*>(out), ld, stream);
  else decode_run<__nv_bfloat16>(w, n0, rows, static_cast<__nv_bfloat16*>(out), ld, stream);
  QRT_CUDA_CHECK_LAUNCH();
}

}  // namespace qrt::cuda
