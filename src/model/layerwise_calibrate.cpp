// The calibrated quantizers behind `qrt quantize --method gptq|awq` (quant/calibration.h). The
// calibration tokens (a text file, or sequences sampled from the model itself) run through the
// float model one decoder layer at a time; each linear's input statistics (H = X^T X in double
// over every token, mean |x| per channel) drive either
//   GPTQ: the Hessian-guided rounding of quant/gptq_solver.h (q/k/v share one Hessian, gate/up
//         another), or
//   AWQ:  the activation-aware channel scales of awq_search.h, folded into the RMSNorm weights
//         (q/k/v, gate/up), into v_proj's rows (o_proj; shared across the heads of a GQA group so
//         that one v channel carries one scale) and into up_proj's rows (down_proj), then
//         round-to-nearest in AWQ's grid.
// Sequential, as GPTQ's reference and AutoAWQ run it: a layer's inputs are computed with every
// earlier linear already quantized (o_proj sees the quantized q/k/v, down_proj the quantized
// gate/up, layer L the quantized layers < L), so each stage corrects the error it actually sees.
// AWQ's scales of o_proj and down_proj must be folded before v_proj / up_proj are quantized, so
// their search reads the float activations of the layer, as AutoAWQ does. Calibration windows
// are causal and independent (no KV cache across windows).

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "io/bounded_read.h"
#include "model/awq_search.h"
#include "model/calibration_layer.h"
#include "model/calibration_samples.h"
#include "model/ops.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/thread_pool.h"
#include "quant/calibration.h"
#include "quant/gptq_solver.h"
#include "quant/rtn.h"

namespace qrt {
namespace {

constexpr int64_t kHessianChunk = 1024;                 // rows per float partial of X^T X
constexpr uint64_t kMaxCalibrationTextBytes = uint64_t{64} << 20;  // a calibration text larger than this is refused

// H = X^T X and sum |x| per input channel, accumulated in double over chunks of rows (each chunk's
// X^T X is a float matmul), so the sum over many thousand tokens keeps double precision.
class InputStatistics {
 public:
  explicit InputStatistics(int64_t K) : K_(K), h_(static_cast<size_t>(K * K), 0.0), abs_(static_cast<size_t>(K), 0.0) {}

  void add(const float* X, int64_t T, ThreadPool& pool) {
    std::vector<float> xt, part(static_cast<size_t>(K_ * K_));
    for (int64_t t0 = 0; t0 < T; t0 += kHessianChunk) {
      const int64_t n = std::min(kHessianChunk, T - t0);
      xt.resize(static_cast<size_t>(K_ * n));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t k = 0; k < K_; ++k) {
          const float v = X[(t0 + t) * K_ + k];
          xt[k * n + t] = v;
          abs_[k] += std::fabs(v);
        }
      ops::dense_matmul(xt.data(), K_, n, xt.data(), K_, nullptr, part.data(), K_, &pool);
      for (size_t i = 0; i < part.size(); ++i) h_[i] += part[i];
    }
    rows_ += T;
  }
  const std::vector<double>& hessian() const { return h_; }
  std::vector<float> hessian_float() const { return std::vector<float>(h_.begin(), h_.end()); }
  std::vector<double> mean_abs() const {
    std::vector<double> m(abs_);
    for (double& v : m) v /= static_cast<double>(std::max<int64_t>(1, rows_));
    return m;
  }

 private:
  int64_t K_, rows_ = 0;
  std::vector<double> h_, abs_;
};

// Causal self-attention inside each window of `window` tokens: RoPE on q and k (in place), then
// attn [T][heads * head_dim]. Parallel over (window, KV head) units.
void windowed_attention(std::vector<float>& q, std::vector<float>& k, const std::vector<float>& v, int64_t T,
                        int64_t window, const ModelConfig& c, const ops::RopeTable& rope, std::vector<float>& attn,
                        ThreadPool& pool) {
  const int64_t hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads, qd = nh * hd, kvd = nkv * hd;
  const int64_t n_windows = T / window;
  attn.resize(static_cast<size_t>(T * qd));
  pool.parallel_for(T, [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t % window;
      ops::apply_rope(q.data() + t * qd, nh, hd, rope.half, rope.cos.data() + i * rope.half,
                      rope.sin.data() + i * rope.half);
      ops::apply_rope(k.data() + t * kvd, nkv, hd, rope.half, rope.cos.data() + i * rope.half,
                      rope.sin.data() + i * rope.half);
    }
  });
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool.parallel_for(n_windows * nkv, [&](int, int64_t u0, int64_t u1) {
    std::vector<float> kbuf(static_cast<size_t>(window * hd)), vbuf(kbuf.size()), scores(static_cast<size_t>(window));
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t w = u / nkv, g = u % nkv, base = w * window;
      for (int64_t i = 0; i < window; ++i) {
        std::copy_n(k.data() + (base + i) * kvd + g * hd, hd, kbuf.data() + i * hd);
        std::copy_n(v.data() + (base + i) * kvd + g * hd, hd, vbuf.data() + i * hd);
      }
      for (int64_t hh = g * (nh / nkv); hh < (g + 1) * (nh / nkv); ++hh)
        for (int64_t i = 0; i < window; ++i)
          ops::attend_one(q.data() + (base + i) * qd + hh * hd, kbuf.data(), vbuf.data(), 0, i, hd, scale,
                          scores.data(), attn.data() + (base + i) * qd + hh * hd);
    }
  });
}

// The calibration tokens: n_windows x window ids.
struct CalibrationTokens {
  std::vector<int32_t> ids;
  int64_t window = 0;
  std::string source;
};

CalibrationTokens read_text_tokens(const Checkpoint& ck, const quant::CalibrationSettings& s) {
  const std::string text = io::read_file_bounded(s.text_path, kMaxCalibrationTextBytes, "a calibration text (--calib)");
  const Tokenizer tokenizer = load_tokenizer(ck.path());
  std::vector<int32_t> tokens = tokenizer.encode(text, /*add_special=*/true);
  CalibrationTokens out;
  out.window = std::min<int64_t>(s.window, static_cast<int64_t>(tokens.size()));
  if (out.window < 16)
    throw invalid_input(fmt::format("{}: {} tokens of calibration text, calibration needs at least 16 (thousands "
                                    "are better)",
                                    s.text_path, tokens.size()));
  const int64_t n_windows =
      std::max<int64_t>(1, std::min<int64_t>(s.tokens, static_cast<int64_t>(tokens.size())) / out.window);
  tokens.resize(static_cast<size_t>(n_windows * out.window));
  out.ids = std::move(tokens);
  out.source = fmt::format("{} tokens of {}", out.ids.size(), s.text_path);
  return out;
}

CalibrationTokens sampled_tokens(const Checkpoint& ck, const quant::CalibrationSettings& s, ThreadPool& pool) {
  // The beginning-of-text token the model was trained to start from (config, else tokenizer),
  // else its end-of-text token, which also precedes a fresh document in the training stream.
  int32_t start = static_cast<int32_t>(ck.config().bos_token_id);
  if (start < 0) {
    const Tokenizer tokenizer = load_tokenizer(ck.path());
    start = tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : tokenizer.eos_id();
  }
  if (start < 0)
    throw invalid_input(fmt::format("{}: the tokenizer has neither a beginning- nor an end-of-text token to start "
                                    "sampled calibration text from; give a text with --calib FILE",
                                    ck.path()));
  SampledTextOptions o;
  o.length = std::max<int64_t>(16, std::min(s.window, s.tokens));
  o.sequences = std::max<int64_t>(1, (s.tokens + o.length - 1) / o.length);
  o.temperature = s.temperature;
  o.seed = s.seed;
  CalibrationTokens out;
  out.window = o.length;
  out.ids = sample_calibration_tokens(ck, start, o, pool, [&](int64_t d, int64_t t) {
    if (s.progress) s.progress("sampling", d, t);
  });
  out.source = fmt::format("{} tokens sampled from the model ({} x {} tokens, temperature {}, seed {})",
                           out.ids.size(), o.sequences, o.length, o.temperature, o.seed);
  return out;
}

void scale_columns(DenseLinear& l, const std::vector<float>& s) {
  for (int64_t n = 0; n < l.out; ++n)
    for (int64_t c = 0; c < l.in; ++c) l.w[n * l.in + c] *= s[c];
}

// Rows (output channels) divided by s: the layer's outputs, and so the next linear's inputs, / s.
void unscale_rows(DenseLinear& l, const std::vector<float>& s) {
  for (int64_t n = 0; n < l.out; ++n) {
    const float inv = 1.0f / s[n];
    for (int64_t c = 0; c < l.in; ++c) l.w[n * l.in + c] *= inv;
    if (!l.bias.empty()) l.bias[n] *= inv;
  }
}

class LayerwiseCalibrator {
 public:
  LayerwiseCalibrator(const Checkpoint& ck, const quant::CalibrationSettings& s, ThreadPool& pool)
      : ck_(ck), s_(s), c_(ck.config()), pool_(pool) {
    go_.bits = s.bits;
    go_.group_size = s.group_size;
    go_.sym = s.sym;
    go_.act_order = s.act_order;
    go_.damp_percent = s.damp_percent;
  }

  quant::CalibrationResult run() {
    CalibrationTokens tok = s_.text_path.empty() ? sampled_tokens(ck_, s_, pool_) : read_text_tokens(ck_, s_);
    for (int32_t t : tok.ids)
      if (t < 0 || t >= c_.vocab_size) throw internal_error("calibration token outside the vocabulary");
    T_ = static_cast<int64_t>(tok.ids.size());
    window_ = tok.window;
    rope_.build(ops::rope_inv_freq(c_), window_);
    const int64_t h = c_.hidden_size;
    X_.resize(static_cast<size_t>(T_ * h));
    {
      const std::vector<float> embed = ck_.load_float("model.embed_tokens.weight");
      if (static_cast<int64_t>(embed.size()) != c_.vocab_size * h)
        throw invalid_input(fmt::format("{}: model.embed_tokens.weight has {} values, expected {} x {}", ck_.path(),
                                        embed.size(), c_.vocab_size, h));
      for (int64_t t = 0; t < T_; ++t) std::copy_n(embed.data() + static_cast<int64_t>(tok.ids[t]) * h, h, X_.data() + t * h);
    }
    for (int64_t li = 0; li < c_.num_layers; ++li) {
      DenseDecoderLayer d = load_dense_decoder_layer(ck_, li);
      if (s_.algorithm == quant::CalibrationAlgorithm::Awq)
        awq_layer(li, d);
      else
        gptq_layer(d);
      if (s_.progress) s_.progress("layers", li + 1, c_.num_layers);
    }
    result_.tokens = T_;
    result_.source = tok.source;
    return std::move(result_);
  }

 private:
  InputStatistics statistics(const std::vector<float>& X, int64_t K) {
    InputStatistics st(K);
    st.add(X.data(), T_, pool_);
    return st;
  }

  void keep_gptq(DenseLinear& l, const std::vector<double>& H) {
    QuantizedWeight q = quant::gptq_quantize(l.name, l.w.data(), l.out, l.in, H, go_, &pool_);
    l.w = dequantize_reference(q);  // later stages see the quantized layer
    result_.linears.emplace(l.name, std::move(q));
  }

  void keep_awq(DenseLinear& l) {
    QuantizedWeight q =
        quant::rtn_quantize(l.name, l.w.data(), l.out, l.in, s_.bits, s_.group_size, false, quant::RtnStyle::Awq);
    q.spec.source_format = "awq";
    l.w = dequantize_reference(q);
    result_.linears.emplace(l.name, std::move(q));
  }

  AwqScales search(std::vector<AwqLinearView> group, int64_t K, const InputStatistics& st,
                   const std::vector<double>& mean_abs) {
    return awq_search_scales(group, K, st.hessian_float(), mean_abs, s_.bits, s_.group_size, s_.awq_grid, pool_);
  }

  void attention(DenseDecoderLayer& d, const std::vector<float>& xn) {
    apply_dense(d.q, xn.data(), T_, q_, pool_);
    apply_dense(d.k, xn.data(), T_, k_, pool_);
    apply_dense(d.v, xn.data(), T_, v_, pool_);
    windowed_attention(q_, k_, v_, T_, window_, c_, rope_, attn_, pool_);
  }

  void mlp_input(DenseDecoderLayer& d, const std::vector<float>& xn) {
    apply_dense(d.gate, xn.data(), T_, gate_, pool_);
    apply_dense(d.up, xn.data(), T_, up_, pool_);
    ops::silu_mul(gate_.data(), up_.data(), T_ * c_.intermediate_size);
  }

  void residual(const DenseLinear& l, const std::vector<float>& in) {
    apply_dense(l, in.data(), T_, tmp_, pool_);
    ops::add_inplace(X_.data(), tmp_.data(), T_ * c_.hidden_size);
  }

  void gptq_layer(DenseDecoderLayer& d) {
    const int64_t h = c_.hidden_size;
    const float eps = static_cast<float>(c_.rms_norm_eps);
    xn_.resize(X_.size());
    ops::rms_norm(X_.data(), d.input_norm.data(), xn_.data(), T_, h, eps);
    {
      const InputStatistics st = statistics(xn_, h);
      keep_gptq(d.q, st.hessian());
      keep_gptq(d.k, st.hessian());
      keep_gptq(d.v, st.hessian());
    }
    attention(d, xn_);
    keep_gptq(d.o, statistics(attn_, d.o.in).hessian());
    residual(d.o, attn_);

    ops::rms_norm(X_.data(), d.post_attention_norm.data(), xn_.data(), T_, h, eps);
    {
      const InputStatistics st = statistics(xn_, h);
      keep_gptq(d.gate, st.hessian());
      keep_gptq(d.up, st.hessian());
    }
    mlp_input(d, xn_);
    keep_gptq(d.down, statistics(gate_, d.down.in).hessian());
    residual(d.down, gate_);
  }

  void awq_layer(int64_t li, DenseDecoderLayer& d) {
    const int64_t h = c_.hidden_size, hd = c_.head_dim, nh = c_.num_heads, nkv = c_.num_kv_heads;
    const float eps = static_cast<float>(c_.rms_norm_eps);
    const std::string p = fmt::format("model.layers.{}.", li);
    xn_.resize(X_.size());

    // Attention block. o_proj's scales first (from the float attention output): they are folded
    // into v_proj, which must happen before v_proj is quantized. One v channel feeds the same
    // channel of every query head of its group, so those o_proj columns share one scale.
    ops::rms_norm(X_.data(), d.input_norm.data(), xn_.data(), T_, h, eps);
    const InputStatistics st_qkv = statistics(xn_, h);
    attention(d, xn_);
    {
      const InputStatistics st_o = statistics(attn_, d.o.in);
      std::vector<double> m = st_o.mean_abs(), tied(m.size());
      const int64_t per_group = nh / nkv;
      for (int64_t g = 0; g < nkv; ++g)
        for (int64_t i = 0; i < hd; ++i) {
          double sum = 0;
          for (int64_t hh = g * per_group; hh < (g + 1) * per_group; ++hh) sum += m[hh * hd + i];
          for (int64_t hh = g * per_group; hh < (g + 1) * per_group; ++hh) tied[hh * hd + i] = sum / per_group;
        }
      const AwqScales so = search({{d.o.w.data(), d.o.out}}, d.o.in, st_o, tied);
      std::vector<float> sv(static_cast<size_t>(nkv * hd));
      for (int64_t g = 0; g < nkv; ++g)
        for (int64_t i = 0; i < hd; ++i) sv[g * hd + i] = so.scales[g * per_group * hd + i];
      unscale_rows(d.v, sv);
      scale_columns(d.o, so.scales);
    }
    {
      const AwqScales sq =
          search({{d.q.w.data(), d.q.out}, {d.k.w.data(), d.k.out}, {d.v.w.data(), d.v.out}}, h, st_qkv, st_qkv.mean_abs());
      for (int64_t i = 0; i < h; ++i) d.input_norm[i] /= sq.scales[i];
      scale_columns(d.q, sq.scales);
      scale_columns(d.k, sq.scales);
      scale_columns(d.v, sq.scales);
      result_.float_tensors[p + "input_layernorm.weight"] = d.input_norm;
    }
    keep_awq(d.q);
    keep_awq(d.k);
    keep_awq(d.v);
    ops::rms_norm(X_.data(), d.input_norm.data(), xn_.data(), T_, h, eps);
    attention(d, xn_);
    keep_awq(d.o);
    residual(d.o, attn_);

    // MLP block: down_proj's scales (folded into up_proj's rows) before gate/up are quantized.
    ops::rms_norm(X_.data(), d.post_attention_norm.data(), xn_.data(), T_, h, eps);
    const InputStatistics st_gu = statistics(xn_, h);
    mlp_input(d, xn_);
    {
      const InputStatistics st_d = statistics(gate_, d.down.in);
      const AwqScales sd = search({{d.down.w.data(), d.down.out}}, d.down.in, st_d, st_d.mean_abs());
      unscale_rows(d.up, sd.scales);
      scale_columns(d.down, sd.scales);
    }
    {
      const AwqScales sg = search({{d.gate.w.data(), d.gate.out}, {d.up.w.data(), d.up.out}}, h, st_gu, st_gu.mean_abs());
      for (int64_t i = 0; i < h; ++i) d.post_attention_norm[i] /= sg.scales[i];
      scale_columns(d.gate, sg.scales);
      scale_columns(d.up, sg.scales);
      result_.float_tensors[p + "post_attention_layernorm.weight"] = d.post_attention_norm;
    }
    keep_awq(d.gate);
    keep_awq(d.up);
    ops::rms_norm(X_.data(), d.post_attention_norm.data(), xn_.data(), T_, h, eps);
    mlp_input(d, xn_);
    keep_awq(d.down);
    residual(d.down, gate_);
  }

  const Checkpoint& ck_;
  const quant::CalibrationSettings& s_;
  const ModelConfig& c_;
  ThreadPool& pool_;
  quant::GptqSolverOptions go_;
  quant::CalibrationResult result_;
  int64_t T_ = 0, window_ = 0;
  ops::RopeTable rope_;
  std::vector<float> X_, xn_, q_, k_, v_, attn_, gate_, up_, tmp_;
};

}  // namespace

// Registered from a file every `qrt` binary links (the loader): a registrar alone in this file
// would be dropped by the static-library linker, since nothing else references it.
quant::CalibrationResult run_calibration(const Checkpoint& ck, const quant::CalibrationSettings& s) {
  if (s.tokens < 16) throw invalid_input(fmt::format("calibration tokens {}: at least 16 (thousands are better)", s.tokens));
  if (s.window < 16) throw invalid_input(fmt::format("calibration window {}: at least 16 tokens", s.window));
  const ModelConfig& c = ck.config();
  if (c.architecture == "Gemma2ForCausalLM" || c.architecture == "Phi3ForCausalLM")
    throw unsupported(fmt::format("{}: calibrated quantization runs the Llama block layer by layer, which {} does not "
                                  "match yet; quantize it round-to-nearest with --calib none",
                                  ck.path(), c.architecture));
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    throw invalid_input(fmt::format("{}: {} attention heads, {} KV heads", ck.path(), c.num_heads, c.num_kv_heads));
  ThreadPool pool(s.threads);
  LayerwiseCalibrator calibrator(ck, s, pool);
  return calibrator.run();
}

}  // namespace qrt
