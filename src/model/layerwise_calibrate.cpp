// The GPTQ calibrator behind `qrt quantize --method gptq --calib TEXT` (quant/calibration.h):
// runs the float model over calibration text one decoder layer at a time ("true sequential", as
// AutoGPTQ/GPTQModel do), collects each linear's input Hessian H = X^T X, quantizes the layer's
// linears with the GPTQ solver (q/k/v share one Hessian, gate/up another), and feeds the next
// stage with the outputs of the already-quantized weights, so later layers see the error of
// earlier ones. Calibration windows are causal and independent (no KV cache across windows).
#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "model/ops.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/thread_pool.h"
#include "quant/calibration.h"
#include "quant/gptq_solver.h"

namespace qrt {
namespace {

constexpr int64_t kWindow = 256;     // tokens per calibration window
constexpr int64_t kMaxTokens = 1024; // calibration tokens used at most (keeps CPU time in check)

struct DenseLinear {
  std::string name;
  int64_t in = 0, out = 0;
  std::vector<float> w, bias;
};

DenseLinear load_linear(const Checkpoint& ck, const std::string& name) {
  DenseLinear l;
  l.name = name;
  for (const auto& cl : ck.linears())
    if (cl.spec.name == name) {
      l.in = cl.spec.in_features;
      l.out = cl.spec.out_features;
    }
  if (l.in == 0) throw invalid_input(fmt::format("{}: linear {} is missing", ck.path(), name));
  l.w = ck.load_float(name + ".weight");
  if (static_cast<int64_t>(l.w.size()) != l.in * l.out)
    throw invalid_input(fmt::format("{}: {} has {} values, expected {} x {}", ck.path(), name, l.w.size(), l.out, l.in));
  if (ck.has_tensor(name + ".bias")) l.bias = ck.load_float(name + ".bias");
  return l;
}

// H = X^T X for X [T][K] (float accumulation through the blocked matmul, returned in double).
std::vector<double> hessian(const std::vector<float>& X, int64_t T, int64_t K, ThreadPool& pool) {
  std::vector<float> Xt(static_cast<size_t>(K * T));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) Xt[k * T + t] = X[t * K + k];
  std::vector<float> H(static_cast<size_t>(K * K));
  ops::dense_matmul(Xt.data(), K, T, Xt.data(), K, nullptr, H.data(), K, &pool);
  return std::vector<double>(H.begin(), H.end());
}

void apply(const DenseLinear& l, const std::vector<float>& x, int64_t T, std::vector<float>& y, ThreadPool& pool) {
  y.resize(static_cast<size_t>(T * l.out));
  ops::dense_matmul(x.data(), T, l.in, l.w.data(), l.out, l.bias.empty() ? nullptr : l.bias.data(), y.data(), l.out,
                    &pool);
}

std::map<std::string, QuantizedWeight> calibrate_gptq(const Checkpoint& ck, const quant::CalibrationSettings& s) {
  const ModelConfig& c = ck.config();
  std::ifstream in(s.calib_text_path, std::ios::binary);
  if (!in) throw io_error(fmt::format("{}: cannot open the calibration text", s.calib_text_path));
  std::stringstream ss;
  ss << in.rdbuf();
  const Tokenizer tokenizer = load_tokenizer(ck.path());
  std::vector<int32_t> tokens = tokenizer.encode(ss.str(), /*add_special=*/true);
  const int64_t window = std::min<int64_t>(kWindow, static_cast<int64_t>(tokens.size()));
  if (window < 16)
    throw invalid_input(fmt::format("{}: {} tokens of calibration text, GPTQ needs at least 16 (a few thousand "
                                    "is better)",
                                    s.calib_text_path, tokens.size()));
  const int64_t n_windows = std::max<int64_t>(1, std::min<int64_t>(kMaxTokens, tokens.size()) / window);
  const int64_t T = n_windows * window;
  for (int32_t t : tokens)
    if (t < 0 || t >= c.vocab_size) throw internal_error("calibration token outside the vocabulary");

  quant::GptqSolverOptions go;
  go.bits = s.bits;
  go.group_size = s.group_size;
  go.sym = s.sym;
  go.act_order = s.desc_act;
  go.damp_percent = s.damp_percent;

  ThreadPool pool(0);
  const int64_t h = c.hidden_size, hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads;
  const int64_t qd = nh * hd, kvd = nkv * hd;
  const float eps = static_cast<float>(c.rms_norm_eps);
  ops::RopeTable rope;
  rope.build(ops::rope_inv_freq(c), window);

  std::vector<float> X(static_cast<size_t>(T * h));
  {
    const std::vector<float> embed = ck.load_float("model.embed_tokens.weight");
    for (int64_t t = 0; t < T; ++t) std::copy_n(embed.data() + tokens[t] * h, h, X.data() + t * h);
  }

  std::map<std::string, QuantizedWeight> out;
  auto quantize = [&](DenseLinear& l, const std::vector<double>& H) {
    QuantizedWeight q = quant::gptq_quantize(l.name, l.w.data(), l.out, l.in, H, go);
    l.w = dequantize_reference(q);  // later stages see the quantized layer
    out.emplace(l.name, std::move(q));
  };

  std::vector<float> xn(X.size()), q, k, v, attn(static_cast<size_t>(T * qd)), tmp, gate, up;
  std::vector<float> kbuf(static_cast<size_t>(window * hd)), vbuf(kbuf.size());
  std::vector<float> scores(static_cast<size_t>(window));
  for (int64_t li = 0; li < c.num_layers; ++li) {
    const std::string p = fmt::format("model.layers.{}.", li);
    const std::vector<float> in_norm = ck.load_float(p + "input_layernorm.weight");
    const std::vector<float> post_norm = ck.load_float(p + "post_attention_layernorm.weight");
    DenseLinear lq = load_linear(ck, p + "self_attn.q_proj"), lk = load_linear(ck, p + "self_attn.k_proj"),
                lv = load_linear(ck, p + "self_attn.v_proj"), lo = load_linear(ck, p + "self_attn.o_proj"),
                lg = load_linear(ck, p + "mlp.gate_proj"), lu = load_linear(ck, p + "mlp.up_proj"),
                ld = load_linear(ck, p + "mlp.down_proj");

    // Attention block.
    ops::rms_norm(X.data(), in_norm.data(), xn.data(), T, h, eps);
    {
      const auto H = hessian(xn, T, h, pool);
      quantize(lq, H);
      quantize(lk, H);
      quantize(lv, H);
    }
    apply(lq, xn, T, q, pool);
    apply(lk, xn, T, k, pool);
    apply(lv, xn, T, v, pool);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (int64_t w = 0; w < n_windows; ++w) {
      const int64_t t0 = w * window;
      for (int64_t i = 0; i < window; ++i) {
        const float* cs = rope.cos.data() + i * rope.half;
        const float* sn = rope.sin.data() + i * rope.half;
        ops::apply_rope(q.data() + (t0 + i) * qd, nh, hd, cs, sn);
        ops::apply_rope(k.data() + (t0 + i) * kvd, nkv, hd, cs, sn);
      }
      for (int64_t g = 0; g < nkv; ++g) {
        for (int64_t i = 0; i < window; ++i) {
          std::copy_n(k.data() + (t0 + i) * kvd + g * hd, hd, kbuf.data() + i * hd);
          std::copy_n(v.data() + (t0 + i) * kvd + g * hd, hd, vbuf.data() + i * hd);
        }
        for (int64_t hh = g * (nh / nkv); hh < (g + 1) * (nh / nkv); ++hh)
          for (int64_t i = 0; i < window; ++i)
            ops::attend_one(q.data() + (t0 + i) * qd + hh * hd, kbuf.data(), vbuf.data(), 0, i, hd, scale,
                            scores.data(), attn.data() + (t0 + i) * qd + hh * hd);
      }
    }
    quantize(lo, hessian(attn, T, qd, pool));
    apply(lo, attn, T, tmp, pool);
    ops::add_inplace(X.data(), tmp.data(), T * h);

    // MLP block.
    ops::rms_norm(X.data(), post_norm.data(), xn.data(), T, h, eps);
    {
      const auto H = hessian(xn, T, h, pool);
      quantize(lg, H);
      quantize(lu, H);
    }
    apply(lg, xn, T, gate, pool);
    apply(lu, xn, T, up, pool);
    ops::silu_mul(gate.data(), up.data(), T * c.intermediate_size);
    quantize(ld, hessian(gate, T, c.intermediate_size, pool));
    apply(ld, gate, T, tmp, pool);
    ops::add_inplace(X.data(), tmp.data(), T * h);
    if (s.progress) s.progress(li + 1, c.num_layers);
  }
  return out;
}

}  // namespace

// Registered from a file every `qrt` binary links (the loader): a registrar alone in this file
// would be dropped by the static-library linker, since nothing else references it.
std::map<std::string, QuantizedWeight> run_gptq_calibration(const Checkpoint& ck, const quant::CalibrationSettings& s) {
  return calibrate_gptq(ck, s);
}

}  // namespace qrt
