// CPU attention loops for the AVX-512 level (compiled with its flags; entered only after
// core/cpu_isa.h says the CPU has them). Everything but the entry points is file-local, so no
// inline function compiled with these flags can stand in for the baseline copy elsewhere.
#include <immintrin.h>

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

}  // namespace

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
