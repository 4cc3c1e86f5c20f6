// The dense matmul, SiLU, softmax exponentials and greedy argmax of ops.cpp / sampler.cpp for
// AVX2 + FMA + F16C (compiled with those flags; entered only after core/cpu_isa.h says the CPU has
// them). Everything but the entry points is file-local, so no inline function compiled with these
// flags can stand in for the baseline copy elsewhere.
#include <immintrin.h>

#include <algorithm>
#include <limits>

#include "model/ops_avx2.h"
#include "qrt/dtype.h"

namespace qrt::ops {
namespace {

inline float load_scalar(const float* p) { return *p; }
inline float load_scalar(const uint16_t* p) { return fp16_to_f32(*p); }

inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  return _mm_cvtss_f32(_mm_add_ss(lo, sh));
}

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Output columns [n0, n1) (a multiple of 4) of one input row. Each output is one accumulator
// over K in steps of 8, reduced with hsum256, then the K tail and the bias: exactly the
// arithmetic of the two-row kernel below, so a row's result never depends on the rows beside it
// (the batched engine relies on that). Eight columns at a time keep eight FMA chains in flight.
template <class T>
void single_row(const float* xa, int64_t K, const T* W, int64_t n0, int64_t n1,
                                     const float* bias, float* y) {
  const int64_t K8 = K & ~int64_t{7};
  int64_t n = n0;
  for (; n + 8 <= n1; n += 8) {
    __m256 a[8];
    for (int j = 0; j < 8; ++j) a[j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
      const __m256 va = _mm256_loadu_ps(xa + k);
      for (int j = 0; j < 8; ++j) a[j] = _mm256_fmadd_ps(va, load8(W + (n + j) * K + k), a[j]);
    }
    for (int j = 0; j < 8; ++j) {
      float r = hsum256(a[j]);
      for (int64_t k = K8; k < K; ++k) r += xa[k] * load_scalar(W + (n + j) * K + k);
      y[n + j] = r + (bias ? bias[n + j] : 0.0f);
    }
  }
  for (; n < n1; n += 4) {
    __m256 a[4];
    for (int j = 0; j < 4; ++j) a[j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
      const __m256 va = _mm256_loadu_ps(xa + k);
      for (int j = 0; j < 4; ++j) a[j] = _mm256_fmadd_ps(va, load8(W + (n + j) * K + k), a[j]);
    }
    for (int j = 0; j < 4; ++j) {
      float r = hsum256(a[j]);
      for (int64_t k = K8; k < K; ++k) r += xa[k] * load_scalar(W + (n + j) * K + k);
      y[n + j] = r + (bias ? bias[n + j] : 0.0f);
    }
  }
}

// W is float32 or fp16 (converted in registers: half the bytes streamed, same arithmetic).
template <class T>
void rows(const float* x, int64_t M, int64_t K, const T* W, int64_t n0, int64_t n1,
                                      const float* bias, float* y, int64_t ldy) {
  const int64_t K8 = K & ~int64_t{7};
  // An odd last row (every row at M = 1) on its own, then the rows two at a time.
  if (M % 2) single_row(x + (M - 1) * K, K, W, n0, n1, bias, y + (M - 1) * ldy);
  const int64_t pairs = M / 2 * 2;
  int64_t n = n0;
  for (; n < n1; n += 4) {
    const T* w0 = W + n * K;
    const T* w1 = w0 + K;
    const T* w2 = w1 + K;
    const T* w3 = w2 + K;
    const T* ws[4] = {w0, w1, w2, w3};
    int64_t m = 0;
    for (; m < pairs; m += 2) {
      const float* xa = x + m * K;
      const float* xb = xa + K;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (int64_t k = 0; k < K8; k += 8) {
        const __m256 va = _mm256_loadu_ps(xa + k), vb = _mm256_loadu_ps(xb + k);
        __m256 w = load8(w0 + k);
        a0 = _mm256_fmadd_ps(va, w, a0);
        b0 = _mm256_fmadd_ps(vb, w, b0);
        w = load8(w1 + k);
        a1 = _mm256_fmadd_ps(va, w, a1);
        b1 = _mm256_fmadd_ps(vb, w, b1);
        w = load8(w2 + k);
        a2 = _mm256_fmadd_ps(va, w, a2);
        b2 = _mm256_fmadd_ps(vb, w, b2);
        w = load8(w3 + k);
        a3 = _mm256_fmadd_ps(va, w, a3);
        b3 = _mm256_fmadd_ps(vb, w, b3);
      }
      float ra[4] = {hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)};
      float rb[4] = {hsum256(b0), hsum256(b1), hsum256(b2), hsum256(b3)};
      for (int j = 0; j < 4; ++j) {
        for (int64_t k = K8; k < K; ++k) {
          ra[j] += xa[k] * load_scalar(ws[j] + k);
          rb[j] += xb[k] * load_scalar(ws[j] + k);
        }
        const float bj = bias ? bias[n + j] : 0.0f;
        y[m * ldy + n + j] = ra[j] + bj;
        y[(m + 1) * ldy + n + j] = rb[j] + bj;
      }
    }
  }
}

// exp(x): 0 below -87 (where expf is below 2^-125, nothing next to the 1 of SiLU or the largest
// term of a softmax), x clamped to 88 above; a NaN becomes exp(-87), and SiLU's own NaN input still
// gives NaN. x = n ln2 + r with |r| <= ln2 / 2, ln2 in two parts so that r is exact to float
// precision; e^r by its Taylor series to r^7 (the first term left out is below 1e-8 relative, so
// float rounding is the whole error); 2^n built in the exponent bits (n in [-126, 127]: normal).
inline __m256 exp8(__m256 x) {
  const __m256 low = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(low, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
}

inline __m256 silu_mul8(__m256 g, __m256 u) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
}

}  // namespace

void silu_mul_avx2(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(gate + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    alignas(32) float g[8] = {}, u[8] = {};
    std::copy(gate + i, gate + n, g);
    std::copy(up + i, up + n, u);
    _mm256_store_ps(g, silu_mul8(_mm256_load_ps(g), _mm256_load_ps(u)));
    std::copy(g, g + (n - i), gate + i);
  }
}

std::pair<float, float> exp_and_sum_avx2(float* scores, int64_t first, int64_t last) {
  float* s = scores + first;
  const int64_t n = last - first + 1;
  float mx = s[0];
  int64_t i = 0;
  if (n >= 8) {
    __m256 m = _mm256_loadu_ps(s);
    for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(s + i), m);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    for (float v : lanes) mx = std::max(mx, v);
  }
  for (; i < n; ++i) mx = std::max(mx, s[i]);
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmx));
    _mm256_storeu_ps(s + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (i < n) {
    // The tail through a copy padded with -infinity, whose exponentials are 0 and add nothing.
    alignas(32) float t[8];
    std::fill(t, t + 8, -std::numeric_limits<float>::infinity());
    std::copy(s + i, s + n, t);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_load_ps(t), vmx));
    _mm256_store_ps(t, e);
    std::copy(t, t + (n - i), s + i);
    acc = _mm256_add_ps(acc, e);
  }
  return {mx, hsum256(acc)};
}

void f32_to_fp16_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

int64_t argmax_avx2(const float* v, int64_t n) {
  // maxps returns its second operand when either is NaN: with the running maximum second, a NaN
  // input leaves it as it was.
  __m256 acc = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(_mm256_loadu_ps(v + i), acc);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float best = lanes[0];
  for (int j = 1; j < 8; ++j) best = std::max(best, lanes[j]);
  for (; i < n; ++i)
    if (v[i] > best) best = v[i];
  if (!(best > -std::numeric_limits<float>::infinity())) return 0;
  const __m256 target = _mm256_set1_ps(best);
  for (i = 0; i + 8 <= n; i += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + i), target, _CMP_EQ_OQ));
    if (mask) return i + __builtin_ctz(static_cast<unsigned>(mask));
  }
  for (; i < n; ++i)
    if (v[i] == best) return i;
  return 0;  // not reached: best is one of the values
}

void dense_rows_avx2(const float* x, int64_t M, int64_t K, const float* W, int64_t n0, int64_t n1,
                     const float* bias, float* y, int64_t ldy) {
  rows(x, M, K, W, n0, n1, bias, y, ldy);
}

void dense_rows_avx2(const float* x, int64_t M, int64_t K, const uint16_t* W, int64_t n0, int64_t n1,
                     const float* bias, float* y, int64_t ldy) {
  rows(x, M, K, W, n0, n1, bias, y, ldy);
}

}  // namespace qrt::ops
