// The AVX2 dense matmul, SiLU and softmax exponentials of ops.cpp, the KV store's fp16 conversion
// and the greedy choice's argmax (defined in ops_avx2.cpp, compiled with the AVX2 level's flags;
// core/cpu_isa.h). Plain declarations only: read by files compiled with and without those flags.
#pragma once

#include <cstdint>
#include <utility>

namespace qrt::ops {

// y[m * ldy + n] = x[m] . W[n] + bias[n] for every row m < M and output row n in [n0, n1), where
// n1 - n0 is a multiple of 4. W is [N][K], float32 or IEEE fp16 bits (converted in registers: half
// the bytes streamed, the same arithmetic). Each dot product is summed in one order whatever M is,
// so a row's result never depends on the rows beside it (the batched engine relies on that).
void dense_rows_avx2(const float* x, int64_t M, int64_t K, const float* W, int64_t n0, int64_t n1,
                     const float* bias, float* y, int64_t ldy);
void dense_rows_avx2(const float* x, int64_t M, int64_t K, const uint16_t* W, int64_t n0, int64_t n1,
                     const float* bias, float* y, int64_t ldy);

// gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i], the exponential a polynomial within a few
// float ulps of expf. Every element takes the same vector arithmetic (a tail of n % 8 runs through
// a padded copy), so an element's result does not depend on n or on where its row starts.
void silu_mul_avx2(float* gate, const float* up, int64_t n);

// ops::exp_and_sum with the exponentials of exp8 (silu_mul_avx2's) and the sum in eight lanes.
std::pair<float, float> exp_and_sum_avx2(float* scores, int64_t first, int64_t last);

// y[i] = x[i] as IEEE fp16 bits, rounded to nearest even: qrt::f32_to_fp16's results (NaN payloads
// aside), eight at a time through F16C.
void f32_to_fp16_avx2(const float* x, uint16_t* y, int64_t n);

// The index of the largest of v[0..n), the lowest among equal ones, NaN passed over; 0 when no
// value is above -infinity (qrt::greedy_token's contract, in two vector passes: the maximum, then
// its first index).
int64_t argmax_avx2(const float* v, int64_t n);

}  // namespace qrt::ops
