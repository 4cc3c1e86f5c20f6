// The vector loops of CPU attention, one set per instruction-set level (core/cpu_isa.h), defined in
// cpu_attention_avx2.cpp and cpu_attention_avx512.cpp. Plain declarations only: this header is read
// by files compiled with and without the wide-instruction flags.
//
// Keys and values are one block of the layout in cpu_attention.h, float32 or IEEE fp16 bits.
#pragma once

#include <cstdint>

namespace qrt::cpu_attention {

// scores[i] = scale * q . key(i) for the kKeyBlock positions of the key block `kb`.
void block_scores_avx2(const float* q, const float* kb, int64_t head_dim, float scale, float* scores);
void block_scores_avx2(const float* q, const uint16_t* kb, int64_t head_dim, float scale, float* scores);
void block_scores_avx512(const float* q, const float* kb, int64_t head_dim, float scale, float* scores);
void block_scores_avx512(const float* q, const uint16_t* kb, int64_t head_dim, float scale, float* scores);

// out[0, head_dim) += sum over rows j in [first, last] of w[j] * value row j of the value block `vb`.
// head_dim % 8 == 0 (AVX2) or % 16 == 0 (AVX-512).
void block_values_avx2(const float* w, const float* vb, int64_t first, int64_t last, int64_t head_dim, float* out);
void block_values_avx2(const float* w, const uint16_t* vb, int64_t first, int64_t last, int64_t head_dim,
                       float* out);
void block_values_avx512(const float* w, const float* vb, int64_t first, int64_t last, int64_t head_dim,
                         float* out);
void block_values_avx512(const float* w, const uint16_t* vb, int64_t first, int64_t last, int64_t head_dim,
                         float* out);

// Every head of a GQA group at once (AVX-512): query / score / output rows of head h at h x their
// stride; the same results as the one-head loops, bit for bit.
void block_scores_heads_avx512(const float* q, int64_t q_stride, int64_t heads, const float* kb, int64_t head_dim,
                               float scale, float* scores, int64_t s_stride);
void block_scores_heads_avx512(const float* q, int64_t q_stride, int64_t heads, const uint16_t* kb, int64_t head_dim,
                               float scale, float* scores, int64_t s_stride);
void block_values_heads_avx512(const float* w, int64_t w_stride, int64_t heads, const float* vb, int64_t first,
                               int64_t last, int64_t head_dim, float* out);
void block_values_heads_avx512(const float* w, int64_t w_stride, int64_t heads, const uint16_t* vb, int64_t first,
                               int64_t last, int64_t head_dim, float* out);

}  // namespace qrt::cpu_attention
