// CPU primitives of the Llama-family forward pass (float32 activations): RMSNorm, RoPE tables
// (plain, linear, llama3 and longrope scaling), dense matmul (blocked, AVX2/FMA when the CPU has it),
// SwiGLU, and causal grouped-query attention over a KV cache. Internal to src/model; tested
// against direct formulas in tests/model.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "qrt/checkpoint.h"

namespace qrt {
class ThreadPool;
}

namespace qrt::ops {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, rows of `dim`. x and y may alias.
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);

// Inverse frequencies of RoPE (rotary_dim / 2 of them) after rope_scaling, in float32 as
// Hugging Face computes them, for an engine that holds `context` positions per sequence: longrope
// takes its long factors when context > original_max_position_embeddings, its short ones
// otherwise. Throws qrt::Error for a scaling type qrt does not apply.
std::vector<float> rope_inv_freq(const ModelConfig& config, int64_t context = 0);
// The factor cos and sin are multiplied by (longrope's attention_factor; 1 otherwise).
float rope_attention_factor(const ModelConfig& config);

// cos / sin of position * inv_freq[i], times `scale`, [positions][rotary_dim / 2].
struct RopeTable {
  int64_t half = 0;
  int64_t positions = 0;
  std::vector<float> cos, sin;
  void build(const std::vector<float>& inv_freq, int64_t positions, float scale = 1.0f);
};

// Rotate-half RoPE (HF convention) on `heads` consecutive head vectors of `head_dim` at one
// position, over the first 2 * half dimensions of each (half = RopeTable::half; the rest pass
// through, as with a partial_rotary_factor):
// x[i] , x[i + half]  ->  x[i] cos - x[i + half] sin , x[i + half] cos + x[i] sin.
void apply_rope(float* x, int64_t heads, int64_t head_dim, int64_t half, const float* cos, const float* sin);

// y[M][N] = x[M][K] * W[N][K]^T (+ bias[N]); multi-threaded over N when a pool is given.
// ldy = row stride of y (>= N).
void dense_matmul(const float* x, int64_t M, int64_t K, const float* W, int64_t N, const float* bias,
                  float* y, int64_t ldy, ThreadPool* pool);
// Same with W stored as IEEE fp16 (half the bytes to stream; converted to float in registers).
void dense_matmul_f16(const float* x, int64_t M, int64_t K, const uint16_t* W, int64_t N, const float* bias,
                      float* y, int64_t ldy, ThreadPool* pool);
// The single-thread kernel over output rows [n0, n1) (exposed for tests).
void dense_matmul_rows(const float* x, int64_t M, int64_t K, const float* W, int64_t n0, int64_t n1,
                       const float* bias, float* y, int64_t ldy);

// gate[i] = silu(gate[i]) * up[i]
void silu_mul(float* gate, const float* up, int64_t n);
// gate[i] = gelu_tanh(gate[i]) * up[i], GELU's tanh approximation:
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
void gelu_tanh_mul(float* gate, const float* up, int64_t n);
// v[i] = cap * tanh(v[i] / cap) (soft-capping; cap > 0).
void softcap(float* v, int64_t n, float cap);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

// The unnormalised half of a softmax: scores[first..last] become exp(score - max) in place;
// returns (max, sum of the exponentials). attend_one divides by the sum; the CPU engine's
// partial attention (cpu_attention.h) keeps both to merge parts later.
std::pair<float, float> exp_and_sum(float* scores, int64_t first, int64_t last);

// One attention head for one query: softmax(q . K[first..last] * scale) . V[first..last], each
// scaled score s soft-capped to score_cap * tanh(s / score_cap) first when score_cap > 0 (Gemma-2).
// keys / values: rows of head_dim, row j at keys + j * head_dim. scores: scratch of last + 1.
// The plain reference (calibration, tests); the engine runs cpu_attention.h's kernels.
void attend_one(const float* q, const float* keys, const float* values, int64_t first, int64_t last,
                int64_t head_dim, float scale, float* scores, float* out, float score_cap = 0.0f);

}  // namespace qrt::ops
