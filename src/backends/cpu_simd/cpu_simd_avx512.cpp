// cpu_simd kernels for AVX-512 F/BW/VL/DQ + VNNI (compiled with those flags; called only after
// cpuid says the CPU has them). One zmm lane = one of the 16 output rows of a tile, so a block of
// 16 rows x 4 k is one vpdpbusd operand and the activation dword is a broadcast.
#include <immintrin.h>

// GCC 12 reports its own _mm512_undefined_* helpers as "maybe uninitialized" (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cstring>

#include "backends/cpu_simd/cpu_simd_kernels.h"

namespace qrt::cpu_simd {
namespace {

constexpr int64_t kPrefetchBytes = 4096;  // best of 1, 2, 4, 8, 16 KiB (one thread and two)

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __mmask16 tail_mask(const GemmArgs& a, int64_t tile) {
  const int64_t cols = std::min<int64_t>(kTileRows, a.n - tile * kTileRows);
  return cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1);
}

// Scale and min rows of (tile, group), from fp16 or fp32 storage.
inline void scale_pair(const PackedView& w, int64_t tile, int32_t group, __m512& vs, __m512& vm) {
  const int64_t off = (tile * w.groups + group) * 2 * kTileRows;
  if (w.scales16) {
    vs = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.scales16 + off)));
    vm = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.scales16 + off + kTileRows)));
  } else {
    vs = _mm512_loadu_ps(w.scales + off);
    vm = _mm512_loadu_ps(w.scales + off + kTileRows);
  }
}

template <int MR>
inline void store_rows(const GemmArgs& a, int64_t tile, int64_t m0, const __m512* acc) {
  const __mmask16 mk = tail_mask(a, tile);
  const int64_t n0 = tile * kTileRows;
  const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + n0) : _mm512_setzero_ps();
  for (int r = 0; r < MR; ++r) _mm512_mask_storeu_ps(a.y + (m0 + r) * a.ldy + n0, mk, _mm512_add_ps(acc[r], bias));
}

// int8 activations x 4-bit (U4) or 8-bit (U8) unsigned codes. Per 32-block an integer dot with
// vpdpbusd, folded into a float sum with the activation step d; per run of blocks sharing a scale
// group, acc += fsum * scale + min * sum(d * sum q). Hoisting the scale out of the block loop and
// masking high nibbles in place (0xF0, i.e. 16 x code, shifted back once per block) keeps the
// M = 1 loop at ~35 instructions per 256 bytes of codes, which is what lets it follow memory.
// TWO (int8x2 activations): a second set of chains takes the low halves q2 against the same
// unpacked weight registers; per block dot = 255 * dot(q) + dot(q2), exact in int32 (|dot(q)| <=
// 32 * 255 * 127), so one convert and one FMA per block as before.
template <int MR, CodeKind KIND, bool TWO>
void int8_tile(const GemmArgs& a, int64_t tile, int64_t m0) {
  const PackedView& w = a.w;
  const uint8_t* blk = w.codes + tile * w.tile_code_bytes();
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
  // Two integer chains per row and activation half when registers allow (U4: low and in-place
  // high nibbles).
  constexpr bool kSplit = TWO ? MR <= 2 : MR <= 4;
  constexpr bool kSeq = TWO && !kSplit;  // int8x2 with more rows: one chain per row, two passes
  __m512 acc[MR];
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  int64_t b = 0;
  for (int64_t run = 0; run < w.n_runs; ++run) {
    const int32_t group = w.runs[2 * run], run_blocks = w.runs[2 * run + 1];
    __m512 fsum[MR];
    float msum[MR];
    for (int r = 0; r < MR; ++r) fsum[r] = _mm512_setzero_ps(), msum[r] = 0.f;
    for (int32_t i = 0; i < run_blocks; ++i, ++b, blk += w.block_bytes()) {
      // Codes are read once per call in one stream (tiles are contiguous): fetch them 4 KiB ahead.
      // The hardware prefetcher alone keeps up with int8 but not with int8x2's longer loop, which
      // then holds fewer misses in flight (measured at M = 1: int8x2 -17% time, int8 -3%).
      for (int l = 0; l < w.block_bytes(); l += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + l), _MM_HINT_T0);
      // ia/ib: chains of q (ib: second chain when kSplit); ic/id: the same for q2.
      __m512i ia[MR], ib[MR], ic[MR], id[MR];
      for (int r = 0; r < MR; ++r) {
        ia[r] = _mm512_setzero_si512();
        if (kSplit) ib[r] = _mm512_setzero_si512();
        if (TWO && !kSeq) ic[r] = _mm512_setzero_si512();
        if (TWO && kSplit) id[r] = _mm512_setzero_si512();
      }
      if constexpr (kSeq) {
        // One chain per row: the q pass, times 255, then the q2 pass over the same (re-read, L1)
        // codes, so 8 rows fit the 32 registers without spilling.
        for (int pass = 0; pass < 2; ++pass) {
          const int8_t* const* src = pass == 0 ? q : q2;
          if (pass == 1)
            for (int r = 0; r < MR; ++r) ia[r] = _mm512_sub_epi32(_mm512_slli_epi32(ia[r], 8), ia[r]);
          if constexpr (KIND == CodeKind::U4) {
            for (int c = 0; c < 4; ++c) {
              const __m512i wv = _mm512_loadu_si512(blk + c * 64);
              const __m512i lo = _mm512_and_si512(wv, low4);
              const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), low4);
              for (int r = 0; r < MR; ++r) {
                const int64_t o = b * kBlockK + 4 * c;
                ia[r] = _mm512_dpbusd_epi32(ia[r], lo, bcast4(src[r] + o));
                ia[r] = _mm512_dpbusd_epi32(ia[r], hi, bcast4(src[r] + o + 16));
              }
            }
          } else {
            for (int c = 0; c < 8; ++c) {
              const __m512i wv = _mm512_loadu_si512(blk + c * 64);
              for (int r = 0; r < MR; ++r) ia[r] = _mm512_dpbusd_epi32(ia[r], wv, bcast4(src[r] + b * kBlockK + 4 * c));
            }
          }
        }
      } else if constexpr (KIND == CodeKind::U4) {
        for (int c = 0; c < 4; ++c) {
          const __m512i wv = _mm512_loadu_si512(blk + c * 64);
          const __m512i lo = _mm512_and_si512(wv, low4);
          const __m512i hi = kSplit ? _mm512_and_si512(wv, high4) : _mm512_and_si512(_mm512_srli_epi16(wv, 4), low4);
          for (int r = 0; r < MR; ++r) {
            const int64_t o = b * kBlockK + 4 * c;
            ia[r] = _mm512_dpbusd_epi32(ia[r], lo, bcast4(q[r] + o));
            if (TWO) ic[r] = _mm512_dpbusd_epi32(ic[r], lo, bcast4(q2[r] + o));
            if (kSplit) {
              ib[r] = _mm512_dpbusd_epi32(ib[r], hi, bcast4(q[r] + o + 16));
              if (TWO) id[r] = _mm512_dpbusd_epi32(id[r], hi, bcast4(q2[r] + o + 16));
            } else {
              ia[r] = _mm512_dpbusd_epi32(ia[r], hi, bcast4(q[r] + o + 16));
              if (TWO) ic[r] = _mm512_dpbusd_epi32(ic[r], hi, bcast4(q2[r] + o + 16));
            }
          }
        }
      } else {
        for (int c = 0; c < 8; ++c) {
          const __m512i wv = _mm512_loadu_si512(blk + c * 64);
          for (int r = 0; r < MR; ++r) {
            const int64_t o = b * kBlockK + 4 * c;
            if (kSplit && (c & 1)) {
              ib[r] = _mm512_dpbusd_epi32(ib[r], wv, bcast4(q[r] + o));
              if (TWO) id[r] = _mm512_dpbusd_epi32(id[r], wv, bcast4(q2[r] + o));
            } else {
              ia[r] = _mm512_dpbusd_epi32(ia[r], wv, bcast4(q[r] + o));
              if (TWO) ic[r] = _mm512_dpbusd_epi32(ic[r], wv, bcast4(q2[r] + o));
            }
          }
        }
      }
      for (int r = 0; r < MR; ++r) {
        // U4 with kSplit: the high-nibble chains saw 16 x code.
        __m512i dot = ia[r];
        if (kSplit) dot = _mm512_add_epi32(dot, KIND == CodeKind::U4 ? _mm512_srai_epi32(ib[r], 4) : ib[r]);
        if constexpr (TWO && !kSeq) {
          __m512i dot2 = ic[r];
          if (kSplit) dot2 = _mm512_add_epi32(dot2, KIND == CodeKind::U4 ? _mm512_srai_epi32(id[r], 4) : id[r]);
          static_assert(kSplitRatio == 255, "255 x = (x << 8) - x");
          dot = _mm512_add_epi32(_mm512_sub_epi32(_mm512_slli_epi32(dot, 8), dot), dot2);
        }
        fsum[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(d[r][b]), fsum[r]);
        msum[r] += ds[r][b];
      }
    }
    __m512 vs, vm;
    scale_pair(w, tile, group, vs, vm);
    for (int r = 0; r < MR; ++r) {
      acc[r] = _mm512_fmadd_ps(fsum[r], vs, acc[r]);
      acc[r] = _mm512_fmadd_ps(vm, _mm512_set1_ps(msum[r]), acc[r]);
    }
  }
  store_rows<MR>(a, tile, m0, acc);
}

// e4m3 byte in the low 8 bits of each lane -> float: sign and exponent/mantissa moved into f32
// position (exponent bias 7 instead of 127), then one multiply by 2^120 fixes the bias; e4m3
// subnormals become f32 subnormals, which the multiply turns back into normal values exactly.
inline __m512 fp8_lanes_to_f32(__m512i lane) {
  const __m512i mag = _mm512_and_si512(_mm512_slli_epi32(lane, 20), _mm512_set1_epi32(0x07F00000));
  const __m512i sign = _mm512_and_si512(_mm512_slli_epi32(lane, 24), _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(mag, sign)), _mm512_set1_ps(0x1p120f));
}

// Float activations: codes decoded to float lanes (16 rows for one k), FMA with the broadcast x.
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
  constexpr int NA = MR == 1 ? 4 : (MR == 2 ? 2 : 1);  // independent FMA chains per row
  __m512 acc[MR];
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i byte = _mm512_set1_epi32(0xFF);
  for (int64_t b = 0; b < w.blocks; ++b) {
    const uint8_t* blk = codes + b * w.block_bytes();
    __m512 fa[MR][NA];
    for (int r = 0; r < MR; ++r)
      for (int i = 0; i < NA; ++i) fa[r][i] = _mm512_setzero_ps();
    auto lane = [&](__m512i v, int j) {
      return j == 3 ? _mm512_srli_epi32(v, 24) : _mm512_and_si512(_mm512_srli_epi32(v, 8 * j), byte);
    };
    auto fma_k = [&](__m512 wf, int kk, int chain) {
      for (int r = 0; r < MR; ++r)
        fa[r][chain % NA] = _mm512_fmadd_ps(wf, _mm512_set1_ps(x[r][b * kBlockK + kk]), fa[r][chain % NA]);
    };
    if constexpr (KIND == CodeKind::U4) {
      const __m512i low4 = _mm512_set1_epi8(0x0F);
      for (int c = 0; c < 4; ++c) {
        const __m512i wv = _mm512_loadu_si512(blk + c * 64);
        const __m512i lo = _mm512_and_si512(wv, low4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), low4);
        for (int j = 0; j < 4; ++j) {
          fma_k(_mm512_cvtepi32_ps(lane(lo, j)), 4 * c + j, j);
          fma_k(_mm512_cvtepi32_ps(lane(hi, j)), 16 + 4 * c + j, j + 1);
        }
      }
    } else {
      for (int c = 0; c < 8; ++c) {
        const __m512i wv = _mm512_loadu_si512(blk + c * 64);
        for (int j = 0; j < 4; ++j) {
          const __m512i l = lane(wv, j);
          const __m512 wf = KIND == CodeKind::Fp8 ? fp8_lanes_to_f32(l) : _mm512_cvtepi32_ps(l);
          fma_k(wf, 4 * c + j, j);
        }
      }
    }
    __m512 vs, vm;
    scale_pair(w, tile, w.block_group[b], vs, vm);
    for (int r = 0; r < MR; ++r) {
      __m512 dot = fa[r][0];
      for (int i = 1; i < NA; ++i) dot = _mm512_add_ps(dot, fa[r][i]);
      acc[r] = _mm512_fmadd_ps(dot, vs, acc[r]);
      acc[r] = _mm512_fmadd_ps(vm, _mm512_set1_ps(xs[r][b]), acc[r]);
    }
  }
  store_rows<MR>(a, tile, m0, acc);
}

// MODE: 0 = float activations, 1 = int8, 2 = int8x2.
template <CodeKind KIND, int MODE>
void run_tile(const GemmArgs& a, int64_t tile, int64_t m0, int rows) {
#define QRT_TILE(R)                                                   \
  case R:                                                             \
    if constexpr (MODE == 0) f32_tile<R, KIND>(a, tile, m0);          \
    else int8_tile<R, KIND, MODE == 2>(a, tile, m0);                  \
    break;
  switch (rows) {
    QRT_TILE(1) QRT_TILE(2) QRT_TILE(3) QRT_TILE(4) QRT_TILE(5) QRT_TILE(6) QRT_TILE(7) QRT_TILE(8)
  }
#undef QRT_TILE
}

template <CodeKind KIND, int MODE>
void gemm(const GemmArgs& a) {
  const int mt = std::clamp(a.m_tile, 1, kMaxMTile);
  for (int64_t t = a.tile_begin; t < a.tile_end; ++t)
    for (int64_t m0 = a.m_begin; m0 < a.m_end; m0 += mt)
      run_tile<KIND, MODE>(a, t, m0, static_cast<int>(std::min<int64_t>(mt, a.m_end - m0)));
}

}  // namespace

void gemm_int8_avx512(const GemmArgs& a) {
  if (a.w.kind == CodeKind::U4) gemm<CodeKind::U4, 1>(a);
  else gemm<CodeKind::U8, 1>(a);
}

void gemm_int8x2_avx512(const GemmArgs& a) {
  if (a.w.kind == CodeKind::U4) gemm<CodeKind::U4, 2>(a);
  else gemm<CodeKind::U8, 2>(a);
}

void gemm_f32_avx512(const GemmArgs& a) {
  switch (a.w.kind) {
    case CodeKind::U4: gemm<CodeKind::U4, 0>(a); break;
    case CodeKind::U8: gemm<CodeKind::U8, 0>(a); break;
    case CodeKind::Fp8: gemm<CodeKind::Fp8, 0>(a); break;
  }
}

namespace {

// Dense fp32 baseline: 16 columns x up to 8 rows in registers, K cut into 256-wide slices so a
// weight slice (16 KiB) stays in L1 while every row block passes over it.
template <int MR>
void dense_tile(const DenseArgs& a, int64_t t, int64_t m0, int64_t k0, int64_t k1) {
  const int64_t n0 = t * kTileRows;
  const int64_t cols = std::min<int64_t>(kTileRows, a.n - n0);
  const __mmask16 mk = cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1);
  __m512 acc[MR];
  for (int r = 0; r < MR; ++r)
    acc[r] = k0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mk, a.y + (m0 + r) * a.n + n0);
  const float* wt = a.w_packed + t * a.k * kTileRows;
  for (int64_t k = k0; k < k1; ++k) {
    const __m512 wv = _mm512_loadu_ps(wt + k * kTileRows);
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_fmadd_ps(wv, _mm512_set1_ps(a.x[(m0 + r) * a.k + k]), acc[r]);
  }
  for (int r = 0; r < MR; ++r) _mm512_mask_storeu_ps(a.y + (m0 + r) * a.n + n0, mk, acc[r]);
}

}  // namespace

void dense_sgemm_avx512(const DenseArgs& a) {
  constexpr int64_t kSlice = 256;
  for (int64_t k0 = 0; k0 < a.k; k0 += kSlice) {
    const int64_t k1 = std::min(a.k, k0 + kSlice);
    for (int64_t t = a.tile_begin; t < a.tile_end; ++t)
      for (int64_t m0 = a.m_begin; m0 < a.m_end; m0 += 8) {
        switch (std::min<int64_t>(8, a.m_end - m0)) {
          case 1: dense_tile<1>(a, t, m0, k0, k1); break;
          case 2: dense_tile<2>(a, t, m0, k0, k1); break;
          case 3: dense_tile<3>(a, t, m0, k0, k1); break;
          case 4: dense_tile<4>(a, t, m0, k0, k1); break;
          case 5: dense_tile<5>(a, t, m0, k0, k1); break;
          case 6: dense_tile<6>(a, t, m0, k0, k1); break;
          case 7: dense_tile<7>(a, t, m0, k0, k1); break;
          default: dense_tile<8>(a, t, m0, k0, k1); break;
        }
      }
  }
}

}  // namespace qrt::cpu_simd
