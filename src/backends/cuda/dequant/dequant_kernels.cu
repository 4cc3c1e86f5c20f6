// The kernels that read the packed weight (see packed_weight.h): the fused dequant-GEMV for small
// M, the tile dequantizer, and the dequant + cuBLAS GEMM built on it. What a code means is a
// template parameter (CodeMap), so each encoding gets its own instantiation and the integer
// kernels carry no code-book branch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "backends/cuda/dequant/packed_weight.h"
#include "gpu/convert.cuh"
#include "gpu/cublas.h"

namespace qrt::cuda {
namespace {

// Integer code -> float without the slow I2F: 2^23 + c has c in its low mantissa bits.
__device__ __forceinline__ float code_to_f(uint32_t c) { return __int_as_float(0x4B000000u | c) - 8388608.0f; }

__device__ __forceinline__ float fp8_to_f(uint32_t c) {
  __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), __NV_E4M3);
  return __half2float(__half(h));
}

// How a code becomes a weight: Affine = code * scale + offset (the integer formats, zero folded
// into the offset), Fp8 = e4m3(code) * scale, Table = codebook[code] * scale (NF4, FP4, IQ4).
enum class CodeMap { Affine, Fp8, Table };

// The code book in shared memory: a table of at most 256 floats costs one load per level per
// block, and a 16-level table sits in 16 distinct banks, so random codes read it without bank
// conflicts. Every thread of the block must call it (it synchronizes), before any early exit.
template <int CAP>
__device__ __forceinline__ const float* stage_codebook(const float* __restrict__ levels, int entries) {
  __shared__ float table[CAP];
  for (int i = threadIdx.x; i < entries; i += blockDim.x) table[i] = __ldg(levels + i);
  __syncthreads();
  return table;
}

// The weight before its group scale for Fp8 and Table (Affine's integer code is scaled and offset
// in one fma by the callers).
template <CodeMap MAP>
__device__ __forceinline__ float code_value(uint32_t code, const float* table) {
  if constexpr (MAP == CodeMap::Fp8) return fp8_to_f(code);
  else if constexpr (MAP == CodeMap::Table) return table[code];
  else return code_to_f(code);
}

// One dequantized weight in fp32 (rounded once, by the caller's store).
template <CodeMap MAP>
__device__ __forceinline__ float dequant_value(uint32_t code, float s, float o, const float* table) {
  if constexpr (MAP == CodeMap::Affine) return fmaf(code_to_f(code), s, o);
  else return code_value<MAP>(code, table) * s;
}

template <int BITS>
__device__ __forceinline__ void load_run(const uint32_t* __restrict__ p, uint32_t (&w)[BITS]) {
  if constexpr (BITS % 4 == 0) {
#pragma unroll
    for (int i = 0; i < BITS / 4; ++i) {
      uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i);
      w[4 * i] = v.x; w[4 * i + 1] = v.y; w[4 * i + 2] = v.z; w[4 * i + 3] = v.w;
    }
  } else if constexpr (BITS % 2 == 0) {
#pragma unroll
    for (int i = 0; i < BITS / 2; ++i) {
      uint2 v = __ldg(reinterpret_cast<const uint2*>(p) + i);
      w[2 * i] = v.x; w[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < BITS; ++i) w[i] = __ldg(p + i);
  }
}

// Code j (compile-time after unrolling) of a run of 32 codes held in BITS words.
template <int BITS>
__device__ __forceinline__ uint32_t code_at(const uint32_t (&w)[BITS], int j) {
  const int pos = j * BITS;
  const int wi = pos >> 5, sh = pos & 31;
  uint32_t v = w[wi] >> sh;
  if (sh + BITS > 32) v |= w[wi + 1] << (32 - sh);
  return v & ((1u << BITS) - 1u);
}

// Code k of row `row` with a run-time bit width (slow paths).
__device__ __forceinline__ uint32_t code_dyn(const uint32_t* __restrict__ row, int bits, int64_t k) {
  const uint32_t* base = row + (k >> 5) * bits;
  const int pos = static_cast<int>(k & 31) * bits;
  const int wi = pos >> 5, sh = pos & 31;
  uint32_t v = __ldg(base + wi) >> sh;
  if (sh + bits > 32) v |= __ldg(base + wi + 1) << (32 - sh);
  return v & ((1u << bits) - 1u);
}

template <typename T>
__device__ __forceinline__ void load8(const T* __restrict__ p, float (&out)[8]) {
  uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = to_f<T>(e[i]);
}

template <int N>
__device__ __forceinline__ void block_reduce_store(float (&acc)[N], float* smem /* [4][N] */, int lane, int warp) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float v = acc[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    acc[i] = v;
  }
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) smem[warp * N + i] = acc[i];
  }
  __syncthreads();
}

constexpr int kGemvThreads = 128;
constexpr int kGemvRows = 4;  // output rows per block in the fast GEMV

// Fast GEMV: every run of 32 codes in one group; x rows contiguous with K % 8 == 0.
// Block = 128 threads over the runs of R output rows; each thread keeps MT x R partial sums.
// Affine sums code * x and x separately (acc += s * dot + offset * sum x); Fp8 and Table have no
// offset, so only the dot product of the decoded values.
template <typename T, int BITS, CodeMap MAP, int MT, int R>
__global__ void __launch_bounds__(kGemvThreads) gemv_runs_kernel(PackedWeightView w, const T* __restrict__ x,
                                                                 T* __restrict__ y, int m_total) {
  __shared__ float red[kGemvThreads / 32][MT * R];
  constexpr bool kAffine = MAP == CodeMap::Affine;
  const float* table = nullptr;
  if constexpr (MAP == CodeMap::Table) table = stage_codebook<(1 << BITS)>(w.codebook, 1 << BITS);
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * R;
  const int64_t K = w.k;
  const int64_t runs = (K + 31) >> 5;
  float acc[MT][R];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[m][r] = 0.f;

  for (int64_t c = threadIdx.x; c < runs; c += kGemvThreads) {
    uint32_t wr[R][BITS];
    float s[R], o[R];
    const int g = static_cast<int>((c << 5) / w.group_size);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t n = n0 + r;
      if (n < w.n) {
        load_run<BITS>(w.words + n * w.row_words + c * BITS, wr[r]);
        s[r] = __ldg(w.scale + n * w.groups + g);
        o[r] = kAffine ? __ldg(w.offset + n * w.groups + g) : 0.f;
      } else {
#pragma unroll
        for (int i = 0; i < BITS; ++i) wr[r][i] = 0;
        s[r] = 0.f;
        o[r] = 0.f;
      }
    }
    float dot[MT][R];
    float xs[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      xs[m] = 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) dot[m][r] = 0.f;
    }
#pragma unroll
    for (int sub = 0; sub < 4; ++sub) {
      const int64_t kk = (c << 5) + sub * 8;
      float wv[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const uint32_t code = code_at<BITS>(wr[r], sub * 8 + j);
          wv[r][j] = code_value<MAP>(code, table);
        }
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < m_total && kk < K) {
          float xv[8];
          load8<T>(x + m * K + kk, xv);
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            if (kAffine) xs[m] += xv[j];
#pragma unroll
            for (int r = 0; r < R; ++r) dot[m][r] = fmaf(xv[j], wv[r][j], dot[m][r]);
          }
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[m][r] = kAffine ? fmaf(s[r], dot[m][r], fmaf(o[r], xs[m], acc[m][r]))
                                                       : fmaf(s[r], dot[m][r], acc[m][r]);
  }

  float flat[MT * R];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < R; ++r) flat[m * R + r] = acc[m][r];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  block_reduce_store<MT * R>(flat, &red[0][0], lane, warp);
  for (int i = threadIdx.x; i < MT * R; i += kGemvThreads) {
    const int m = i / R, r = i % R;
    const int64_t n = n0 + r;
    if (m < m_total && n < w.n) {
      float v = 0.f;
#pragma unroll
      for (int wi = 0; wi < kGemvThreads / 32; ++wi) v += red[wi][i];
      if (w.bias) v += w.bias[n];
      y[m * w.n + n] = from_f<T>(v);
    }
  }
}

// Generic GEMV: any bit width, act-order, groups not aligned to 32, unaligned x. One output row per
// block, up to 8 activation rows. TABLE: a code book of any width 1..8 (up to 256 levels).
template <typename T, bool TABLE>
__global__ void __launch_bounds__(kGemvThreads) gemv_generic_kernel(PackedWeightView w, const T* __restrict__ x,
                                                                    T* __restrict__ y, int m_total) {
  __shared__ float red[kGemvThreads / 32][8];
  const float* table = nullptr;
  if constexpr (TABLE) table = stage_codebook<256>(w.codebook, 1 << w.bits);
  const int64_t n = blockIdx.x;
  const int64_t K = w.k;
  const uint32_t* row = w.words + n * w.row_words;
  float acc[8];
#pragma unroll
  for (int m = 0; m < 8; ++m) acc[m] = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += kGemvThreads) {
    const uint32_t code = code_dyn(row, w.bits, k);
    const int g = w.g_idx ? w.g_idx[k] : static_cast<int>(k / w.group_size);
    const float s = __ldg(w.scale + n * w.groups + g);
    float wv;
    if constexpr (TABLE) wv = table[code] * s;
    else wv = w.fp8 ? fp8_to_f(code) * s : fmaf(code_to_f(code), s, __ldg(w.offset + n * w.groups + g));
#pragma unroll
    for (int m = 0; m < 8; ++m)
      if (m < m_total) acc[m] = fmaf(to_f<T>(x[m * K + k]), wv, acc[m]);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  block_reduce_store<8>(acc, &red[0][0], lane, warp);
  if (threadIdx.x < m_total) {
    float v = 0.f;
#pragma unroll
    for (int wi = 0; wi < kGemvThreads / 32; ++wi) v += red[wi][threadIdx.x];
    if (w.bias) v += w.bias[n];
    y[threadIdx.x * w.n + n] = from_f<T>(v);
  }
}

// Tile dequantizer, fast path: one thread per run of 32 codes, 4 x 16-byte stores.
template <typename T, int BITS, CodeMap MAP>
__global__ void dequant_runs_kernel(PackedWeightView w, int64_t n0, int64_t rows, T* __restrict__ out, int64_t ld) {
  const float* table = nullptr;
  if constexpr (MAP == CodeMap::Table) table = stage_codebook<(1 << BITS)>(w.codebook, 1 << BITS);
  const int64_t runs = (w.k + 31) >> 5;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= runs) return;
  const int g = static_cast<int>((c << 5) / w.group_size);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t n = n0 + r;
    uint32_t wr[BITS];
    load_run<BITS>(w.words + n * w.row_words + c * BITS, wr);
    const float s = __ldg(w.scale + n * w.groups + g);
    const float o = MAP == CodeMap::Affine ? __ldg(w.offset + n * w.groups + g) : 0.f;
    T* dst = out + r * ld + (c << 5);
    const int64_t k0 = c << 5;
    if (k0 + 32 <= w.k) {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        alignas(16) T v[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const uint32_t code = code_at<BITS>(wr, q * 8 + j);
          v[j] = from_f<T>(dequant_value<MAP>(code, s, o, table));
        }
        reinterpret_cast<uint4*>(dst)[q] = *reinterpret_cast<const uint4*>(v);
      }
    } else {
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        if (k0 + j < w.k) {
          const uint32_t code = code_at<BITS>(wr, j);
          dst[j] = from_f<T>(dequant_value<MAP>(code, s, o, table));
        }
      }
    }
  }
}

template <typename T, bool TABLE>
__global__ void dequant_generic_kernel(PackedWeightView w, int64_t n0, int64_t rows, T* __restrict__ out, int64_t ld) {
  const float* table = nullptr;
  if constexpr (TABLE) table = stage_codebook<256>(w.codebook, 1 << w.bits);
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= w.k) return;
  const int g = w.g_idx ? w.g_idx[k] : static_cast<int>(k / w.group_size);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t n = n0 + r;
    const uint32_t code = code_dyn(w.words + n * w.row_words, w.bits, k);
    const float s = __ldg(w.scale + n * w.groups + g);
    float v;
    if constexpr (TABLE) v = table[code] * s;
    else v = w.fp8 ? fp8_to_f(code) * s : fmaf(code_to_f(code), s, __ldg(w.offset + n * w.groups + g));
    out[r * ld + k] = from_f<T>(v);
  }
}

// ---- dispatch ----
template <typename T, int BITS, CodeMap MAP, int MT>
void gemv_runs(const PackedWeightView& w, const T* x, T* y, int m, cudaStream_t st) {
  const unsigned blocks = static_cast<unsigned>((w.n + kGemvRows - 1) / kGemvRows);
  gemv_runs_kernel<T, BITS, MAP, MT, kGemvRows><<<blocks, kGemvThreads, 0, st>>>(w, x, y, m);
}

template <typename T, int BITS, CodeMap MAP>
void gemv_runs_m(const PackedWeightView& w, const T* x, T* y, int m, cudaStream_t st) {
  if (m <= 1) gemv_runs<T, BITS, MAP, 1>(w, x, y, m, st);
  else if (m <= 2) gemv_runs<T, BITS, MAP, 2>(w, x, y, m, st);
  else if (m <= 4) gemv_runs<T, BITS, MAP, 4>(w, x, y, m, st);
  else gemv_runs<T, BITS, MAP, 8>(w, x, y, m, st);
}

// Code books have a fast instantiation at 4 bits only (NF4, FP4 and IQ4 are all 4-bit); any other
// width, like act-order and unaligned groups, takes the generic kernels.
template <typename T>
void gemv_dispatch(const PackedWeightView& w, const T* x, T* y, int m, cudaStream_t st) {
  const bool fast = w.uniform_runs && w.k % 8 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
  if (fast) {
    if (w.fp8) return gemv_runs_m<T, 8, CodeMap::Fp8>(w, x, y, m, st);
    if (w.codebook) {
      if (w.bits == 4) return gemv_runs_m<T, 4, CodeMap::Table>(w, x, y, m, st);
    } else {
      switch (w.bits) {
        case 2: return gemv_runs_m<T, 2, CodeMap::Affine>(w, x, y, m, st);
        case 3: return gemv_runs_m<T, 3, CodeMap::Affine>(w, x, y, m, st);
        case 4: return gemv_runs_m<T, 4, CodeMap::Affine>(w, x, y, m, st);
        case 8: return gemv_runs_m<T, 8, CodeMap::Affine>(w, x, y, m, st);
        default: break;
      }
    }
  }
  if (w.codebook) return gemv_generic_kernel<T, true><<<static_cast<unsigned>(w.n), kGemvThreads, 0, st>>>(w, x, y, m);
  gemv_generic_kernel<T, false><<<static_cast<unsigned>(w.n), kGemvThreads, 0, st>>>(w, x, y, m);
}

template <typename T>
void dequant_dispatch(const PackedWeightView& w, int64_t n0, int64_t rows, T* out, int64_t ld, cudaStream_t st) {
  const unsigned gy = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
  if (w.uniform_runs) {
    const int64_t runs = (w.k + 31) / 32;
    dim3 grid(static_cast<unsigned>((runs + 127) / 128), gy);
    if (w.fp8) return dequant_runs_kernel<T, 8, CodeMap::Fp8><<<grid, 128, 0, st>>>(w, n0, rows, out, ld);
    if (w.codebook) {
      if (w.bits == 4) return dequant_runs_kernel<T, 4, CodeMap::Table><<<grid, 128, 0, st>>>(w, n0, rows, out, ld);
    } else {
      switch (w.bits) {
        case 2: return dequant_runs_kernel<T, 2, CodeMap::Affine><<<grid, 128, 0, st>>>(w, n0, rows, out, ld);
        case 3: return dequant_runs_kernel<T, 3, CodeMap::Affine><<<grid, 128, 0, st>>>(w, n0, rows, out, ld);
        case 4: return dequant_runs_kernel<T, 4, CodeMap::Affine><<<grid, 128, 0, st>>>(w, n0, rows, out, ld);
        case 8: return dequant_runs_kernel<T, 8, CodeMap::Affine><<<grid, 128, 0, st>>>(w, n0, rows, out, ld);
        default: break;
      }
    }
  }
  dim3 grid(static_cast<unsigned>((w.k + 255) / 256), gy);
  if (w.codebook) return dequant_generic_kernel<T, true><<<grid, 256, 0, st>>>(w, n0, rows, out, ld);
  dequant_generic_kernel<T, false><<<grid, 256, 0, st>>>(w, n0, rows, out, ld);
}

}  // namespace

void launch_dequant_gemv(const PackedWeightView& w, const void* x, void* y, int64_t m, DType dtype,
                         cudaStream_t stream) {
  for (int64_t m0 = 0; m0 < m; m0 += 8) {
    const int mm = static_cast<int>(std::min<int64_t>(8, m - m0));
    if (dtype == DType::F16)
      gemv_dispatch<__half>(w, static_cast<const __half*>(x) + m0 * w.k, static_cast<__half*>(y) + m0 * w.n, mm, stream);
    else
      gemv_dispatch<__nv_bfloat16>(w, static_cast<const __nv_bfloat16*>(x) + m0 * w.k,
                                   static_cast<__nv_bfloat16*>(y) + m0 * w.n, mm, stream);
  }
  QRT_CUDA_CHECK_LAUNCH();
}

void launch_dequant_tile(const PackedWeightView& w, int64_t n0, int64_t rows, void* out, int64_t ld, DType dtype,
                         cudaStream_t stream) {
  if (dtype == DType::F16)
    dequant_dispatch<__half>(w, n0, rows, static_cast<__half*>(out), ld, stream);
  else
    dequant_dispatch<__nv_bfloat16>(w, n0, rows, static_cast<__nv_bfloat16*>(out), ld, stream);
  QRT_CUDA_CHECK_LAUNCH();
}

}  // namespace qrt::cuda

namespace qrt::cuda {

int64_t dequant_tile_rows(int64_t n, int64_t k, int64_t requested, int64_t cap_elements) {
  if (requested > 0) return std::min(n, requested);
  const int64_t ld = dequant_ld(k);
  if (n * ld <= cap_elements) return n;
  int64_t rows = cap_elements / ld / 64 * 64;
  return std::max<int64_t>(64, std::min(n, rows));
}

void dequant_gemm(const PackedWeightView& w, cublasHandle_t handle, void* workspace, int64_t tile_rows,
                  const void* x, void* y, int64_t m, DType dtype, cudaStream_t stream) {
  const int64_t ld = dequant_ld(w.k);
  const size_t esz = 2;
  for (int64_t n0 = 0; n0 < w.n; n0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, w.n - n0);
    launch_dequant_tile(w, n0, rows, workspace, ld, dtype, stream);
    gemm_xwt(handle, x, workspace, ld, static_cast<char*>(y) + n0 * esz, w.n, m, rows, w.k, dtype, stream);
  }
  if (w.bias) launch_add_bias(w.bias, y, m, w.n, dtype, stream);
}

}  // namespace qrt::cuda
