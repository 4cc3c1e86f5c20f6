// CPU attention over the blocked key layout (see cpu_attention.h): the scheduling over blocks and
// heads, the scalar loops, and the run-time choice of the vector loops of cpu_attention_avx2.cpp and
// cpu_attention_avx512.cpp (core/cpu_isa.h).
#include "model/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include "model/cpu_attention_kernels.h"
#include "model/ops.h"
#include "qrt/dtype.h"

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


template <class T>
void partial_impl(const float* q, int64_t q_stride, int64_t heads, const T* keys, const T* values, int64_t first,
                  int64_t last, int64_t hd, float scale, float* scores, float* out, float* mx, float* sum, Isa isa,
                  const int32_t* blocks, float softcap = 0.0f) {
  isa = std::min(isa, best_cpu_isa());  // never run instructions this CPU lacks
  const int64_t b0 = first / kKeyBlock, b1 = last / kKeyBlock + 1;
  const int64_t stride = round_up_to_block(last + 1);  // one scores row per head
  const int64_t block_elems = kKeyBlock * hd;
  // Logical block b of this head's positions in the area (paged: through the block table).
  auto block_of = [&](int64_t b) { return (blocks ? static_cast<int64_t>(blocks[b]) : b) * block_elems; };
  // Block by block, every head: a key block is read from memory once and reused from L1.
  for (int64_t b = b0; b < b1; ++b) {
    const T* kb = keys + block_of(b);
    if (isa == Isa::Avx512) {
      block_scores_heads_avx512(q, q_stride, heads, kb, hd, scale, scores + b * kKeyBlock, stride);
      continue;
    }
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q + h * q_stride;
      float* sh = scores + h * stride + b * kKeyBlock;
      if (isa == Isa::Avx512) block_scores_avx512(qh, kb, hd, scale, sh);
      else if (isa == Isa::Avx2) block_scores_avx2(qh, kb, hd, scale, sh);
      else scores_scalar(qh, kb, 0, 1, hd, scale, sh);
    }
  }
  if (softcap > 0)
    for (int64_t h = 0; h < heads; ++h) ops::softcap(scores + h * stride + first, last - first + 1, softcap);
  for (int64_t h = 0; h < heads; ++h) std::tie(mx[h], sum[h]) = ops::exp_and_sum(scores + h * stride, first, last);
  std::fill(out, out + heads * hd, 0.0f);
  // Values likewise, one block of positions at a time for every head (positions j0..j1 of logical
  // block b are rows j0 - 16 b .. j1 - 16 b of its value block).
  for (int64_t j0 = first; j0 <= last; j0 = (j0 / kKeyBlock + 1) * kKeyBlock) {
    const int64_t b = j0 / kKeyBlock, base = b * kKeyBlock;
    const int64_t j1 = std::min(last, base + kKeyBlock - 1);
    const T* vb = values + block_of(b);
    if (isa == Isa::Avx512 && hd % 16 == 0) {
      block_values_heads_avx512(scores + base, stride, heads, vb, j0 - base, j1 - base, hd, out);
      continue;
    }
    for (int64_t h = 0; h < heads; ++h) {
      const float* w = scores + h * stride + base;
      float* oh = out + h * hd;
      if (isa == Isa::Avx512 && hd % 16 == 0) block_values_avx512(w, vb, j0 - base, j1 - base, hd, oh);
      else if (isa >= Isa::Avx2 && hd % 8 == 0) block_values_avx2(w, vb, j0 - base, j1 - base, hd, oh);
      else values_scalar(w, vb, j0 - base, j1 - base, hd, oh);
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
                    float* sum, Isa isa, const int32_t* blocks, float softcap) {
  partial_impl(q, q_stride, heads, keys, values, first, last, head_dim, scale, scores, out, max, sum, isa, blocks,
               softcap);
}

void attend_partial(const float* q, int64_t q_stride, int64_t heads, const uint16_t* keys, const uint16_t* values,
                    int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out, float* max,
                    float* sum, Isa isa, const int32_t* blocks, float softcap) {
  partial_impl(q, q_stride, heads, keys, values, first, last, head_dim, scale, scores, out, max, sum, isa, blocks,
               softcap);
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
