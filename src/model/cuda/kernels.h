// Device kernels of the GPU Llama forward pass (fp16 activations, float32 residual stream and
// norms, a KV cache of fp16 or fp8 e4m3 [kv_head][position][head_dim] per layer). Positions are
// read from device memory (d_pos) so that one captured CUDA graph serves every decode step.
// One .cu file per op, each with its kernels and launcher: embed, rmsnorm (also embed_rmsnorm and
// rmsnorm_half), rope_store, attention (per head and split-KV), decode_attention (the fused decode
// step), silu_mul, gelu_tanh_mul, convert (half_to_float), softcap, head_argmax (also argmax),
// sample, hold.
//
// Gemma-2's rules are arguments of the kernels they touch: the embedding scale (embed,
// embed_rmsnorm), the score scale, soft-cap and window of a layer's attention (attention; the
// fused rope_store_decode_attention takes the scale and window, not the soft-cap), and the final
// soft-cap (softcap, over the head's float logits wherever they are written); sampling reads
// logits already capped.
// Internal CUDA header.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qrt::cuda_model {

// One layer's KV cache: keys and values [kv_head][capacity][head_dim] of `elem`.
enum class KvElem : uint8_t { F16, Fp8E4M3 };
inline int kv_elem_bytes(KvElem e) { return e == KvElem::F16 ? 2 : 1; }
struct KvCache {
  void* keys = nullptr;
  void* values = nullptr;
  KvElem elem = KvElem::F16;
};

// x[i] = embed[tokens[i]] as float32, times `scale` (Gemma-2's sqrt(hidden); 1: none) in float32.
void embed(const int32_t* tokens, int64_t m, const __half* table, float scale, int64_t hidden, float* x,
           cudaStream_t s);
// If delta: x += delta (float residual). Then out = x / rms(x) * weight (fp16). One block per row.
void add_rmsnorm(float* x, const __half* delta, const float* weight, __half* out, int64_t m, int64_t hidden, float eps,
                 cudaStream_t s);
// embed() then add_rmsnorm() without delta, in one launch: x[i] = table[tokens[i]] as float32 times
// `scale`, out = x / rms(x) * weight.
void embed_rmsnorm(const int32_t* tokens, const __half* table, float scale, float* x, const float* weight, __half* out,
                   int64_t m, int64_t hidden, float eps, cudaStream_t s);
// x = x / rms(x) * weight in place, fp16 rows of `hidden` (the norm computed in float32): a
// branch's output normalized before it joins the residual stream (Gemma-2's sandwich norms).
void rmsnorm_half(__half* x, const float* weight, int64_t m, int64_t hidden, float eps, cudaStream_t s);
// Rotate-half RoPE on q (in place) and k; k, v stored into the layer's cache at pos = *d_pos + row
// (an fp8 cache rounds the rotated float keys and the fp16 values once, to nearest).
// Row i of q starts at q + i * q_stride, of k / v at k / v + i * kv_stride (elements).
void rope_store(__half* q, const __half* k, const __half* v, const float* cos, const float* sin, const int64_t* d_pos,
                const KvCache& cache, int64_t m, int64_t n_heads, int64_t n_kv, int64_t head_dim, int64_t capacity,
                int64_t q_stride, int64_t kv_stride, cudaStream_t s);
// Scratch of the split-KV attention used for few query rows (decode): partial results of up to
// `splits` key ranges per (row, head) and one counter per (row, head), zeroed once (the kernels
// reset them). `splits` is the per-head kernel's grid depth, `group_splits` the fused grouped
// kernel's (rope_store_decode_attention); the partials hold the larger of the two.
struct DecodeAttentionScratch {
  float* partials = nullptr;  // decode_attention_partial_floats(max_rows, n_heads, max(splits, group_splits), head_dim)
  int* counters = nullptr;    // max_rows * n_heads, zero
  int splits = 1;
  int group_splits = 1;
  int64_t max_rows = 0;
};
int decode_attention_splits(int sms, int64_t n_heads);
size_t decode_attention_partial_floats(int64_t rows, int64_t n_heads, int splits, int64_t head_dim);
// Causal GQA attention of m query rows at positions *d_pos + i over the cache, out fp16 [m][n_heads*hd].
// Row i of q starts at q + i * q_stride. A query at position p attends to [p - window + 1, p]
// (window 0: [0, p]); each score q . k is multiplied by `scale` (ModelDims::score_scale()) and,
// when softcap > 0, becomes softcap * tanh(s / softcap) before the softmax. With `scratch` and
// m <= scratch->max_rows the keys are split across blocks (decode).
void attention(const __half* q, const KvCache& cache, __half* out, const int64_t* d_pos, int64_t m, int64_t n_heads,
               int64_t n_kv, int64_t head_dim, int64_t capacity, int64_t window, float scale, float softcap,
               int64_t q_stride, cudaStream_t s, const DecodeAttentionScratch* scratch = nullptr);

// ---- the batched engine's paged KV pool (paged_kv.cu) ----
// A layer's keys and values [kv_head][pool position][head_dim] of `elem`, pool position = block *
// kPagedBlock + offset (qrt::kKvBlockPositions). Row i of a step is at position pos[i] of its
// sequence, whose block table starts at tables + table_off[i]: position p lives at pool position
// tables[table_off[i] + p / kPagedBlock] * kPagedBlock + p % kPagedBlock. All three arrays are in
// device memory; every entry a row reads (blocks 0 .. pos[i] / kPagedBlock of its table) must be a
// block of the pool (the caller checks, CudaOps::stage).
constexpr int kPagedBlock = 16;
struct PagedRows {
  const int64_t* pos = nullptr;        // [m]
  const int32_t* table_off = nullptr;  // [m]
  const int32_t* tables = nullptr;     // flattened block tables
  int64_t pool_positions = 0;          // blocks of the pool * kPagedBlock
};
// rope_store() at each row's own position: RoPE on q (in place) and k, k and v into the pool slot
// of (row's sequence, pos[i]). Same rounding as rope_store().
void paged_rope_store(__half* q, const __half* k, const __half* v, const float* cos, const float* sin,
                      const PagedRows& rows, const KvCache& cache, int64_t m, int64_t n_heads, int64_t n_kv,
                      int64_t head_dim, int64_t q_stride, int64_t kv_stride, cudaStream_t s);
// Scratch of paged_attention() when it splits rows over positions: partial results of `slots`
// (row, head, split) triples and a counter per (row, head) pair (`pairs` of them), zeroed once
// (the kernel resets them).
struct PagedAttentionScratch {
  float* partials = nullptr;  // slots * (head_dim + 2) floats
  int* counters = nullptr;    // pairs, zero
  int64_t slots = 0, pairs = 0;
};
constexpr int kPagedMaxSplits = 32;
// Splits of each row's positions for m rows of n_heads heads whose longest context is `longest`
// positions: 1 when the (row, head) pairs alone fill the GPU (about two blocks per SM) or the
// context is short; never more than kPagedMaxSplits, never more than the scratch sized by
// paged_attention_scratch_sizes() holds.
int paged_attention_splits(int sms, int64_t m, int64_t n_heads, int64_t longest);
// The scratch that every paged_attention_splits(sms, ...) result fits: `slots` and `pairs`.
void paged_attention_scratch_sizes(int sms, int64_t* slots, int64_t* pairs);
// Causal GQA attention of each row over its own sequence's positions [first, pos[i]] (first =
// pos[i] - window + 1 with a window > 0, else 0), through its block table: scores scale * q . k,
// soft-capped to softcap * tanh(s / softcap) when softcap > 0, softmax, times the values; out fp16
// [m][n_heads * head_dim]. Row i of q starts at q + i * q_stride. Rows of one sequence in one step
// (a prompt chunk) each see the keys the step stored before (paged_rope_store) up to their own
// position. With splits > 1 each row's positions are cut into `splits` ranges, one block each,
// merged by the last to finish (scratch must hold m * n_heads pairs and m * n_heads * splits slots;
// throws qrt::Error otherwise). head_dim even and <= 256.
void paged_attention(const __half* q, const KvCache& cache, __half* out, const PagedRows& rows, int64_t m,
                     int64_t n_heads, int64_t n_kv, int64_t head_dim, int64_t window, float scale, float softcap,
                     int64_t q_stride, int splits, const PagedAttentionScratch& scratch, cudaStream_t s);

// Decode attention of one layer in one launch ("flash-decoding" over GQA groups): rope_store()
// then attention() for m <= scratch.max_rows rows, with the same results (q is not rotated in
// place: it is read, rotated in registers and left as it was). One block per (KV head, row, part of
// the row's keys): the block scores all the query heads of its GQA group against each key / value
// chunk it reads (32 KB of keys and as much of values in shared memory; the first chunk's cached
// keys are copied before the kernel waits for the one before it), so every key and value is read
// once per group. The number of parts adapts on the device to the row's context: one that fits a
// chunk runs as one block per (KV head, row) that writes its result directly; a longer one is
// split into parts of at least 64 keys over up to scratch.group_splits blocks whose partial
// softmax results the last of them merges. Keys of
// this step's own rows come rotated from k / v (never from the cache other blocks are writing);
// the block holding row i's own position writes that key and value into the cache.
// Needs rows of 16-byte multiples (head_dim % 8 == 0 for fp16, % 16 for fp8), head_dim <= 256 and
// n_heads / n_kv <= 8 (decode_attention_fusable).
// Its window and score scale are attention()'s; it has no soft-cap (a model with one runs the
// pair it replaces).
bool decode_attention_fusable(int64_t n_heads, int64_t n_kv, int64_t head_dim, KvElem elem);
int decode_attention_group_splits(int sms, int64_t n_kv);
void rope_store_decode_attention(const __half* q, const __half* k, const __half* v, int64_t q_stride,
                                 int64_t kv_stride, const float* cos, const float* sin, const int64_t* d_pos,
                                 const KvCache& cache, __half* out, int64_t m, int64_t n_heads, int64_t n_kv,
                                 int64_t head_dim, int64_t capacity, int64_t window, float scale,
                                 const DecodeAttentionScratch& scratch, cudaStream_t s);
// Decode attention of one layer in one launch for short contexts: rope_store() then attention() for
// m rows (any window, score scale and soft-cap), with the same results. One block per (query head,
// row) over the row's whole context, with no partial results or merge: the cached keys and values
// of its first chunk (up to 512 keys in 64 KB of each, less where the device has less shared
// memory) are copied into shared memory before the kernel waits for the one before it, so after
// that wait it costs one round trip for q / k / v and the arithmetic. Longer contexts walk chunk
// after chunk in the same block: correct, but the split kernels are faster there (the caller picks
// by position). q is read, not rotated in place; keys of this step's own rows come rotated from k /
// v, and the first query head of each group writes its row's key and value into the cache. Needs
// rows of 16-byte multiples (head_dim % 8 == 0 for fp16, % 16 for fp8) and head_dim <= 256
// (short_attention_fits); out rows n_heads * head_dim apart.
bool short_attention_fits(int64_t n_heads, int64_t n_kv, int64_t head_dim, KvElem elem);
void rope_store_short_attention(const __half* q, const __half* k, const __half* v, int64_t q_stride, int64_t kv_stride,
                                const float* cos, const float* sin, const int64_t* d_pos, const KvCache& cache,
                                __half* out, int64_t m, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                                int64_t capacity, int64_t window, float scale, float softcap, cudaStream_t s);
// out[i][j] = silu(gate[i * in_stride + j]) * up[i * in_stride + j], out rows `inter` wide: separate
// buffers (in_stride = inter; out may be gate) or a fused gate/up projection's rows (up = gate +
// inter, in_stride = 2 * inter).
void silu_mul(const __half* gate, const __half* up, int64_t in_stride, __half* out, int64_t m, int64_t inter,
              cudaStream_t s);
// The same with GELU's tanh form (Gemma-2's GeGLU): out = gelu_tanh(gate) * up, computed in
// float32 and rounded to fp16 once, as silu_mul.
void gelu_tanh_mul(const __half* gate, const __half* up, int64_t in_stride, __half* out, int64_t m, int64_t inter,
                   cudaStream_t s);
void half_to_float(const __half* in, float* out, int64_t n, cudaStream_t s);
// v[i] = cap * tanh(v[i] / cap) over n floats, in place (Gemma-2's final logit soft-cap; cap > 0).
void softcap(float* v, int64_t n, float cap, cudaStream_t s);

// The final norm, the head and the greedy choice of one row in one launch, for a dense fp16 head
// W [vocab][hidden] (the tied embedding or an fp16 lm_head): xn = rmsnorm(x (+ delta)) * weight
// rounded to fp16 as add_rmsnorm writes it (x itself is not updated), logits[v] = xn . W[v] in
// float32 (when logits is not null), and the index of the largest logit (the lowest among equal
// ones, NaN as -infinity: the host Sampler's greedy rule) into *token. With `advance` (on-device
// generation) the token is also fed back: tokens[0] = token, out_tokens[*step] = token, then
// *step and *d_pos advance. The blocks' partial choices go through `scratch`; the last block to
// finish picks the token (and resets the counter). Needs hidden % 8 == 0 and hidden <= 8192.
struct HeadArgmaxScratch {
  float* values = nullptr;   // head_argmax_blocks(sms) floats
  int32_t* indices = nullptr;  // as many
  int* counter = nullptr;    // one, zero
};
bool head_argmax_fusable(int64_t hidden);
int head_argmax_blocks(int sms);
// A final soft-cap (monotonic) leaves the choice as it is; the caller caps the logits after
// (softcap()), so that this kernel's registers stay those of the plain head.
void rmsnorm_head_argmax(const float* x, const __half* delta, const float* weight, float eps, const __half* W,
                         int64_t vocab, int64_t hidden, float* logits, int32_t* token, const HeadArgmaxScratch& scratch,
                         int sms, bool advance, int32_t* tokens, int32_t* out_tokens, int64_t* d_pos, int64_t* step,
                         cudaStream_t s);
// *token = the greedy choice over logits[vocab] (the rule above). One block.
void argmax(const float* logits, int64_t vocab, int32_t* token, cudaStream_t s);

// Keeps the stream busy for about `microseconds` (a profiler enqueues a whole step behind it, so
// the step then runs back to back as a graph would, not at the pace of host launches).
void hold_stream(uint32_t microseconds, cudaStream_t s);

// Sampling state on the device (read by the captured decode graph).
struct SamplingState {
  float temperature;   // <= 0: greedy
  int32_t top_k;       // 0: off
  float top_p;         // >= 1: off
  uint64_t seed;
};
// Picks the next token from logits[vocab] (greedy or temperature + top-k + top-p), writes it to
// *token and out_tokens[*step], then advances *d_pos and *step. One block.
void sample_and_advance(const float* logits, int64_t vocab, const SamplingState* state, int32_t* token,
                        int32_t* out_tokens, int64_t* d_pos, int64_t* step, cudaStream_t s);

}  // namespace qrt::cuda_model
