// The float model for calibration (see calibration_layer.h).
#include "model/calibration_layer.h"

#include <fmt/format.h>

#include <algorithm>

#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

// A norm's weights as the model multiplies by them.
std::vector<float> load_norm(const Checkpoint& ck, const std::string& tensor) {
  if (!ck.has_tensor(tensor)) throw invalid_input(fmt::format("{}: tensor {} is missing", ck.path(), tensor));
  std::vector<float> w = ck.load_float(tensor);
  const int64_t h = ck.config().hidden_size;
  if (static_cast<int64_t>(w.size()) != h)
    throw invalid_input(fmt::format("{}: {} has {} values, expected hidden_size {}", ck.path(), tensor, w.size(), h));
  const float offset = norm_weight_offset(ck.config());
  for (float& v : w) v += offset;
  return w;
}

}  // namespace

std::vector<DenseLinear*> DenseDecoderLayer::attention_inputs() {
  if (fused_qkv()) return {&qkv};
  return {&q, &k, &v};
}

std::vector<DenseLinear*> DenseDecoderLayer::mlp_inputs() {
  if (fused_gate_up()) return {&gate_up};
  return {&gate, &up};
}

std::pair<DenseLinear*, int64_t> DenseDecoderLayer::v_rows() {
  if (!fused_qkv()) return {&v, 0};
  // qkv's rows: q (o's width), then k and v of equal size.
  return {&qkv, o.in + (qkv.out - o.in) / 2};
}

std::pair<DenseLinear*, int64_t> DenseDecoderLayer::up_rows() {
  if (!fused_gate_up()) return {&up, 0};
  return {&gate_up, down.in};
}

DenseLinear load_dense_linear(const Checkpoint& ck, const std::string& name) {
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
  if (ck.has_tensor(name + ".bias")) {
    l.bias = ck.load_float(name + ".bias");
    if (static_cast<int64_t>(l.bias.size()) != l.out)
      throw invalid_input(fmt::format("{}: {}.bias has {} values, expected {}", ck.path(), name, l.bias.size(), l.out));
  }
  return l;
}

DenseDecoderLayer load_dense_decoder_layer(const Checkpoint& ck, int64_t layer) {
  const ModelConfig& c = ck.config();
  const bool sandwich = model::model_dims(c).sandwich_norms;
  const std::string p = fmt::format("model.layers.{}.", layer);
  DenseDecoderLayer d;
  // With sandwich norms post_attention_layernorm normalizes the attention's output, and the MLP
  // has a norm of its own in front.
  d.input_norm_tensor = p + "input_layernorm.weight";
  d.mlp_norm_tensor = p + (sandwich ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight");
  d.input_norm = load_norm(ck, d.input_norm_tensor);
  d.mlp_norm = load_norm(ck, d.mlp_norm_tensor);
  if (sandwich) {
    d.attention_output_norm = load_norm(ck, p + "post_attention_layernorm.weight");
    d.mlp_output_norm = load_norm(ck, p + "post_feedforward_layernorm.weight");
  }
  const int64_t h = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int64_t inter = c.intermediate_size;
  struct Role {
    const char* suffix;
    DenseLinear* slot;
    int64_t in, out;
  };
  const Role roles[] = {{".q_proj", &d.q, h, qd},          {".k_proj", &d.k, h, kvd},
                        {".v_proj", &d.v, h, kvd},         {".qkv_proj", &d.qkv, h, qd + 2 * kvd},
                        {".o_proj", &d.o, qd, h},          {".gate_proj", &d.gate, h, inter},
                        {".up_proj", &d.up, h, inter},     {".gate_up_proj", &d.gate_up, h, 2 * inter},
                        {".down_proj", &d.down, inter, h}};
  for (const std::string& name : decoder_linear_names(c, layer)) {
    const auto role = std::find_if(std::begin(roles), std::end(roles), [&](const Role& r) {
      const std::string s = r.suffix;
      return name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    });
    if (role == std::end(roles)) throw internal_error("calibration: no role for linear " + name);
    *role->slot = load_dense_linear(ck, name);
    if (role->slot->in != role->in || role->slot->out != role->out)
      throw invalid_input(fmt::format("{}: {} has shape [{}, {}], the config implies [{}, {}]", ck.path(), name,
                                      role->slot->out, role->slot->in, role->out, role->in));
  }
  return d;
}

std::vector<float> load_dense_embedding(const Checkpoint& ck) {
  const ModelConfig& c = ck.config();
  std::vector<float> embed = ck.load_float("model.embed_tokens.weight");
  if (static_cast<int64_t>(embed.size()) != c.vocab_size * c.hidden_size)
    throw invalid_input(fmt::format("{}: model.embed_tokens.weight has {} values, expected {} x {}", ck.path(),
                                    embed.size(), c.vocab_size, c.hidden_size));
  return embed;
}

DenseModel load_dense_model(const Checkpoint& ck) {
  const ModelConfig& c = ck.config();
  DenseModel m;
  m.embed = load_dense_embedding(ck);
  if (ck.has_tensor("lm_head.weight")) {
    m.lm_head = ck.load_float("lm_head.weight");
    if (static_cast<int64_t>(m.lm_head.size()) != c.vocab_size * c.hidden_size)
      throw invalid_input(fmt::format("{}: lm_head.weight has {} values, expected {} x {}", ck.path(),
                                      m.lm_head.size(), c.vocab_size, c.hidden_size));
  }
  m.final_norm = load_norm(ck, "model.norm.weight");
  for (int64_t li = 0; li < c.num_layers; ++li) m.layers.push_back(load_dense_decoder_layer(ck, li));
  return m;
}

void apply_dense(const DenseLinear& l, const float* x, int64_t T, std::vector<float>& y, ThreadPool& pool) {
  y.resize(static_cast<size_t>(T * l.out));
  ops::dense_matmul(x, T, l.in, l.w.data(), l.out, l.bias.empty() ? nullptr : l.bias.data(), y.data(), l.out, &pool);
}

DenseBlock::DenseBlock(const ModelConfig& config, int64_t positions, int64_t sequences, ThreadPool& pool)
    : d_(model::model_dims(config)), positions_(positions), sequences_(sequences), pool_(pool) {
  if (d_.kv_heads <= 0 || d_.heads % d_.kv_heads != 0)
    throw invalid_input(fmt::format("config: {} attention heads, {} KV heads", d_.heads, d_.kv_heads));
  if (positions < 1 || sequences < 1)
    throw internal_error(fmt::format("DenseBlock: {} sequences of {} positions", sequences, positions));
  rope_.build(ops::rope_inv_freq(config, positions), positions, ops::rope_attention_factor(config));
  scores_.assign(static_cast<size_t>(pool.size()), std::vector<float>(static_cast<size_t>(positions)));
}

void DenseBlock::embed(const std::vector<float>& table, const int32_t* ids, int64_t n, std::vector<float>& x) const {
  const int64_t h = d_.hidden;
  x.resize(static_cast<size_t>(n * h));
  for (int64_t t = 0; t < n; ++t) {
    if (ids[t] < 0 || ids[t] >= d_.vocab) throw internal_error(fmt::format("DenseBlock: token id {}", ids[t]));
    std::copy_n(table.data() + static_cast<int64_t>(ids[t]) * h, h, x.data() + t * h);
  }
  if (d_.embed_scale != 1.0f)
    for (float& v : x) v *= d_.embed_scale;
}

void DenseBlock::norm(const std::vector<float>& x, const std::vector<float>& weight, std::vector<float>& y) const {
  const int64_t h = d_.hidden;
  if (static_cast<int64_t>(weight.size()) != h) throw internal_error("DenseBlock: a norm of the wrong size");
  y.resize(x.size());
  ops::rms_norm(x.data(), weight.data(), y.data(), static_cast<int64_t>(x.size()) / h, h, d_.eps);
}

void DenseBlock::attention(int64_t layer, const DenseDecoderLayer& d, const std::vector<float>& xn,
                           const DenseRows& rows, DenseKvCache& cache, std::vector<float>& attn) {
  const int64_t T = rows.count, hd = d_.head_dim, nh = d_.heads, nkv = d_.kv_heads, qd = d_.q_dim, kvd = d_.kv_dim;
  if (T < 1 || rows.per_sequence < 1 || rows.start < 0 || rows.sequence(T - 1) >= sequences_ ||
      rows.start + std::min(rows.per_sequence, T) > positions_)
    throw internal_error(fmt::format("DenseBlock: {} rows of {} from position {} exceed {} sequences of {}", T,
                                     rows.per_sequence, rows.start, sequences_, positions_));
  if (d.fused_qkv()) {
    apply_dense(d.qkv, xn.data(), T, tmp_, pool_);
    q_.resize(static_cast<size_t>(T * qd));
    k_.resize(static_cast<size_t>(T * kvd));
    v_.resize(k_.size());
    for (int64_t t = 0; t < T; ++t) {
      const float* r = tmp_.data() + t * (qd + 2 * kvd);
      std::copy_n(r, qd, q_.data() + t * qd);
      std::copy_n(r + qd, kvd, k_.data() + t * kvd);
      std::copy_n(r + qd + kvd, kvd, v_.data() + t * kvd);
    }
  } else {
    apply_dense(d.q, xn.data(), T, q_, pool_);
    apply_dense(d.k, xn.data(), T, k_, pool_);
    apply_dense(d.v, xn.data(), T, v_, pool_);
  }
  const int64_t per_head = positions_ * hd, per_sequence = nkv * per_head;
  const size_t cache_size = static_cast<size_t>(sequences_ * per_sequence);
  if (cache.k.size() != cache_size) {
    cache.k.assign(cache_size, 0.0f);
    cache.v.assign(cache_size, 0.0f);
  }
  // Every row's key and value first: a row attends to the earlier rows of its sequence.
  pool_.parallel_for(T, [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t p = rows.position(t), s = rows.sequence(t);
      const float* cs = rope_.cos.data() + p * rope_.half;
      const float* sn = rope_.sin.data() + p * rope_.half;
      ops::apply_rope(q_.data() + t * qd, nh, hd, rope_.half, cs, sn);
      ops::apply_rope(k_.data() + t * kvd, nkv, hd, rope_.half, cs, sn);
      for (int64_t g = 0; g < nkv; ++g) {
        const int64_t at = s * per_sequence + g * per_head + p * hd;
        std::copy_n(k_.data() + t * kvd + g * hd, hd, cache.k.data() + at);
        std::copy_n(v_.data() + t * kvd + g * hd, hd, cache.v.data() + at);
      }
    }
  });
  attn.resize(static_cast<size_t>(T * qd));
  const float scale = d_.score_scale();
  const int64_t group = nh / nkv;
  pool_.parallel_for(T * nkv, [&](int slot, int64_t u0, int64_t u1) {
    float* scores = scores_[static_cast<size_t>(slot)].data();
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t t = u / nkv, g = u % nkv, p = rows.position(t);
      const int64_t at = rows.sequence(t) * per_sequence + g * per_head;
      for (int64_t hh = g * group; hh < (g + 1) * group; ++hh)
        ops::attend_one(q_.data() + t * qd + hh * hd, cache.k.data() + at, cache.v.data() + at,
                        d_.first_attended(layer, p), p, hd, scale, scores, attn.data() + t * qd + hh * hd,
                        d_.attn_softcap);
    }
  });
}

void DenseBlock::add_output(const DenseLinear& linear, const std::vector<float>& in,
                            const std::vector<float>& out_norm, std::vector<float>& x) {
  const int64_t h = d_.hidden, T = static_cast<int64_t>(x.size()) / h;
  apply_dense(linear, in.data(), T, tmp_, pool_);
  if (d_.sandwich_norms) norm(tmp_, out_norm, tmp_);
  ops::add_inplace(x.data(), tmp_.data(), T * h);
}

void DenseBlock::mlp_hidden(const DenseDecoderLayer& d, const std::vector<float>& xn, std::vector<float>& act) {
  const int64_t inter = d_.inter, T = static_cast<int64_t>(xn.size()) / d_.hidden;
  if (d.fused_gate_up()) {
    apply_dense(d.gate_up, xn.data(), T, tmp_, pool_);
    act.resize(static_cast<size_t>(T * inter));
    up_.resize(act.size());
    for (int64_t t = 0; t < T; ++t) {
      std::copy_n(tmp_.data() + t * 2 * inter, inter, act.data() + t * inter);
      std::copy_n(tmp_.data() + t * 2 * inter + inter, inter, up_.data() + t * inter);
    }
  } else {
    apply_dense(d.gate, xn.data(), T, act, pool_);
    apply_dense(d.up, xn.data(), T, up_, pool_);
  }
  if (d_.gelu_tanh) ops::gelu_tanh_mul(act.data(), up_.data(), T * inter);
  else ops::silu_mul(act.data(), up_.data(), T * inter);
}

void DenseBlock::layer(int64_t index, DenseDecoderLayer& d, std::vector<float>& x, const DenseRows& rows,
                       DenseKvCache& cache, const DenseLinearInputs& inputs) {
  norm(x, d.input_norm, xn_);
  if (inputs) inputs(d.attention_inputs(), xn_);
  attention(index, d, xn_, rows, cache, attn_);
  if (inputs) inputs({&d.o}, attn_);
  add_output(d.o, attn_, d.attention_output_norm, x);
  norm(x, d.mlp_norm, xn_);
  if (inputs) inputs(d.mlp_inputs(), xn_);
  mlp_hidden(d, xn_, act_);
  if (inputs) inputs({&d.down}, act_);
  add_output(d.down, act_, d.mlp_output_norm, x);
}

void DenseBlock::forward(DenseModel& m, const int32_t* ids, const DenseRows& rows, std::vector<DenseKvCache>& caches,
                         std::vector<float>& logits) {
  caches.resize(m.layers.size());
  embed(m.embed, ids, rows.count, x_);
  for (size_t li = 0; li < m.layers.size(); ++li) layer(static_cast<int64_t>(li), m.layers[li], x_, rows, caches[li]);
  norm(x_, m.final_norm, xn_);
  logits.resize(static_cast<size_t>(rows.count * d_.vocab));
  ops::dense_matmul(xn_.data(), rows.count, d_.hidden, m.head(), d_.vocab, nullptr, logits.data(), d_.vocab, &pool_);
  if (d_.final_softcap > 0) ops::softcap(logits.data(), rows.count * d_.vocab, d_.final_softcap);
}

}  // namespace qrt
