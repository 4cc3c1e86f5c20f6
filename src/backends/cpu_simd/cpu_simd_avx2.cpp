// cpu_simd kernels for AVX2 + FMA + F16C (compiled with those flags; called only after cpuid says
// the CPU has them). Same packed layout as the AVX-512 kernels: a ymm holds 8 of the 16 rows of a
// tile, so each tile is walked in two halves. Integer dots use vpmaddubsw (u8 x s8 -> i16 pairs):
// 4-bit codes cannot saturate it (8 sums of 2 x 15 x 127 < 2^15); 8-bit codes go through the sign
// trick on (code - 128), whose offset is folded into the min.
#include <immintrin.h>

// GCC 12 reports its own _mm512_undefined_* helpers as "maybe uninitialized" (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cstring>

#include "backends/cpu_simd/cpu_simd_kernels.h"

namespace qrt::cpu_simd {
namespace {

constexpr int64_t kPrefetchBytes = 4096;

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Scale and min of half h (8 rows) of (tile, group), from fp16 or fp32 storage.
inline void scale_pair(const PackedView& w, int64_t tile, int32_t group, int h, __m256& vs, __m256& vm) {
  const int64_t off = (tile * w.groups + group) * 2 * kTileRows + 8 * h;
  if (w.scales16) {
    vs = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales16 + off)));
    vm = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales16 + off + kTileRows)));
  } else {
    vs = _mm256_loadu_ps(w.scales + off);
    vm = _mm256_loadu_ps(w.scales + off + kTileRows);
  }
}

// Stores 8 output columns of half h of a tile for MR rows (masked at the end of N).
template <int MR>
inline void store_half(const GemmArgs& a, int64_t tile, int h, int64_t m0, const __m256* acc) {
  const int64_t n0 = tile * kTileRows + 8 * h;
  const int64_t cols = std::min<int64_t>(8, a.n - n0);
  if (cols <= 0) return;
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols)), idx);
  const __m256 bias = a.bias ? _mm256_maskload_ps(a.bias + n0, mask) : _mm256_setzero_ps();
  for (int r = 0; r < MR; ++r) {
    float* out = a.y + (m0 + r) * a.ldy + n0;
    const __m256 v = _mm256_add_ps(acc[r], bias);
    if (cols == 8) _mm256_storeu_ps(out, v);
    else _mm256_maskstore_ps(out, mask, v);
  }
}

// TWO (int8x2 activations): a second set of i16/i32 sums takes the low halves q2 against the same
// unpacked weights (q2 is in [-127, 127] like q, so the same saturation and sign-trick bounds
// hold); per block dot = 255 * dot(q) + dot(q2), exact in int32.
template <int MR, CodeKind KIND, bool TWO>
void int8_tile(const GemmArgs& a, int64_t tile, int64_t m0) {
  const PackedView& w = a.w;
  const uint8_t* codes = w.codes + tile * w.tile_code_bytes();
  const int8_t* q[MR];
  const int8_t* q2[MR];
  const float* d[MR];
  const float* ds[MR];
  for (int r = 0; r < MR; ++r) {
    q[r] = a.a.q + (m0 + r) * a.a.row_stride;
    q2[r] = TWO ? a.a.q2 + (m0 + r) * a.a.row_stride : nullptr;
    d[r] = a.a.d + (m0 + r) * a.a.block_stride;
    ds[r] = a.a.sum + (m0 + r) * a.a.block_stride;
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i bias8 = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int h = 0; h < 2; ++h) {
    if (tile * kTileRows + 8 * h >= a.n) break;
    __m256 acc[MR];
    for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < w.blocks; ++b) {
      const uint8_t* blk = codes + b * w.block_bytes() + 32 * h;
      if (h == 0)  // codes 4 KiB ahead, as in the AVX-512 kernel; the second half re-reads the tile from cache
        for (int l = 0; l < w.block_bytes(); l += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + l), _MM_HINT_T0);
      __m256i dot[MR], dot2[MR];
      if constexpr (KIND == CodeKind::U4) {
        __m256i s16[MR], t16[MR];
        for (int r = 0; r < MR; ++r) {
          s16[r] = _mm256_setzero_si256();
          if (TWO) t16[r] = _mm256_setzero_si256();
        }
        for (int c = 0; c < 4; ++c) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + c * 64));
          const __m256i lo = _mm256_and_si256(wv, low4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), low4);
          for (int r = 0; r < MR; ++r) {
            const int64_t o = b * kBlockK + 4 * c;
            s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(lo, bcast4(q[r] + o)));
            s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(hi, bcast4(q[r] + o + 16)));
            if (TWO) {
              t16[r] = _mm256_add_epi16(t16[r], _mm256_maddubs_epi16(lo, bcast4(q2[r] + o)));
              t16[r] = _mm256_add_epi16(t16[r], _mm256_maddubs_epi16(hi, bcast4(q2[r] + o + 16)));
            }
          }
        }
        for (int r = 0; r < MR; ++r) {
          dot[r] = _mm256_madd_epi16(s16[r], ones);
          if (TWO) dot2[r] = _mm256_madd_epi16(t16[r], ones);
        }
      } else {
        for (int r = 0; r < MR; ++r) {
          dot[r] = _mm256_setzero_si256();
          if (TWO) dot2[r] = _mm256_setzero_si256();
        }
        for (int c = 0; c < 8; ++c) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + c * 64));
          const __m256i ws = _mm256_xor_si256(wv, bias8);  // code - 128 as int8
          const __m256i wa = _mm256_abs_epi8(ws);
          for (int r = 0; r < MR; ++r) {
            const int64_t o = b * kBlockK + 4 * c;
            const __m256i xv = _mm256_sign_epi8(bcast4(q[r] + o), ws);
            dot[r] = _mm256_add_epi32(dot[r], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xv), ones));
            if (TWO) {
              const __m256i xv2 = _mm256_sign_epi8(bcast4(q2[r] + o), ws);
              dot2[r] = _mm256_add_epi32(dot2[r], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xv2), ones));
            }
          }
        }
      }
      if constexpr (TWO) {
        static_assert(kSplitRatio == 255, "255 x = (x << 8) - x");
        for (int r = 0; r < MR; ++r)
          dot[r] = _mm256_add_epi32(_mm256_sub_epi32(_mm256_slli_epi32(dot[r], 8), dot[r]), dot2[r]);
      }
      __m256 vs, vm;
      scale_pair(w, tile, w.block_group[b], h, vs, vm);
      if constexpr (KIND != CodeKind::U4) vm = _mm256_fmadd_ps(vs, _mm256_set1_ps(128.f), vm);
      for (int r = 0; r < MR; ++r) {
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r]), _mm256_mul_ps(vs, _mm256_set1_ps(d[r][b])), acc[r]);
        acc[r] = _mm256_fmadd_ps(vm, _mm256_set1_ps(ds[r][b]), acc[r]);
      }
    }
    store_half<MR>(a, tile, h, m0, acc);
  }
}

inline __m256 fp8_lanes_to_f32(__m256i lane) {
  const __m256i mag = _mm256_and_si256(_mm256_slli_epi32(lane, 20), _mm256_set1_epi32(0x07F00000));
  const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(lane, 24), _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(mag, sign)), _mm256_set1_ps(0x1p120f));
}

template <int MR, CodeKind KIND>
void f32_tile(const GemmArgs& a, int64_t tile, int64_t m0) {
  const PackedView& w = a.w;
  const uint8_t* codes = w.codes + tile * w.tile_code_bytes();
  const float* x[MR];
  const float* xs[MR];
  for (int r = 0; r < MR; ++r) {
    x[r] = a.a.x + (m0 + r) * a.a.row_stride;
    xs[r] = a.a.sum + (m0 + r) * a.a.block_stride;
  }
  constexpr int NA = MR == 1 ? 4 : (MR == 2 ? 2 : 1);
  const __m256i byte = _mm256_set1_epi32(0xFF);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int h = 0; h < 2; ++h) {
    if (tile * kTileRows + 8 * h >= a.n) break;
    __m256 acc[MR];
    for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < w.blocks; ++b) {
      const uint8_t* blk = codes + b * w.block_bytes() + 32 * h;
      __m256 fa[MR][NA];
      for (int r = 0; r < MR; ++r)
        for (int i = 0; i < NA; ++i) fa[r][i] = _mm256_setzero_ps();
      auto lane = [&](__m256i v, int j) {
        return j == 3 ? _mm256_srli_epi32(v, 24) : _mm256_and_si256(_mm256_srli_epi32(v, 8 * j), byte);
      };
      auto fma_k = [&](__m256 wf, int kk, int chain) {
        for (int r = 0; r < MR; ++r)
          fa[r][chain % NA] = _mm256_fmadd_ps(wf, _mm256_set1_ps(x[r][b * kBlockK + kk]), fa[r][chain % NA]);
      };
      if constexpr (KIND == CodeKind::U4) {
        for (int c = 0; c < 4; ++c) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + c * 64));
          const __m256i lo = _mm256_and_si256(wv, low4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), low4);
          for (int j = 0; j < 4; ++j) {
            fma_k(_mm256_cvtepi32_ps(lane(lo, j)), 4 * c + j, j);
            fma_k(_mm256_cvtepi32_ps(lane(hi, j)), 16 + 4 * c + j, j + 1);
          }
        }
      } else {
        for (int c = 0; c < 8; ++c) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + c * 64));
          for (int j = 0; j < 4; ++j) {
            const __m256i l = lane(wv, j);
            fma_k(KIND == CodeKind::Fp8 ? fp8_lanes_to_f32(l) : _mm256_cvtepi32_ps(l), 4 * c + j, j);
          }
        }
      }
      __m256 vs, vm;
      scale_pair(w, tile, w.block_group[b], h, vs, vm);
      for (int r = 0; r < MR; ++r) {
        __m256 dot = fa[r][0];
        for (int i = 1; i < NA; ++i) dot = _mm256_add_ps(dot, fa[r][i]);
        acc[r] = _mm256_fmadd_ps(dot, vs, acc[r]);
        acc[r] = _mm256_fmadd_ps(vm, _mm256_set1_ps(xs[r][b]), acc[r]);
      }
    }
    store_half<MR>(a, tile, h, m0, acc);
  }
}

// MODE: 0 = float activations, 1 = int8, 2 = int8x2.
template <CodeKind KIND, int MODE>
void gemm(const GemmArgs& a) {
  // 16 ymm registers: at most 4 rows per register tile (int8x2, with twice the integer sums: 2).
  const int mt = std::clamp(a.m_tile, 1, MODE == 2 ? 2 : 4);
  for (int64_t t = a.tile_begin; t < a.tile_end; ++t)
    for (int64_t m0 = a.m_begin; m0 < a.m_end; m0 += mt) {
      const int rows = static_cast<int>(std::min<int64_t>(mt, a.m_end - m0));
      switch (rows) {
#define QRT_TILE(R)                                           \
  case R:                                                     \
    if constexpr (MODE == 0) f32_tile<R, KIND>(a, t, m0);     \
    else int8_tile<R, KIND, MODE == 2>(a, t, m0);             \
    break;
        QRT_TILE(1) QRT_TILE(2) QRT_TILE(3)
        default: QRT_TILE(4)
#undef QRT_TILE
      }
    }
}

}  // namespace

void gemm_int8_avx2(const GemmArgs& a) {
  if (a.w.kind == CodeKind::U4) gemm<CodeKind::U4, 1>(a);
  else gemm<CodeKind::U8, 1>(a);
}

void gemm_int8x2_avx2(const GemmArgs& a) {
  if (a.w.kind == CodeKind::U4) gemm<CodeKind::U4, 2>(a);
  else gemm<CodeKind::U8, 2>(a);
}

void gemm_f32_avx2(const GemmArgs& a) {
  switch (a.w.kind) {
    case CodeKind::U4: gemm<CodeKind::U4, 0>(a); break;
    case CodeKind::U8: gemm<CodeKind::U8, 0>(a); break;
    case CodeKind::Fp8: gemm<CodeKind::Fp8, 0>(a); break;
  }
}

namespace {
// Loads one block (kBlockK floats) into v[4] and returns its max |x|.
float load_block_amax(const float* p, __m256 v[4]) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(p + 8 * i);
    amax = _mm256_max_ps(amax, _mm256_and_ps(v[i], abs_mask));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  return _mm_cvtss_f32(m4);
}
}  // namespace

// Same arithmetic as quantize_row_scalar (x * (127 / amax), round to nearest even), so both give
// identical codes; the pack order is fixed with a dword permute after the in-lane packs.
void quantize_row_avx2(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q, float* d,
                       float* dsum) {
  alignas(32) float tmp[kBlockK];
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < blocks; ++b) {
    __m256 v[4];
    const float mx = load_block_amax(activation_block(src, map, k, b, tmp), v);
    const float inv = mx > 0 ? 127.f / mx : 0.f;
    const __m256 vinv = _mm256_set1_ps(inv);
    __m256i iv[4];
    for (int i = 0; i < 4; ++i) iv[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vinv));
    const __m256i sum32 = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
    const __m256i p01 = _mm256_packs_epi32(iv[0], iv[1]);
    const __m256i p23 = _mm256_packs_epi32(iv[2], iv[3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kBlockK), bytes);
    const float step = mx / 127.f;
    d[b] = step;
    dsum[b] = step * hsum(_mm256_cvtepi32_ps(sum32));
  }
}

// Same arithmetic as quantize_row_x2_scalar: v = round(x * (32385 / amax)) (clamped), q =
// round(v / 255) through the float quotient (never a tie: 255 is odd), q2 = v - 255 q.
void quantize_row_x2_avx2(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q,
                          int8_t* q2, float* d, float* dsum) {
  alignas(32) float tmp[kBlockK];
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256 lim = _mm256_set1_ps(kSplitLevels), nlim = _mm256_set1_ps(-kSplitLevels);
  const __m256 inv_ratio = _mm256_set1_ps(1.f / kSplitRatio);
  const __m256i ratio = _mm256_set1_epi32(kSplitRatio);
  for (int64_t b = 0; b < blocks; ++b) {
    __m256 v[4];
    const float mx = load_block_amax(activation_block(src, map, k, b, tmp), v);
    const __m256 vinv = _mm256_set1_ps(mx > 0 ? kSplitLevels / mx : 0.f);
    __m256i hi[4], lo[4];
    __m256i sum32 = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
      const __m256 f = _mm256_min_ps(lim, _mm256_max_ps(nlim, _mm256_round_ps(_mm256_mul_ps(v[i], vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
      const __m256i vi = _mm256_cvtps_epi32(f);
      hi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(f, inv_ratio));
      lo[i] = _mm256_sub_epi32(vi, _mm256_mullo_epi32(hi[i], ratio));
      sum32 = _mm256_add_epi32(sum32, vi);
    }
    const __m256i hb = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(hi[0], hi[1]), _mm256_packs_epi32(hi[2], hi[3])), order);
    const __m256i lb = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(lo[0], lo[1]), _mm256_packs_epi32(lo[2], lo[3])), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kBlockK), hb);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q2 + b * kBlockK), lb);
    const float step = mx / kSplitLevels;
    d[b] = step;
    dsum[b] = step * hsum(_mm256_cvtepi32_ps(sum32));
  }
}

namespace {

template <int MR>
void dense_tile(const DenseArgs& a, int64_t t, int64_t m0, int64_t k0, int64_t k1) {
  const int64_t n0 = t * kTileRows;
  float* yrow[MR];
  for (int r = 0; r < MR; ++r) yrow[r] = a.y + (m0 + r) * a.n + n0;
  const int64_t cols = std::min<int64_t>(kTileRows, a.n - n0);
  alignas(32) float buf[MR][kTileRows];
  __m256 acc[MR][2];
  for (int r = 0; r < MR; ++r) {
    if (k0 == 0) {
      acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    } else {
      for (int i = 0; i < kTileRows; ++i) buf[r][i] = i < cols ? yrow[r][i] : 0.f;
      acc[r][0] = _mm256_load_ps(buf[r]);
      acc[r][1] = _mm256_load_ps(buf[r] + 8);
    }
  }
  const float* wt = a.w_packed + t * a.k * kTileRows;
  for (int64_t k = k0; k < k1; ++k) {
    const __m256 w0 = _mm256_loadu_ps(wt + k * kTileRows);
    const __m256 w1 = _mm256_loadu_ps(wt + k * kTileRows + 8);
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_set1_ps(a.x[(m0 + r) * a.k + k]);
      acc[r][0] = _mm256_fmadd_ps(w0, xv, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(w1, xv, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(buf[r], acc[r][0]);
    _mm256_store_ps(buf[r] + 8, acc[r][1]);
    std::memcpy(yrow[r], buf[r], static_cast<size_t>(cols) * sizeof(float));
  }
}

}  // namespace

void dense_sgemm_avx2(const DenseArgs& a) {
  constexpr int64_t kSlice = 256;
  for (int64_t k0 = 0; k0 < a.k; k0 += kSlice) {
    const int64_t k1 = std::min(a.k, k0 + kSlice);
    for (int64_t t = a.tile_begin; t < a.tile_end; ++t)
      for (int64_t m0 = a.m_begin; m0 < a.m_end; m0 += 6) {
        switch (std::min<int64_t>(6, a.m_end - m0)) {
          case 1: dense_tile<1>(a, t, m0, k0, k1); break;
          case 2: dense_tile<2>(a, t, m0, k0, k1); break;
          case 3: dense_tile<3>(a, t, m0, k0, k1); break;
          case 4: dense_tile<4>(a, t, m0, k0, k1); break;
          case 5: dense_tile<5>(a, t, m0, k0, k1); break;
          default: dense_tile<6>(a, t, m0, k0, k1); break;
        }
      }
  }
}

}  // namespace qrt::cpu_simd
