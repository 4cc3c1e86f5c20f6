// The calibrated quantizers behind `qrt quantize --method gptq|awq` (quant/calibration.h). The
// calibration tokens (a text file, or sequences sampled from the model itself) run through the
// float model (calibration_layer.h: the architecture's own block, Gemma-2's and Phi-3's included)
// one decoder layer at a time; each linear's input statistics (H = X^T X in double over every
// token, mean |x| per channel) drive either
//   GPTQ: the Hessian-guided rounding of quant/gptq_solver.h (q/k/v share one Hessian, gate/up
//         another; Phi-3's stored qkv_proj and gate_up_proj are one linear each), or
//   AWQ:  the activation-aware channel scales of awq_search.h, folded into the RMSNorm weights in
//         front of q/k/v and gate/up (as the folder stores them: Gemma-2's 1 + w), into v's rows
//         (o_proj; shared across the heads of a GQA group so that one v channel carries one
//         scale) and into up's rows (down_proj), then round-to-nearest in AWQ's grid.
// Sequential, as GPTQ's reference and AutoAWQ run it: a layer's inputs are computed with every
// earlier linear already quantized (o_proj sees the quantized q/k/v, down_proj the quantized
// gate/up, layer L the quantized layers < L), so each stage corrects the error it actually sees.
// AWQ's scales of o_proj and down_proj must be folded before v_proj / up_proj are quantized, so
// their search reads the float activations of the layer, as AutoAWQ does. Calibration windows
// are causal and independent (no KV cache across windows).

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <memory>

#include "io/bounded_read.h"
#include "model/awq_search.h"
#include "model/calibration_layer.h"
#include "model/calibration_samples.h"
#include "model/ops.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/model.h"
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

// Rows [first, first + s.size()) (output channels) divided by s: those outputs, and so the next
// linear's inputs, / s.
void unscale_rows(DenseLinear& l, int64_t first, const std::vector<float>& s) {
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    const int64_t n = first + i;
    const float inv = 1.0f / s[i];
    for (int64_t c = 0; c < l.in; ++c) l.w[n * l.in + c] *= inv;
    if (!l.bias.empty()) l.bias[n] *= inv;
  }
}

// A value as the written folder holds it (the float tensors are stored in `dtype`).
float as_stored(float v, DType dtype) {
  if (dtype == DType::F16) return fp16_to_f32(f32_to_fp16(v));
  if (dtype == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  return v;
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
    rows_ = DenseRows{T_, tok.window, 0};
    block_ = std::make_unique<DenseBlock>(c_, tok.window, T_ / tok.window, pool_);
    block_->embed(load_dense_embedding(ck_), tok.ids.data(), T_, X_);
    for (int64_t li = 0; li < c_.num_layers; ++li) {
      DenseDecoderLayer d = load_dense_decoder_layer(ck_, li);
      if (s_.algorithm == quant::CalibrationAlgorithm::Awq)
        awq_layer(li, d);
      else
        gptq_layer(li, d);
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

  AwqScales search(const std::vector<DenseLinear*>& group, int64_t K, const InputStatistics& st,
                   const std::vector<double>& mean_abs) {
    std::vector<AwqLinearView> views;
    for (const DenseLinear* l : group) views.push_back({l->w.data(), l->out});
    return awq_search_scales(views, K, st.hessian_float(), mean_abs, s_.bits, s_.group_size, s_.awq_grid, pool_);
  }

  // Every layer's linears read its inputs in the order of the float block; GPTQ quantizes each
  // group from the inputs it sees, before the group runs.
  void gptq_layer(int64_t li, DenseDecoderLayer& d) {
    block_->layer(li, d, X_, rows_, cache_, [&](const std::vector<DenseLinear*>& group, const std::vector<float>& x) {
      const InputStatistics st = statistics(x, group.front()->in);
      for (DenseLinear* l : group) keep_gptq(*l, st.hessian());
    });
  }

  // 1/s into the norm in front of `group` and s into the group's columns. The folder stores the
  // norm less the model's offset (Gemma-2: the factor is 1 + w) in the dtype of its float
  // tensors, so each channel's scale is taken back from the factor the written value gives:
  // stored + offset = factor / s', and s' multiplies the columns, which keeps the fold exact. A
  // channel whose factor / s does not survive the rounding (it becomes 0, changes sign or
  // overflows) keeps scale 1, and the log says how many did.
  void fold_into_norm(std::vector<float>& norm, const std::string& tensor, std::vector<float> s,
                      const std::vector<DenseLinear*>& group) {
    const float offset = norm_weight_offset(c_);
    std::vector<float> stored(norm.size());
    int64_t kept = 0;
    for (size_t i = 0; i < norm.size(); ++i) {
      const float factor = norm[i];
      const float written = as_stored(factor / s[i] - offset, s_.dtype);
      const float folded = written + offset;
      if (factor != 0.0f && std::isfinite(folded) && folded != 0.0f && (folded > 0) == (factor > 0)) {
        s[i] = factor / folded;
        stored[i] = written;
      } else {
        if (factor != 0.0f) ++kept;
        s[i] = 1.0f;
        stored[i] = factor - offset;
      }
      norm[i] = stored[i] + offset;
    }
    if (kept > 0 && s_.log)
      s_.log(fmt::format("AWQ: {}: {} of {} channels keep scale 1 (factor / scale is not representable in {})",
                         tensor, kept, norm.size(), dtype_name(s_.dtype)));
    for (DenseLinear* l : group) scale_columns(*l, s);
    result_.float_tensors[tensor] = std::move(stored);
  }

  void awq_layer(int64_t li, DenseDecoderLayer& d) {
    const int64_t h = c_.hidden_size, hd = c_.head_dim, nh = c_.num_heads, nkv = c_.num_kv_heads;
    DenseBlock& b = *block_;

    // Attention block. o_proj's scales first (from the float attention output): they are folded
    // into v_proj's rows, which must happen before v_proj is quantized. The attention output is a
    // weighted sum of v rows (soft-capping and the score scale touch the weights only), so the
    // fold is exact. One v channel feeds the same channel of every query head of its group, so
    // those o_proj columns share one scale. Gemma-2's norm of the attention output acts on
    // o_proj's output, not its input: it takes no scale.
    b.norm(X_, d.input_norm, xn_);
    const InputStatistics st_qkv = statistics(xn_, h);
    b.attention(li, d, xn_, rows_, cache_, attn_);
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
      const AwqScales so = search({&d.o}, d.o.in, st_o, tied);
      std::vector<float> sv(static_cast<size_t>(nkv * hd));
      for (int64_t g = 0; g < nkv; ++g)
        for (int64_t i = 0; i < hd; ++i) sv[g * hd + i] = so.scales[g * per_group * hd + i];
      const auto [v, first] = d.v_rows();
      unscale_rows(*v, first, sv);
      scale_columns(d.o, so.scales);
    }
    const std::vector<DenseLinear*> qkv = d.attention_inputs();
    fold_into_norm(d.input_norm, d.input_norm_tensor, search(qkv, h, st_qkv, st_qkv.mean_abs()).scales, qkv);
    for (DenseLinear* l : qkv) keep_awq(*l);
    b.norm(X_, d.input_norm, xn_);
    b.attention(li, d, xn_, rows_, cache_, attn_);
    keep_awq(d.o);
    b.add_output(d.o, attn_, d.attention_output_norm, X_);

    // MLP block: down_proj's scales (folded into up_proj's rows: the activation multiplies up's
    // output, so the fold is exact for SiLU and GeGLU alike) before gate/up are quantized.
    b.norm(X_, d.mlp_norm, xn_);
    const InputStatistics st_gu = statistics(xn_, h);
    b.mlp_hidden(d, xn_, act_);
    {
      const InputStatistics st_d = statistics(act_, d.down.in);
      const AwqScales sd = search({&d.down}, d.down.in, st_d, st_d.mean_abs());
      const auto [up, first] = d.up_rows();
      unscale_rows(*up, first, sd.scales);
      scale_columns(d.down, sd.scales);
    }
    const std::vector<DenseLinear*> gate_up = d.mlp_inputs();
    fold_into_norm(d.mlp_norm, d.mlp_norm_tensor, search(gate_up, h, st_gu, st_gu.mean_abs()).scales, gate_up);
    for (DenseLinear* l : gate_up) keep_awq(*l);
    b.norm(X_, d.mlp_norm, xn_);
    b.mlp_hidden(d, xn_, act_);
    keep_awq(d.down);
    b.add_output(d.down, act_, d.mlp_output_norm, X_);
  }

  const Checkpoint& ck_;
  const quant::CalibrationSettings& s_;
  const ModelConfig& c_;
  ThreadPool& pool_;
  quant::GptqSolverOptions go_;
  quant::CalibrationResult result_;
  int64_t T_ = 0;
  DenseRows rows_;
  std::unique_ptr<DenseBlock> block_;
  DenseKvCache cache_;  // one layer's keys and values at a time
  std::vector<float> X_, xn_, attn_, act_;
};

}  // namespace

// Registered from a file every `qrt` binary links (the loader): a registrar alone in this file
// would be dropped by the static-library linker, since nothing else references it.
quant::CalibrationResult run_calibration(const Checkpoint& ck, const quant::CalibrationSettings& s) {
  if (s.tokens < 16) throw invalid_input(fmt::format("calibration tokens {}: at least 16 (thousands are better)", s.tokens));
  if (s.window < 16) throw invalid_input(fmt::format("calibration window {}: at least 16 tokens", s.window));
  const ModelConfig& c = ck.config();
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    throw invalid_input(fmt::format("{}: {} attention heads, {} KV heads", ck.path(), c.num_heads, c.num_kv_heads));
  // Windows no longer than the context the model was made for (tiny test models have less than
  // the default window).
  quant::CalibrationSettings settings = s;
  if (c.max_position_embeddings >= 16) settings.window = std::min(settings.window, c.max_position_embeddings);
  ThreadPool pool(s.threads);
  LayerwiseCalibrator calibrator(ck, settings, pool);
  return calibrator.run();
}

}  // namespace qrt
