// CPU primitives of the forward pass. The dense matmul is the one hot spot here (an unquantized
// lm_head / tied embedding is the largest matrix of small models), so it has an AVX2 path
// (ops_avx2.cpp, chosen at run time through core/cpu_isa.h), and so have SiLU and the softmax, whose
// expf calls the compiler cannot vectorize; everything else is plain loops
// written so the compiler can vectorize them (independent accumulators, no reductions over a
// single scalar).
#include "model/ops.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "core/cpu_isa.h"
#include "model/ops_avx2.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"


namespace qrt::ops {

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * weight[i];
  }
}

std::vector<float> rope_inv_freq(const ModelConfig& config, int64_t context) {
  const int64_t d = config.rotary_dim > 0 ? config.rotary_dim : config.head_dim;
  if (d <= 0 || d % 2 != 0 || d > config.head_dim)
    throw invalid_input(fmt::format("config: the rotary dimension {} must be even, positive and at most head_dim {}", d,
                                    config.head_dim));
  std::vector<float> inv(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) {
    // HF: 1 / base ** (arange(0, d, 2).float() / d), evaluated in float32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(d);
    inv[i] = 1.0f / std::pow(static_cast<float>(config.rope_theta), exponent);
  }
  const auto& rs = config.rope_scaling;
  if (rs.type.empty() || rs.type == "default") return inv;
  if (rs.type == "longrope") {
    // HF: 1 / (ext_factor * base ** (2i / d)) in float32, the factors by the context length.
    const bool long_context = context > rs.original_max_position_embeddings;
    const std::vector<double>& ext = long_context ? rs.long_factor : rs.short_factor;
    if (static_cast<int64_t>(ext.size()) != d / 2)
      throw invalid_input(fmt::format("config: rope_scaling longrope {}: {} values, expected {} (rotary_dim / 2)",
                                      long_context ? "long_factor" : "short_factor", ext.size(), d / 2));
    for (int64_t i = 0; i < d / 2; ++i) {
      const float exponent = static_cast<float>(2 * i) / static_cast<float>(d);
      const float power = std::pow(static_cast<float>(config.rope_theta), exponent);
      inv[static_cast<size_t>(i)] = 1.0f / (static_cast<float>(ext[static_cast<size_t>(i)]) * power);
    }
    return inv;
  }
  if (rs.factor <= 0)
    throw invalid_input(fmt::format("config: rope_scaling.factor {} must be > 0", rs.factor));
  if (rs.type == "linear") {
    for (float& f : inv) f = static_cast<float>(f / rs.factor);
    return inv;
  }
  if (rs.type == "llama3") {
    if (!(rs.high_freq_factor > rs.low_freq_factor) || rs.low_freq_factor <= 0 ||
        rs.original_max_position_embeddings <= 0)
      throw invalid_input(fmt::format(
          "config: rope_scaling llama3 needs high_freq_factor ({}) > low_freq_factor ({}) > 0 and "
          "original_max_position_embeddings ({}) > 0",
          rs.high_freq_factor, rs.low_freq_factor, rs.original_max_position_embeddings));
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    for (float& f : inv) {
      const double freq = f;
      const double wavelen = 2.0 * M_PI / freq;
      double out;
      if (wavelen < high_wavelen) {
        out = freq;  // high frequencies: unchanged
      } else if (wavelen > low_wavelen) {
        out = freq / rs.factor;  // low frequencies: fully scaled
      } else {
        const double smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        out = (1.0 - smooth) * freq / rs.factor + smooth * freq;
      }
      f = static_cast<float>(out);
    }
    return inv;
  }
  throw unsupported(fmt::format("config: rope_scaling type '{}' is not supported (qrt applies none, "
                                "'linear', 'llama3' and 'longrope')",
                                rs.type));
}

float rope_attention_factor(const ModelConfig& config) {
  return config.rope_scaling.type == "longrope" ? static_cast<float>(config.rope_scaling.attention_factor) : 1.0f;
}

void RopeTable::build(const std::vector<float>& inv_freq, int64_t n_positions, float scale) {
  half = static_cast<int64_t>(inv_freq.size());
  positions = n_positions;
  cos.resize(static_cast<size_t>(half * positions));
  sin.resize(cos.size());
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t i = 0; i < half; ++i) {
      // HF multiplies in float32 (position * inv_freq) and takes cos/sin of that float.
      const float angle = static_cast<float>(p) * inv_freq[i];
      // HF multiplies the float32 cos / sin by the attention factor, in float32.
      cos[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle))) * scale;
      sin[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * scale;
    }
}

void apply_rope(float* x, int64_t heads, int64_t head_dim, int64_t half, const float* cos, const float* sin) {
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dense matmul. Output rows of W are taken 4 at a time, input rows 2 at a time: 8 independent
// dot products share every load of W and x, which keeps the FMA units busy at M > 1; a single
// row (M = 1, GEMV, where memory bandwidth is the limit anyway) takes 8 output rows at a time.
// Every path sums a dot product in the same order, so a row's result does not depend on M.

namespace {

inline float load_scalar(const float* p) { return *p; }
inline float load_scalar(const uint16_t* p) { return fp16_to_f32(*p); }

template <class T>
void matmul_rows_scalar(const float* x, int64_t M, int64_t K, const T* W, int64_t n0, int64_t n1,
                        const float* bias, float* y, int64_t ldy) {
  constexpr int L = 8;  // independent partial sums per dot product, so the loop vectorizes
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    for (int64_t n = n0; n < n1; ++n) {
      const T* wr = W + n * K;
      float acc[L] = {};
      int64_t k = 0;
      for (; k + L <= K; k += L)
        for (int j = 0; j < L; ++j) acc[j] += xr[k + j] * load_scalar(wr + k + j);
      float s = 0;
      for (int j = 0; j < L; ++j) s += acc[j];
      for (; k < K; ++k) s += xr[k] * load_scalar(wr + k);
      y[m * ldy + n] = s + (bias ? bias[n] : 0.0f);
    }
  }
}

template <class T>
void rows_dispatch(const float* x, int64_t M, int64_t K, const T* W, int64_t n0, int64_t n1, const float* bias,
                   float* y, int64_t ldy) {
  if (best_cpu_isa() >= CpuIsa::Avx2) {
    // The vector kernel takes output rows four at a time; the last N % 4 run the scalar loop.
    const int64_t n4 = n0 + (n1 - n0) / 4 * 4;
    dense_rows_avx2(x, M, K, W, n0, n4, bias, y, ldy);
    n0 = n4;
  }
  if (n0 < n1) matmul_rows_scalar(x, M, K, W, n0, n1, bias, y, ldy);
}

template <class T>
void matmul_dispatch(const float* x, int64_t M, int64_t K, const T* W, int64_t N, const float* bias, float* y,
                     int64_t ldy, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return;
  // Split N in blocks of 4 rows so every thread runs the 4-row kernel; tiny problems stay on
  // the calling thread (waking workers costs more than the work).
  const int64_t blocks = (N + 3) / 4;
  if (!pool || pool->size() == 1 || M * K * N < 32768) {
    rows_dispatch(x, M, K, W, 0, N, bias, y, ldy);
    return;
  }
  pool->parallel_for(blocks, [&](int, int64_t b0, int64_t b1) {
    rows_dispatch(x, M, K, W, b0 * 4, std::min(N, b1 * 4), bias, y, ldy);
  });
}

}  // namespace

void dense_matmul_rows(const float* x, int64_t M, int64_t K, const float* W, int64_t n0, int64_t n1,
                       const float* bias, float* y, int64_t ldy) {
  rows_dispatch(x, M, K, W, n0, n1, bias, y, ldy);
}

void dense_matmul(const float* x, int64_t M, int64_t K, const float* W, int64_t N, const float* bias,
                  float* y, int64_t ldy, ThreadPool* pool) {
  matmul_dispatch(x, M, K, W, N, bias, y, ldy, pool);
}

void dense_matmul_f16(const float* x, int64_t M, int64_t K, const uint16_t* W, int64_t N, const float* bias,
                      float* y, int64_t ldy, ThreadPool* pool) {
  matmul_dispatch(x, M, K, W, N, bias, y, ldy, pool);
}

void silu_mul(float* gate, const float* up, int64_t n) {
  if (best_cpu_isa() >= CpuIsa::Avx2) {
    silu_mul_avx2(gate, up, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void gelu_tanh_mul(float* gate, const float* up, int64_t n) {
  const float k = std::sqrt(2.0f / 3.14159265358979323846f);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = 0.5f * g * (1.0f + std::tanh(k * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void softcap(float* v, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) v[i] = cap * std::tanh(v[i] / cap);
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

namespace {
inline float dot(const float* a, const float* b, int64_t n) {
  constexpr int L = 8;
  float acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (int j = 0; j < L; ++j) s += acc[j];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

std::pair<float, float> exp_and_sum(float* scores, int64_t first, int64_t last) {
  if (best_cpu_isa() >= CpuIsa::Avx2) return exp_and_sum_avx2(scores, first, last);
  float mx = scores[first];
  for (int64_t j = first + 1; j <= last; ++j) mx = std::max(mx, scores[j]);
  float sum = 0;
  for (int64_t j = first; j <= last; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  return {mx, sum};
}

void attend_one(const float* q, const float* keys, const float* values, int64_t first, int64_t last,
                int64_t head_dim, float scale, float* scores, float* out, float score_cap) {
  for (int64_t j = first; j <= last; ++j) scores[j] = dot(q, keys + j * head_dim, head_dim) * scale;
  if (score_cap > 0) softcap(scores + first, last - first + 1, score_cap);
  const float inv = 1.0f / exp_and_sum(scores, first, last).second;
  for (int64_t j = first; j <= last; ++j) scores[j] *= inv;
  for (int64_t i = 0; i < head_dim; ++i) out[i] = 0;
  for (int64_t j = first; j <= last; ++j) {
    const float w = scores[j];
    const float* v = values + j * head_dim;
    for (int64_t i = 0; i < head_dim; ++i) out[i] += w * v[i];
  }
}

}  // namespace qrt::ops
