// Device kernels of the GPU Llama forward pass (fp16 activations, float32 residual stream and
// norms, fp16 KV cache [kv_head][position][head_dim] per layer). Positions are read from device
// memory (d_pos) so that one captured CUDA graph serves every decode step. Internal CUDA header.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qrt::cuda_model {

// x[i] = embed[tokens[i]] as float32.
void embed(const int32_t* tokens, int64_t m, const __half* table, int64_t hidden, float* x, cudaStream_t s);
// If delta: x += delta (float residual). Then out = x / rms(x) * weight (fp16). One block per row.
void add_rmsnorm(float* x, const __half* delta, const float* weight, __half* out, int64_t m, int64_t hidden, float eps,
                 cudaStream_t s);
// Rotate-half RoPE on q (in place) and k; k, v stored into the layer's cache at pos = *d_pos + row.
// Row i of q starts at q + i * q_stride, of k / v at k / v + i * kv_stride (elements).
void rope_store(__half* q, const __half* k, const __half* v, const float* cos, const float* sin, const int64_t* d_pos,
                __half* kcache, __half* vcache, int64_t m, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                int64_t capacity, int64_t q_stride, int64_t kv_stride, cudaStream_t s);
// Scratch of the split-KV attention used for few query rows (decode): partial results of `splits`
// key ranges per (row, head) and one counter per (row, head), zeroed once (the kernel resets them).
struct DecodeAttentionScratch {
  float* partials = nullptr;  // decode_attention_partial_floats(max_rows, n_heads, splits, head_dim)
  int* counters = nullptr;    // max_rows * n_heads, zero
  int splits = 1;
  int64_t max_rows = 0;
};
int decode_attention_splits(int sms, int64_t n_heads);
size_t decode_attention_partial_floats(int64_t rows, int64_t n_heads, int splits, int64_t head_dim);
// Causal GQA attention of m query rows at positions *d_pos + i over the cache, out fp16 [m][n_heads*hd].
// Row i of q starts at q + i * q_stride. With `scratch` and m <= scratch->max_rows the keys are
// split across blocks (decode).
void attention(const __half* q, const __half* kcache, const __half* vcache, __half* out, const int64_t* d_pos,
               int64_t m, int64_t n_heads, int64_t n_kv, int64_t head_dim, int64_t capacity, int64_t window,
               int64_t q_stride, cudaStream_t s, const DecodeAttentionScratch* scratch = nullptr);
// out[i][j] = silu(gate[i * in_stride + j]) * up[i * in_stride + j], out rows `inter` wide: separate
// buffers (in_stride = inter; out may be gate) or a fused gate/up projection's rows (up = gate +
// inter, in_stride = 2 * inter).
void silu_mul(const __half* gate, const __half* up, int64_t in_stride, __half* out, int64_t m, int64_t inter,
              cudaStream_t s);
void half_to_float(const __half* in, float* out, int64_t n, cudaStream_t s);

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
