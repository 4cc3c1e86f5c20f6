// CPU attention loops for the AVX-512 level (compiled with its flags; entered only after
// core/cpu_isa.h says the CPU has them). Everything but the entry points is file-local, so no
// inline function compiled with these flags can stand in for the baseline copy elsewhere.
#include <immintrin.h>

#include <algorithm>

#include "model/cpu_attention.h"
#include "model/cpu_attention_chunks.h"
#include "model/cpu_attention_kernels.h"

namespace qrt::cpu_attention {
namespace {

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  // The zero-masked form: GCC 12's _mm512_cvtph_ps starts from _mm512_undefined_ps() and warns
  // (-Wmaybe-uninitialized) at every use; the instruction is the same.
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// One 16-wide vector per block; four dimensions in flight.
template <class T>
void scores(const float* q, const T* kb, int64_t hd, float scale, float* out) {
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
  _mm512_storeu_ps(out, _mm512_mul_ps(sum, _mm512_set1_ps(scale)));
}

template <int NC, class T>
void values_chunk(const float* w, const T* values, int64_t first, int64_t last, int64_t hd, int64_t c0, float* out) {
  __m512 acc[NC];
  for (int i = 0; i < NC; ++i) acc[i] = _mm512_loadu_ps(out + c0 + 16 * i);
  for (int64_t j = first; j <= last; ++j) {
    const __m512 wj = _mm512_set1_ps(w[j]);
    const T* v = values + j * hd + c0;
    for (int i = 0; i < NC; ++i) acc[i] = _mm512_fmadd_ps(wj, load16(v + 16 * i), acc[i]);
  }
  for (int i = 0; i < NC; ++i) _mm512_storeu_ps(out + c0 + 16 * i, acc[i]);
}

template <class T>
void values(const float* w, const T* vb, int64_t first, int64_t last, int64_t hd, float* out) {
  for_each_value_chunk<16>(hd, [&](auto nc, int64_t c0) {
    values_chunk<decltype(nc)::value>(w, vb, first, last, hd, c0, out);
  });
}

// The heads of a GQA group share each key and value row: the heads_* loops convert a row once and
// feed every head of the group (four at a time), which also gives the FMAs 4 x heads independent
// chains. Each head's sums run in the order of the one-head loops above, so the results are the
// same bit for bit.
template <int H, class T>
void scores_heads(const float* q, int64_t q_stride, const T* kb, int64_t hd, float scale, float* out, int64_t s_stride) {
  __m512 a[H][4];
  for (int h = 0; h < H; ++h)
    for (int u = 0; u < 4; ++u) a[h][u] = _mm512_setzero_ps();
  int64_t d = 0;
  for (; d + 4 <= hd; d += 4)
    for (int u = 0; u < 4; ++u) {
      const __m512 k = load16(kb + (d + u) * kKeyBlock);
      for (int h = 0; h < H; ++h) a[h][u] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * q_stride + d + u]), k, a[h][u]);
    }
  for (; d < hd; ++d) {
    const __m512 k = load16(kb + d * kKeyBlock);
    for (int h = 0; h < H; ++h) a[h][0] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * q_stride + d]), k, a[h][0]);
  }
  for (int h = 0; h < H; ++h) {
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(a[h][0], a[h][1]), _mm512_add_ps(a[h][2], a[h][3]));
    _mm512_storeu_ps(out + h * s_stride, _mm512_mul_ps(sum, _mm512_set1_ps(scale)));
  }
}

template <class T>
void scores_group(const float* q, int64_t q_stride, int64_t heads, const T* kb, int64_t hd, float scale, float* out,
                  int64_t s_stride) {
  for (int64_t h = 0; h < heads; h += 4) {
    const float* qh = q + h * q_stride;
    float* oh = out + h * s_stride;
    switch (std::min<int64_t>(4, heads - h)) {
      case 1: scores_heads<1>(qh, q_stride, kb, hd, scale, oh, s_stride); break;
      case 2: scores_heads<2>(qh, q_stride, kb, hd, scale, oh, s_stride); break;
      case 3: scores_heads<3>(qh, q_stride, kb, hd, scale, oh, s_stride); break;
      default: scores_heads<4>(qh, q_stride, kb, hd, scale, oh, s_stride); break;
    }
  }
}

// H heads x NC 16-wide columns of accumulators (H * NC <= 16).
template <int H, int NC, class T>
void values_heads(const float* w, int64_t w_stride, const T* values, int64_t first, int64_t last, int64_t hd,
                  int64_t c0, float* out) {
  __m512 acc[H][NC];
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < NC; ++i) acc[h][i] = _mm512_loadu_ps(out + h * hd + c0 + 16 * i);
  for (int64_t j = first; j <= last; ++j) {
    const T* v = values + j * hd + c0;
    for (int i = 0; i < NC; ++i) {
      const __m512 vi = load16(v + 16 * i);
      for (int h = 0; h < H; ++h) acc[h][i] = _mm512_fmadd_ps(_mm512_set1_ps(w[h * w_stride + j]), vi, acc[h][i]);
    }
  }
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < NC; ++i) _mm512_storeu_ps(out + h * hd + c0 + 16 * i, acc[h][i]);
}

template <int NC, class T>
void values_heads_chunk(const float* w, int64_t w_stride, int64_t heads, const T* values, int64_t first, int64_t last,
                        int64_t hd, int64_t c0, float* out) {
  constexpr int kMaxH = NC <= 4 ? 4 : 2;
  for (int64_t h = 0; h < heads; h += kMaxH) {
    const float* wh = w + h * w_stride;
    float* oh = out + h * hd;
    const int64_t n = std::min<int64_t>(kMaxH, heads - h);
    if constexpr (kMaxH == 4) {
      if (n == 4) values_heads<4, NC>(wh, w_stride, values, first, last, hd, c0, oh);
      else if (n == 3) values_heads<3, NC>(wh, w_stride, values, first, last, hd, c0, oh);
      else if (n == 2) values_heads<2, NC>(wh, w_stride, values, first, last, hd, c0, oh);
      else values_heads<1, NC>(wh, w_stride, values, first, last, hd, c0, oh);
    } else {
      if (n == 2) values_heads<2, NC>(wh, w_stride, values, first, last, hd, c0, oh);
      else values_heads<1, NC>(wh, w_stride, values, first, last, hd, c0, oh);
    }
  }
}

template <class T>
void values_group(const float* w, int64_t w_stride, int64_t heads, const T* vb, int64_t first, int64_t last, int64_t hd,
                  float* out) {
  for_each_value_chunk<16>(hd, [&](auto nc, int64_t c0) {
    values_heads_chunk<decltype(nc)::value>(w, w_stride, heads, vb, first, last, hd, c0, out);
  });
}

}  // namespace

void block_scores_heads_avx512(const float* q, int64_t q_stride, int64_t heads, const float* kb, int64_t hd,
                               float scale, float* scores, int64_t s_stride) {
  scores_group(q, q_stride, heads, kb, hd, scale, scores, s_stride);
}
void block_scores_heads_avx512(const float* q, int64_t q_stride, int64_t heads, const uint16_t* kb, int64_t hd,
                               float scale, float* scores, int64_t s_stride) {
  scores_group(q, q_stride, heads, kb, hd, scale, scores, s_stride);
}
void block_values_heads_avx512(const float* w, int64_t w_stride, int64_t heads, const float* vb, int64_t first,
                               int64_t last, int64_t hd, float* out) {
  values_group(w, w_stride, heads, vb, first, last, hd, out);
}
void block_values_heads_avx512(const float* w, int64_t w_stride, int64_t heads, const uint16_t* vb, int64_t first,
                               int64_t last, int64_t hd, float* out) {
  values_group(w, w_stride, heads, vb, first, last, hd, out);
}

void block_scores_avx512(const float* q, const float* kb, int64_t hd, float scale, float* out) {
  scores(q, kb, hd, scale, out);
}
void block_scores_avx512(const float* q, const uint16_t* kb, int64_t hd, float scale, float* out) {
  scores(q, kb, hd, scale, out);
}
void block_values_avx512(const float* w, const float* vb, int64_t first, int64_t last, int64_t hd, float* out) {
  values(w, vb, first, last, hd, out);
}
void block_values_avx512(const float* w, const uint16_t* vb, int64_t first, int64_t last, int64_t hd,
                         float* out) {
  values(w, vb, first, last, hd, out);
}

}  // namespace qrt::cpu_attention
