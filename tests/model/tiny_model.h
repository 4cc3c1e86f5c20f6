// A tiny random Llama-family model built in memory, and a naive double-precision forward pass
// over a whole sequence (no KV cache, direct formulas) that the engines are checked against.
#pragma once

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "qrt/model.h"

namespace qrt::testing {

inline ModelConfig tiny_config() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 256;
  return c;
}

inline std::vector<float> rand_vec(std::mt19937& rng, size_t n, float scale, float offset = 0) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = offset + d(rng);
  return v;
}

inline LinearWeight rand_linear(std::mt19937& rng, const std::string& name, int64_t in, int64_t out, bool bias) {
  LinearWeight w;
  w.name = name;
  w.in_features = in;
  w.out_features = out;
  w.dense = rand_vec(rng, in * out, 1.0f / std::sqrt(static_cast<float>(in)) * 1.7f);
  if (bias) w.bias = rand_vec(rng, out, 0.2f);
  return w;
}

inline std::shared_ptr<ModelWeights> tiny_weights(const ModelConfig& c, uint32_t seed, bool untied_head = false) {
  std::mt19937 rng(seed);
  auto w = std::make_shared<ModelWeights>();
  w->config = c;
  w->source = "tiny";
  const int64_t h = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  w->embed_tokens = rand_vec(rng, c.vocab_size * h, 1.0f);
  w->layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto& l = w->layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    l.input_norm = rand_vec(rng, h, 0.3f, 1.0f);
    l.post_attention_norm = rand_vec(rng, h, 0.3f, 1.0f);
    l.q_proj = rand_linear(rng, p + "self_attn.q_proj", h, qd, c.attention_bias);
    l.k_proj = rand_linear(rng, p + "self_attn.k_proj", h, kvd, c.attention_bias);
    l.v_proj = rand_linear(rng, p + "self_attn.v_proj", h, kvd, c.attention_bias);
    l.o_proj = rand_linear(rng, p + "self_attn.o_proj", qd, h, false);
    l.gate_proj = rand_linear(rng, p + "mlp.gate_proj", h, c.intermediate_size, false);
    l.up_proj = rand_linear(rng, p + "mlp.up_proj", h, c.intermediate_size, false);
    l.down_proj = rand_linear(rng, p + "mlp.down_proj", c.intermediate_size, h, false);
  }
  w->final_norm = rand_vec(rng, h, 0.3f, 1.0f);
  if (untied_head) w->lm_head = rand_linear(rng, "lm_head", h, c.vocab_size, false);
  return w;
}

// The float32 [out][in] matrix a linear computes with (dequantized when quantized).
inline std::vector<float> effective_matrix(const LinearWeight& w) {
  return w.is_quantized() ? dequantize_reference(*w.quantized) : w.dense;
}
inline std::vector<float> effective_bias(const LinearWeight& w) {
  return w.is_quantized() ? w.quantized->bias : w.bias;
}

// Naive forward of the whole sequence; returns logits [T][vocab] in double.
// inv_freq: RoPE inverse frequencies (head_dim / 2); window: sliding window (0 = none).
inline std::vector<double> naive_forward(const ModelWeights& w, const std::vector<int32_t>& tokens,
                                         const std::vector<double>& inv_freq, int64_t window = 0) {
  const ModelConfig& c = w.config;
  const int64_t T = static_cast<int64_t>(tokens.size()), H = c.hidden_size, d = c.head_dim;
  const int64_t nh = c.num_heads, nkv = c.num_kv_heads, V = c.vocab_size, I = c.intermediate_size;
  using Mat = std::vector<double>;
  auto norm = [&](const Mat& x, const std::vector<float>& g) {
    Mat y(x.size());
    for (int64_t t = 0; t < T; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < H; ++i) ss += x[t * H + i] * x[t * H + i];
      const double inv = 1 / std::sqrt(ss / H + c.rms_norm_eps);
      for (int64_t i = 0; i < H; ++i) y[t * H + i] = x[t * H + i] * inv * g[i];
    }
    return y;
  };
  auto linear = [&](const Mat& x, const LinearWeight& lw) {
    const auto W = effective_matrix(lw);
    const auto b = effective_bias(lw);
    const int64_t K = lw.in_features, N = lw.out_features;
    Mat y(T * N);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double s = b.empty() ? 0 : b[n];
        for (int64_t k = 0; k < K; ++k) s += x[t * K + k] * W[n * K + k];
        y[t * N + n] = s;
      }
    return y;
  };
  auto rope = [&](Mat& x, int64_t heads) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < d / 2; ++i) {
          double* v = &x[(t * heads + h) * d];
          const double a = t * inv_freq[i];
          const double x1 = v[i], x2 = v[i + d / 2];
          v[i] = x1 * std::cos(a) - x2 * std::sin(a);
          v[i + d / 2] = x2 * std::cos(a) + x1 * std::sin(a);
        }
  };
  Mat x(T * H);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < H; ++i) x[t * H + i] = w.embed_tokens[tokens[t] * H + i];
  for (const auto& l : w.layers) {
    Mat xn = norm(x, l.input_norm);
    Mat q = linear(xn, l.q_proj), k = linear(xn, l.k_proj), v = linear(xn, l.v_proj);
    rope(q, nh);
    rope(k, nkv);
    Mat att(T * nh * d, 0.0);
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / (nh / nkv);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t first = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
        std::vector<double> s;
        double mx = -1e300;
        for (int64_t j = first; j <= t; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += q[(t * nh + h) * d + i] * k[(j * nkv + g) * d + i];
          s.push_back(dot / std::sqrt(double(d)));
          mx = std::max(mx, s.back());
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = first; j <= t; ++j)
          for (int64_t i = 0; i < d; ++i) att[(t * nh + h) * d + i] += s[j - first] / sum * v[(j * nkv + g) * d + i];
      }
    }
    Mat o = linear(att, l.o_proj);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    xn = norm(x, l.post_attention_norm);
    Mat gt = linear(xn, l.gate_proj), up = linear(xn, l.up_proj);
    for (int64_t i = 0; i < T * I; ++i) gt[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
    Mat dn = linear(gt, l.down_proj);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
  }
  Mat xn = norm(x, w.final_norm);
  Mat logits(T * V);
  if (w.lm_head_uses_embedding()) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < V; ++n) {
        double s = 0;
        for (int64_t k = 0; k < H; ++k) s += xn[t * H + k] * w.embed_tokens[n * H + k];
        logits[t * V + n] = s;
      }
  } else {
    logits = linear(xn, w.lm_head);
  }
  return logits;
}

inline std::vector<double> plain_inv_freq(const ModelConfig& c) {
  std::vector<double> f(c.head_dim / 2);
  for (int64_t i = 0; i < c.head_dim / 2; ++i) f[i] = std::pow(c.rope_theta, -2.0 * i / c.head_dim);
  return f;
}

}  // namespace qrt::testing
