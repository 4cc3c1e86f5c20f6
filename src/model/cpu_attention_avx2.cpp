// CPU attention loops for AVX2 + FMA + F16C (compiled with those flags; entered only after
// core/cpu_isa.h says the CPU has them). Everything but the entry points is file-local, so no
// inline function compiled with these flags can stand in for the baseline copy elsewhere.
#include <immintrin.h>

#include "model/cpu_attention.h"
#include "model/cpu_attention_chunks.h"
#include "model/cpu_attention_kernels.h"

namespace qrt::cpu_attention {
namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// A block's 16 scores as two 8-wide halves; even and odd dimensions accumulate separately so two
// multiply-add chains per half are in flight.
template <class T>
void scores(const float* q, const T* kb, int64_t hd, float scale, float* out) {
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
  const __m256 s = _mm256_set1_ps(scale);
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_add_ps(a0, a2), s));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(_mm256_add_ps(a1, a3), s));
}

// NC 8-wide accumulators of out[c0, c0 + 8 NC) stay in registers across all positions.
template <int NC, class T>
void values_chunk(const float* w, const T* values, int64_t first, int64_t last, int64_t hd, int64_t c0, float* out) {
  __m256 acc[NC];
  for (int i = 0; i < NC; ++i) acc[i] = _mm256_loadu_ps(out + c0 + 8 * i);
  for (int64_t j = first; j <= last; ++j) {
    const __m256 wj = _mm256_set1_ps(w[j]);
    const T* v = values + j * hd + c0;
    for (int i = 0; i < NC; ++i) acc[i] = _mm256_fmadd_ps(wj, load8(v + 8 * i), acc[i]);
  }
  for (int i = 0; i < NC; ++i) _mm256_storeu_ps(out + c0 + 8 * i, acc[i]);
}

template <class T>
void values(const float* w, const T* vb, int64_t first, int64_t last, int64_t hd, float* out) {
  for_each_value_chunk<8>(hd, [&](auto nc, int64_t c0) {
    values_chunk<decltype(nc)::value>(w, vb, first, last, hd, c0, out);
  });
}

}  // namespace

void block_scores_avx2(const float* q, const float* kb, int64_t hd, float scale, float* out) {
  scores(q, kb, hd, scale, out);
}
void block_scores_avx2(const float* q, const uint16_t* kb, int64_t hd, float scale, float* out) {
  scores(q, kb, hd, scale, out);
}
void block_values_avx2(const float* w, const float* vb, int64_t first, int64_t last, int64_t hd, float* out) {
  values(w, vb, first, last, hd, out);
}
void block_values_avx2(const float* w, const uint16_t* vb, int64_t first, int64_t last, int64_t hd, float* out) {
  values(w, vb, first, last, hd, out);
}

}  // namespace qrt::cpu_attention
