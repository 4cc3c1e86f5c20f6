// Attention of one query row and one head over the CPU engine's KV cache, vectorized.
//
// Layout. Keys are stored in blocks of kKeyBlock positions, dimension-major inside a block:
// key (pos, d) of a head lives at key_index(pos, d, head_dim). Then the scores of a whole block
// are head_dim broadcast-multiply-adds of one query element against kKeyBlock contiguous keys,
// with no horizontal sum per position (the row-major layout needs one reduction per position,
// which dominated decode attention). Values stay row-major (value (pos, d) at pos * head_dim + d):
// the weighted sum over positions is already a vertical multiply-add.
//
// The key area of a head holds head_key_elems(capacity, head_dim) elements (capacity rounded up
// to a whole block). Positions past the last written one inside its block are computed and
// ignored, so the area must be initialised memory (the engine zero-allocates it).
//
// Paged caches. A key block and the matching 16 value rows are one unit of kKeyBlock * head_dim
// elements each, so a head's area can also be a pool of blocks shared by many sequences: a
// sequence's block table maps its logical block b (positions [16 b, 16 b + 16)) to a physical
// block of the pool. attend_partial takes that table (nullptr: the identity, a contiguous cache)
// and performs exactly the same arithmetic in the same order either way.
#pragma once

#include <cstdint>

#include "core/cpu_isa.h"

namespace qrt::cpu_attention {

constexpr int64_t kKeyBlock = 16;

inline int64_t round_up_to_block(int64_t n) { return (n + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }
inline int64_t head_key_elems(int64_t capacity, int64_t head_dim) { return round_up_to_block(capacity) * head_dim; }
inline int64_t key_index(int64_t pos, int64_t d, int64_t head_dim) {
  return (pos / kKeyBlock) * kKeyBlock * head_dim + d * kKeyBlock + pos % kKeyBlock;
}
// The same in a paged area: `block` is the physical block holding `pos`.
inline int64_t paged_key_index(int64_t block, int64_t pos, int64_t d, int64_t head_dim) {
  return block * kKeyBlock * head_dim + d * kKeyBlock + pos % kKeyBlock;
}
inline int64_t paged_value_index(int64_t block, int64_t pos, int64_t d, int64_t head_dim) {
  return block * kKeyBlock * head_dim + (pos % kKeyBlock) * head_dim + d;
}

using Isa = CpuIsa;  // the shared levels (core/cpu_isa.h)

// softmax(q . K[first..last] * scale) . V[first..last] into out[0, head_dim). keys / values: one
// head's areas in the layout above, float32 or IEEE fp16 bits. scores: scratch of at least
// round_up_to_block(last + 1) floats. `isa` must be one this CPU runs (tests pass each in turn).
void attend(const float* q, const float* keys, const float* values, int64_t first, int64_t last, int64_t head_dim,
            float scale, float* scores, float* out, Isa isa = best_cpu_isa());
void attend(const float* q, const uint16_t* keys, const uint16_t* values, int64_t first, int64_t last,
            int64_t head_dim, float scale, float* scores, float* out, Isa isa = best_cpu_isa());

// The heads of one GQA group over one range of positions, unnormalised, so that a long context
// can be split across threads and merged (merge_partials). `heads` query rows (row h at
// q + h * q_stride) share the KV head: each key and value block is read once for all of them.
// For each head h: max[h] = the largest score, sum[h] = sum of exp(score - max[h]) over
// [first, last], out[h * head_dim, +head_dim) = sum of exp(score - max[h]) * value (not divided by
// sum[h]). scores: scratch of heads * round_up_to_block(last + 1) floats. blocks: the block table
// of a paged cache (logical block -> physical block of the areas), nullptr for a contiguous one.
// softcap > 0: each scaled score s becomes softcap * tanh(s / softcap) before the softmax (Gemma-2).
void attend_partial(const float* q, int64_t q_stride, int64_t heads, const float* keys, const float* values,
                    int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out, float* max,
                    float* sum, Isa isa = best_cpu_isa(), const int32_t* blocks = nullptr, float softcap = 0.0f);
void attend_partial(const float* q, int64_t q_stride, int64_t heads, const uint16_t* keys, const uint16_t* values,
                    int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out, float* max,
                    float* sum, Isa isa = best_cpu_isa(), const int32_t* blocks = nullptr, float softcap = 0.0f);

// One head's attention from `parts` partial results over disjoint position ranges into
// result[0, head_dim). Part p is the row out + p * stride * head_dim with max[p * stride] and
// sum[p * stride], so the head's parts can be read in place from attend_partial's outputs (stride =
// heads of the group). A part with sum 0 is empty and skipped.
void merge_partials(const float* out, const float* max, const float* sum, int64_t parts, int64_t stride,
                    int64_t head_dim, float* result);

}  // namespace qrt::cpu_attention
