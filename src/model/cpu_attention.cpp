// Vectorized CPU attention over the blocked key layout (see cpu_attention.h). Each ISA's loops are
// compiled with a function target attribute and picked at run time, as in ops.cpp, so the library
// still runs on any x86-64.
#include "model/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include "model/ops.h"
#include "qrt/device.h"
#include "qrt/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QRT_X86 1
#endif

namespace qrt::cpu_attention {
namespace {

inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return fp16_to_f32(*p); }

// Scores of key blocks [b0, b1): scores[pos] = scale * q . key(pos), every position of each block.
template <class T>
void scores_scalar(const float* q, const T* keys, int64_t b0, int64_t b1, int64_t hd, float scale, float* scores) {
  for (int64_t b = b0; b < b1; ++b) {
    float acc[kKeyBlock] = {};
    const T* kb = keys + b * kKeyBlock * hd;
    for (int64_t d = 0; d < hd; ++d)
      for (int64_t i = 0; i < kKeyBlock; ++i) acc[i] += q[d] * load1(kb + d * kKeyBlock + i);
    for (int64_t i = 0; i < kKeyBlock; ++i) scores[b * kKeyBlock + i] = acc[i] * scale;
  }
}

// out[0, hd) += sum over pos in [first, last] of w[pos] * value(pos). (Every values_* accumulates:
// the grouped kernel adds a block of positions at a time for each head in turn.)
template <class T>
void values_scalar(const float* w, const T* values, int64_t first, int64_t last, int64_t hd, float* out) {
  for (int64_t j = first; j <= last; ++j) {
    const T* v = values + j * hd;
    for (int64_t i = 0; i < hd; ++i) out[i] += w[j] * load1(v + i);
  }
}

#ifdef QRT_X86
#define QRT_AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define QRT_AVX512_FN __attribute__((target("avx512f,avx2,fma,f16c")))

QRT_AVX2_FN inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
QRT_AVX2_FN inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
QRT_AVX512_FN inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
QRT_AVX512_FN inline __m512 load16(const uint16_t* p) {
  // The zero-masked form: GCC 12's _mm512_cvtph_ps starts from _mm512_undefined_ps() and warns
  // (-Wmaybe-uninitialized) at every use; the instruction is the same.
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// A block's 16 scores as two 8-wide halves; even and odd dimensions accumulate separately so two
// multiply-add chains per half are in flight.
template <class T>
QRT_AVX2_FN void scores_avx2(const float* q, const T* keys, int64_t b0, int64_t b1, int64_t hd, float scale,
                             float* scores) {
  const __m256 s = _mm256_set1_ps(scale);
  for (int64_t b = b0; b < b1; ++b) {
    const T* kb = keys + b * kKeyBlock * hd;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t d = 0;
    for (; d + 2 <= hd; d += 2) {
      const __m256 q0 = _mm256_set1_ps(q[d]), q1 = _mm256_set1_ps(q[d + 1]);
      a0 = _mm256_fmadd_ps(q0, load8(kb + d * kKeyBlock), a0);
      a1 = _mm256_fmadd_ps(q0, load8(kb + d * kKeyBlock + 8), a1);
      a2 = _mm256_fmadd_ps(q1, load8(kb + (d + 1) * kKeyBlock), a2);
      a3 = _mm256_fmadd_ps(q1, load8(kb + (d + 1) * kKeyBlock + 8), a3);
    }
    if (d < hd) {
      const __m256 q0 = _mm256_set1_ps(q[d]);
      a0 = _mm256_fmadd_ps(q0, load8(kb + d * kKeyBlock), a0);
      a1 = _mm256_fmadd_ps(q0, load8(kb + d * kKeyBlock + 8), a1);
    }
    _mm256_storeu_ps(scores + b * kKeyBlock, _mm256_mul_ps(_mm256_add_ps(a0, a2), s));
    _mm256_storeu_ps(scores + b * kKeyBlock + 8, _mm256_mul_ps(_mm256_add_ps(a1, a3), s));
  }
}

// NC 8-wide accumulators of out[c0, c0 + 8 NC) stay in registers across all positions.
template <int NC, class T>
QRT_AVX2_FN void values_chunk_avx2(const float* w, const T* values, int64_t first, int64_t last, int64_t hd,
                                   int64_t c0, float* out) {
  __m256 acc[NC];
  for (int i = 0; i < NC; ++i) acc[i] = _mm256_loadu_ps(out + c0 + 8 * i);
  for (int64_t j = first; j <= last; ++j) {
    const __m256 wj = _mm256_set1_ps(w[j]);
    const T* v = values + j * hd + c0;
    for (int i = 0; i < NC; ++i) acc[i] = _mm256_fmadd_ps(wj, load8(v + 8 * i), acc[i]);
  }
  for (int i = 0; i < NC; ++i) _mm256_storeu_ps(out + c0 + 8 * i, acc[i]);
}

// Requires hd % 8 == 0.
template <class T>
QRT_AVX2_FN void values_avx2(const float* w, const T* values, int64_t first, int64_t last, int64_t hd, float* out) {
  for (int64_t c0 = 0; c0 < hd; c0 += 64) {
    switch (std::min<int64_t>(8, (hd - c0) / 8)) {
      case 1: values_chunk_avx2<1>(w, values, first, last, hd, c0, out); break;
      case 2: values_chunk_avx2<2>(w, values, first, last, hd, c0, out); break;
      case 3: values_chunk_avx2<3>(w, values, first, last, hd, c0, out); break;
      case 4: values_chunk_avx2<4>(w, values, first, last, hd, c0, out); break;
      case 5: values_chunk_avx2<5>(w, values, first, last, hd, c0, out); break;
      case 6: values_chunk_avx2<6>(w, values, first, last, hd, c0, out); break;
      case 7: values_chunk_avx2<7>(w, values, first, last, hd, c0, out); break;
      default: values_chunk_avx2<8>(w, values, first, last, hd, c0, out); break;
    }
  }
}

// One 16-wide vector per block; four dimensions in flight.
template <class T>
QRT_AVX512_FN void scores_avx512(const float* q, const T* keys, int64_t b0, int64_t b1, int64_t hd, float scale,
                                 float* scores) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t b = b0; b < b1; ++b) {
    const T* kb = keys + b * kKeyBlock * hd;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t d = 0;
    for (; d + 4 <= hd; d += 4) {
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(q[d]), load16(kb + d * kKeyBlock), a0);
      a1 = _mm512_fmadd_ps(_mm512_set1_ps(q[d + 1]), load16(kb + (d + 1) * kKeyBlock), a1);
      a2 = _mm512_fmadd_ps(_mm512_set1_ps(q[d + 2]), load16(kb + (d + 2) * kKeyBlock), a2);
      a3 = _mm512_fmadd_ps(_mm512_set1_ps(q[d + 3]), load16(kb + (d + 3) * kKeyBlock), a3);
    }
    for (; d < hd; ++d) a0 = _mm512_fmadd_ps(_mm512_set1_ps(q[d]), load16(kb + d * kKeyBlock), a0);
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    _mm512_storeu_ps(scores + b * kKeyBlock, _mm512_mul_ps(sum, s));
  }
}

template <int NC, class T>
QRT_AVX512_FN void values_chunk_avx512(const float* w, const T* values, int64_t first, int64_t last, int64_t hd,
                                       int64_t c0, float* out) {
  __m512 acc[NC];
  for (int i = 0; i < NC; ++i) acc[i] = _mm512_loadu_ps(out + c0 + 16 * i);
  for (int64_t j = first; j <= last; ++j) {
    const __m512 wj = _mm512_set1_ps(w[j]);
    const T* v = values + j * hd + c0;
    for (int i = 0; i < NC; ++i) acc[i] = _mm512_fmadd_ps(wj, load16(v + 16 * i), acc[i]);
  }
  for (int i = 0; i < NC; ++i) _mm512_storeu_ps(out + c0 + 16 * i, acc[i]);
}

// Requires hd % 16 == 0.
template <class T>
QRT_AVX512_FN void values_avx512(const float* w, const T* values, int64_t first, int64_t last, int64_t hd,
                                 float* out) {
  for (int64_t c0 = 0; c0 < hd; c0 += 128) {
    switch (std::min<int64_t>(8, (hd - c0) / 16)) {
      case 1: values_chunk_avx512<1>(w, values, first, last, hd, c0, out); break;
      case 2: values_chunk_avx512<2>(w, values, first, last, hd, c0, out); break;
      case 3: values_chunk_avx512<3>(w, values, first, last, hd, c0, out); break;
      case 4: values_chunk_avx512<4>(w, values, first, last, hd, c0, out); break;
      case 5: values_chunk_avx512<5>(w, values, first, last, hd, c0, out); break;
      case 6: values_chunk_avx512<6>(w, values, first, last, hd, c0, out); break;
      case 7: values_chunk_avx512<7>(w, values, first, last, hd, c0, out); break;
      default: values_chunk_avx512<8>(w, values, first, last, hd, c0, out); break;
    }
  }
}
#endif  // QRT_X86

template <class T>
void partial_impl(const float* q, int64_t q_stride, int64_t heads, const T* keys, const T* values, int64_t first,
                  int64_t last, int64_t hd, float scale, float* scores, float* out, float* mx, float* sum, Isa isa,
                  const int32_t* blocks) {
  isa = std::min(isa, best_isa());  // never run instructions this CPU lacks
  const int64_t b0 = first / kKeyBlock, b1 = last / kKeyBlock + 1;
  const int64_t stride = round_up_to_block(last + 1);  // one scores row per head
  const int64_t block_elems = kKeyBlock * hd;
  // Logical block b of this head's positions in the area (paged: through the block table).
  auto block_of = [&](int64_t b) { return (blocks ? static_cast<int64_t>(blocks[b]) : b) * block_elems; };
  // Block by block, every head: a key block is read from memory once and reused from L1.
  for (int64_t b = b0; b < b1; ++b) {
    const T* kb = keys + block_of(b);
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q + h * q_stride;
      float* sh = scores + h * stride + b * kKeyBlock;
#ifdef QRT_X86
      if (isa == Isa::Avx512) scores_avx512(qh, kb, 0, 1, hd, scale, sh);
      else if (isa == Isa::Avx2) scores_avx2(qh, kb, 0, 1, hd, scale, sh);
      else scores_scalar(qh, kb, 0, 1, hd, scale, sh);
#else
      scores_scalar(qh, kb, 0, 1, hd, scale, sh);
#endif
    }
  }
  for (int64_t h = 0; h < heads; ++h) std::tie(mx[h], sum[h]) = ops::exp_and_sum(scores + h * stride, first, last);
  std::fill(out, out + heads * hd, 0.0f);
  // Values likewise, one block of positions at a time for every head (positions j0..j1 of logical
  // block b are rows j0 - 16 b .. j1 - 16 b of its value block).
  for (int64_t j0 = first; j0 <= last; j0 = (j0 / kKeyBlock + 1) * kKeyBlock) {
    const int64_t b = j0 / kKeyBlock, base = b * kKeyBlock;
    const int64_t j1 = std::min(last, base + kKeyBlock - 1);
    const T* vb = values + block_of(b);
    for (int64_t h = 0; h < heads; ++h) {
      const float* w = scores + h * stride + base;
      float* oh = out + h * hd;
#ifdef QRT_X86
      if (isa == Isa::Avx512 && hd % 16 == 0) values_avx512(w, vb, j0 - base, j1 - base, hd, oh);
      else if (isa >= Isa::Avx2 && hd % 8 == 0) values_avx2(w, vb, j0 - base, j1 - base, hd, oh);
      else values_scalar(w, vb, j0 - base, j1 - base, hd, oh);
#else
      values_scalar(w, vb, j0 - base, j1 - base, hd, oh);
#endif
    }
  }
}

template <class T>
void attend_impl(const float* q, const T* keys, const T* values, int64_t first, int64_t last, int64_t hd,
                 float scale, float* scores, float* out, Isa isa) {
  float mx = 0, sum = 0;
  partial_impl(q, hd, 1, keys, values, first, last, hd, scale, scores, out, &mx, &sum, isa, nullptr);
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < hd; ++i) out[i] *= inv;
}

}  // namespace

Isa best_isa() {
  static const Isa best = [] {
    const CpuFeatures f = probe_cpu().cpu.features;
    if (f.avx512f && f.avx2 && f.fma && f.f16c) return Isa::Avx512;
    if (f.avx2 && f.fma && f.f16c) return Isa::Avx2;
    return Isa::Scalar;
  }();
  return best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

void attend(const float* q, const float* keys, const float* values, int64_t first, int64_t last, int64_t head_dim,
            float scale, float* scores, float* out, Isa isa) {
  attend_impl(q, keys, values, first, last, head_dim, scale, scores, out, isa);
}

void attend(const float* q, const uint16_t* keys, const uint16_t* values, int64_t first, int64_t last,
            int64_t head_dim, float scale, float* scores, float* out, Isa isa) {
  attend_impl(q, keys, values, first, last, head_dim, scale, scores, out, isa);
}

void attend_partial(const float* q, int64_t q_stride, int64_t heads, const float* keys, const float* values,
                    int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out, float* max,
                    float* sum, Isa isa, const int32_t* blocks) {
  partial_impl(q, q_stride, heads, keys, values, first, last, head_dim, scale, scores, out, max, sum, isa, blocks);
}

void attend_partial(const float* q, int64_t q_stride, int64_t heads, const uint16_t* keys, const uint16_t* values,
                    int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out, float* max,
                    float* sum, Isa isa, const int32_t* blocks) {
  partial_impl(q, q_stride, heads, keys, values, first, last, head_dim, scale, scores, out, max, sum, isa, blocks);
}

void merge_partials(const float* out, const float* max, const float* sum, int64_t parts, int64_t stride,
                    int64_t head_dim, float* result) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t p = 0; p < parts; ++p)
    if (sum[p * stride] > 0) m = std::max(m, max[p * stride]);
  float total = 0;
  std::fill(result, result + head_dim, 0.0f);
  for (int64_t p = 0; p < parts; ++p) {
    if (!(sum[p * stride] > 0)) continue;  // an empty part
    const float w = std::exp(max[p * stride] - m);
    total += w * sum[p * stride];
    const float* row = out + p * stride * head_dim;
    for (int64_t i = 0; i < head_dim; ++i) result[i] += w * row[i];
  }
  const float inv = 1.0f / total;
  for (int64_t i = 0; i < head_dim; ++i) result[i] *= inv;
}

}  // namespace qrt::cpu_attention
