// The Llama-family model over a device's block ops (see llama_model.h).
#include "model/llama_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "model/engine_plan.h"
#include "qrt/error.h"
#include "qrt/sampler.h"
#include "qrt/setup.h"

namespace qrt::model {

bool StepRows::one_sequence_in_order() const {
  if (sequences)
    for (int64_t i = 0; i < count; ++i)
      if (sequences[i] != sequences[0]) return false;
  for (int64_t i = 1; i < count; ++i)
    if (positions[i] != positions[0] + i) return false;
  return true;
}

void BlockOps::stage_greedy(const StepRows&, int32_t*) {
  throw internal_error("stage_greedy: device " + device_name() + " does not pick greedy tokens");
}

// Reached only when a device lists a rule as implemented without these ops (missing_rules).
void BlockOps::gelu_tanh_mul(View, View, View, int64_t) {
  throw internal_error("gelu_tanh_mul: device " + device_name() + " has no GeGLU op");
}

void BlockOps::rmsnorm_proj(int, int64_t) {
  throw internal_error("rmsnorm_proj: device " + device_name() + " has no branch-output norm op");
}

std::vector<std::string> ModelDims::extended_rules() const {
  std::vector<std::string> out;
  if (embed_scale != 1.0f) out.push_back("the embedding scaled by sqrt(hidden_size)");
  if (sandwich_norms) out.push_back("norms of the attention and MLP outputs (post_attention/post_feedforward)");
  if (gelu_tanh) out.push_back("the GeGLU MLP (gelu_pytorch_tanh)");
  if (attn_scale > 0) out.push_back("the attention scale of query_pre_attn_scalar");
  if (attn_softcap > 0) out.push_back("attention logit soft-capping (attn_logit_softcapping)");
  if (final_softcap > 0) out.push_back("final logit soft-capping (final_logit_softcapping)");
  if (!layer_window.empty()) out.push_back("a sliding window on some layers only");
  if (longrope) out.push_back("longrope RoPE scaling (rope_scaling type longrope)");
  if (rotary_dim > 0) out.push_back("partial rotary embeddings (partial_rotary_factor)");
  return out;
}

ModelDims model_dims(const ModelConfig& c) {
  const int64_t hd = c.head_dim;
  ModelDims d{.layers = c.num_layers, .hidden = c.hidden_size, .heads = c.num_heads, .kv_heads = c.num_kv_heads,
              .head_dim = hd, .q_dim = c.num_heads * hd, .kv_dim = c.num_kv_heads * hd,
              .inter = c.intermediate_size, .vocab = c.vocab_size, .eps = static_cast<float>(c.rms_norm_eps),
              .window = attention_window(c), .layer_window = {}};
  // The rules beyond the Llama block, from the config (one place for every device).
  bool layers_differ = false;
  for (int64_t li = 0; li < c.num_layers; ++li) layers_differ |= attention_window(c, li) != d.window;
  if (layers_differ)
    for (int64_t li = 0; li < c.num_layers; ++li) d.layer_window.push_back(attention_window(c, li));
  const bool gemma2 = c.architecture == "Gemma2ForCausalLM";
  // Gemma-2 multiplies the embedding by sqrt(hidden_size) rounded to the activations' dtype.
  if (gemma2) d.embed_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
  d.sandwich_norms = gemma2;
  d.gelu_tanh = c.hidden_act == "gelu_pytorch_tanh";
  if (c.query_pre_attn_scalar > 0) d.attn_scale = static_cast<float>(1.0 / std::sqrt(c.query_pre_attn_scalar));
  d.attn_softcap = static_cast<float>(c.attn_logit_softcapping);
  d.final_softcap = static_cast<float>(c.final_logit_softcapping);
  d.longrope = c.rope_scaling.type == "longrope";
  if (c.rotary_dim > 0 && c.rotary_dim != c.head_dim) d.rotary_dim = c.rotary_dim;
  return d;
}

LlamaModel::LlamaModel(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options, BlockOps& ops)
    : w_(std::move(weights)), options_(options), ops_(ops) {
  if (!w_) throw internal_error("LlamaModel: no weights");
  w_->validate();
  const ModelConfig& c = w_->config;
  dims_ = model_dims(c);
  if (const auto missing = ops_.missing_rules(dims_); !missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : "; ") + m;
    throw unsupported(fmt::format("{} on {}: this device's engine does not implement {} (the CPU engine runs it: "
                                  "--device cpu)",
                                  c.architecture, ops_.device_name(), list));
  }
  options.validate_lengths();
  dims_.capacity = options.max_context();
  dims_.prefill_rows = std::clamp<int64_t>(options.prefill_batch, 1, options.runtime.max_input_length);
  dims_.kv_blocks = options.kv_blocks;
  // A batched step carries decode rows next to a prompt chunk: its buffers hold max_step_rows.
  dims_.max_rows = std::max(dims_.prefill_rows, options.max_step_rows);
  positions_.resize(static_cast<size_t>(dims_.max_rows));

  ops_.on_device([&] {
    // Device limits and memory first, so an absurd max_input_length is one clear error before
    // any table is filled or weight uploaded.
    ops_.reserve(dims_);
    // longrope picks its factors once, by the context this engine holds (see rope_inv_freq): a
    // KV cache never mixes two rotations.
    rope_.build(ops::rope_inv_freq(c, dims_.capacity), dims_.capacity, ops::rope_attention_factor(c));
    ops_.set_rope(rope_);

    // The plan of every quantized linear on this device, then its kernels (with fallback).
    const auto log = options_.log ? options_.log : [](const std::string&) {};
    plan_ = engine_plan(*w_, options_, log);
    // Where the plan fuses a block's q/k/v (gate/up), they run as one linear; a group the data
    // does not allow (different act-order indices) runs as its parts.
    const bool fusing_device = engine_fuses_projections(options_.device, RuntimeConfig{});
    const std::vector<ProjectionGroup> groups = fusing_device ? projection_groups(*w_) : std::vector<ProjectionGroup>{};
    int fused_groups = 0;
    std::string not_fused;  // the first reason a group was left unfused, for the log
    std::map<std::string, const ProjectionGroup*> group_of;  // by the name of the group's first part
    for (const auto& g : groups) group_of[g.parts[0]->name] = &g;
    bool stored_fused = false;  // Phi-3: q/k/v and gate/up stored as one linear each
    auto fuse_or_split = [&](size_t g, ModelLinear& fused, const char* fused_op, std::vector<ModelLinear*> parts,
                             std::vector<const char*> part_ops) {
      const auto& lw = w_->layers[g / 2];
      const LinearWeight& stored = g % 2 == 0 ? lw.qkv_proj : lw.gate_up_proj;
      if (!stored.name.empty()) {
        fused = make_linear(stored, g % 2 == 0 ? "qkv_proj" : "gate_up_proj");
        stored_fused = true;
        return;
      }
      const std::vector<const LinearWeight*> weights =
          g % 2 == 0 ? std::vector<const LinearWeight*>{&lw.q_proj, &lw.k_proj, &lw.v_proj}
                     : std::vector<const LinearWeight*>{&lw.gate_proj, &lw.up_proj};
      if (fusing_device && group_of.count(weights[0]->name)) {
        std::string why;
        fused = make_fused(*group_of.at(weights[0]->name), fused_op, &why);
        if (fused.present()) {
          ++fused_groups;
          return;
        }
        if (not_fused.empty()) not_fused = why;
      }
      for (size_t i = 0; i < parts.size(); ++i) *parts[i] = make_linear(*weights[i], part_ops[i]);
    };
    const auto linears_t0 = std::chrono::steady_clock::now();
    blocks_.resize(w_->layers.size());
    for (size_t li = 0; li < w_->layers.size(); ++li) {
      const auto& lw = w_->layers[li];
      Block& b = blocks_[li];
      fuse_or_split(2 * li, b.qkv, "q/k/v (fused)", {&b.q, &b.k, &b.v}, {"q_proj", "k_proj", "v_proj"});
      b.o = make_linear(lw.o_proj, "o_proj");
      fuse_or_split(2 * li + 1, b.gate_up, "gate/up (fused)", {&b.gate, &b.up}, {"gate_proj", "up_proj"});
      b.down = make_linear(lw.down_proj, "down_proj");
      b.input_norm = ops_.upload_vector("input_layernorm", lw.input_norm);
      b.post_norm = ops_.upload_vector("post_attention_layernorm", lw.post_attention_norm);
      if (dims_.sandwich_norms) {
        b.pre_ff_norm = ops_.upload_vector("pre_feedforward_layernorm", lw.pre_feedforward_norm);
        b.post_ff_norm = ops_.upload_vector("post_feedforward_layernorm", lw.post_feedforward_norm);
      }
    }
    if (fused_groups)
      log(fmt::format("fused projections: {} of {} q/k/v and gate/up groups run as one GEMM each{}", fused_groups,
                      groups.size(), not_fused.empty() ? "" : " (not fused: " + not_fused + ")"));
    else if (!groups.empty() && !not_fused.empty())
      log("fused projections: none (" + not_fused + ")");

    log_prepare_times(std::chrono::duration<double>(std::chrono::steady_clock::now() - linears_t0).count());

    const bool tied = w_->lm_head_uses_embedding();
    ops_.upload_embedding(w_->embed_tokens, tied);
    final_norm_ = ops_.upload_vector("model.norm", w_->final_norm);
    if (!tied) head_ = make_linear(w_->lm_head, "lm_head", /*head=*/true);
    head_.op = "lm_head";
    ops_.allocate(fused_groups > 0 || stored_fused, head_.quantized != nullptr);
    if (const std::string plan = ops_.decode_attention_plan(); !plan.empty()) log(plan);

    // Every M range of every quantized linear runs once before the device captures a step (a
    // kernel that fails its first run falls back now, never inside a capture).
    std::set<int64_t> rows = {1, dims_.max_rows};
    for (const auto& [name, ranges] : kernels())
      for (const auto& k : ranges) rows.insert(k.m_min);
    std::vector<int64_t> warm;
    for (int64_t m : rows)
      if (m <= dims_.max_rows && m <= dims_.capacity) warm.push_back(m);
    ops_.warm_up(warm, [&](int64_t m) { run_step(m, 0, m); });
  });
}

void LlamaModel::log_prepare_times(double blocks_s) const {
  if (!options_.log) return;
  std::map<std::string, std::pair<int, double>> by_backend;  // ranges, seconds
  double prepared = 0;
  for (const ModelLinear* l : linears())
    if (l->quantized)
      for (const auto& [backend, s] : l->quantized->prepare_seconds()) {
        ++by_backend[backend].first;
        by_backend[backend].second += s;
        prepared += s;
      }
  if (by_backend.empty()) return;
  std::string parts;
  for (const auto& [backend, v] : by_backend)
    parts += fmt::format("{}{} {:.1f} s ({} M ranges)", parts.empty() ? "" : ", ", backend, v.second, v.first);
  // The rest of the blocks' time: fusing q/k/v and gate/up weights, norms, re-reading weights.
  options_.log(fmt::format("engine build: the blocks' linears in {:.1f} s, their kernels' prepare {:.1f} s of it: {}",
                           blocks_s, prepared, parts));
}

PrepareContext LlamaModel::prepare_context() const {
  // Kernels see at most one step's rows per call: workspaces are sized for the prefill chunk.
  return PrepareContext(options_.device, dims_.max_rows, options_.log);
}

ModelLinear LlamaModel::make_linear(const LinearWeight& w, const char* op, bool head) {
  ModelLinear l;
  l.name = w.name;
  l.op = op;
  l.k = w.in_features;
  l.n = w.out_features;
  // The engine's kernels keep their own packing: the canonical weight is released after build
  // where it can be re-read (LinearWeight::reload), and re-read for a first-run fallback.
  if (w.is_quantized())
    l.quantized = QuantLinear::build(w.canonical(), *plan_->find(w.quantized->spec.name), prepare_context(),
                                     BackendRegistry::global(), w.reload);
  else
    l.dense = ops_.upload_matrix(w, head);
  return l;
}

ModelLinear LlamaModel::make_fused(const ProjectionGroup& dropped_or_held, const char* op, std::string* why) {
  ModelLinear l;
  // The parts with their data (re-read where drop_canonical_weights() freed it).
  std::vector<LinearWeight> parts;
  for (const LinearWeight* p : dropped_or_held.parts) {
    parts.push_back(*p);
    if (p->is_quantized()) parts.back().quantized = p->canonical();
    parts.back().dropped = false;
  }
  ProjectionGroup group{dropped_or_held.name, {}};
  for (const auto& p : parts) group.parts.push_back(&p);
  *why = fusion_obstacle(group, options_.runtime);
  if (!why->empty()) return l;
  const LinearPlan* plan = plan_->find(group.name);
  if (!plan) {
    *why = group.name + ": not in the plan";
    return l;
  }
  if (!plan->ok()) {
    *why = group.name + ": " + plan->error;
    return l;
  }
  std::shared_ptr<const QuantizedWeight> fused = fuse_weights(group);
  l.name = group.name;
  l.op = op;
  l.k = fused->K();
  l.n = fused->N();
  // Re-read for a fallback by fusing the parts' re-read weights (when every part can be re-read).
  std::function<QuantizedWeight()> reload;
  if (std::all_of(parts.begin(), parts.end(), [](const LinearWeight& p) { return bool(p.reload); })) {
    std::vector<std::function<QuantizedWeight()>> part_reloads;
    for (const auto& p : parts) part_reloads.push_back(p.reload);
    reload = [name = group.name, part_reloads] {
      std::vector<LinearWeight> ws(part_reloads.size());
      ProjectionGroup g{name, {}};
      for (size_t i = 0; i < ws.size(); ++i) {
        ws[i].quantized = std::make_shared<const QuantizedWeight>(part_reloads[i]());
        ws[i].name = ws[i].quantized->spec.name;
        g.parts.push_back(&ws[i]);
      }
      return *fuse_weights(g);
    };
  }
  l.quantized = QuantLinear::build(std::move(fused), *plan, prepare_context(), BackendRegistry::global(), std::move(reload));
  return l;
}

void LlamaModel::check_args(const int32_t* tokens, int64_t n, int64_t pos) const {
  if (n < 1) throw invalid_input("forward: no tokens (n = 0)");
  if (pos < 0 || pos + n > dims_.capacity)
    throw invalid_input(fmt::format("forward: positions [{}, {}) exceed the KV cache of {} positions "
                                    "(max_input_length + max_new_tokens)",
                                    pos, pos + n, dims_.capacity));
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= dims_.vocab)
      throw invalid_input(fmt::format("forward: token id {} at index {} is outside the vocabulary [0, {})", tokens[i],
                                      i, dims_.vocab));
}

void LlamaModel::forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) {
  check_args(tokens, n, pos);
  run_chunks(tokens, n, pos, logits, all_logits, nullptr);
}

int32_t LlamaModel::forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) {
  check_args(tokens, n, pos);
  if (!ops_.picks_greedy_token()) {
    greedy_logits_.resize(static_cast<size_t>(dims_.vocab));
    run_chunks(tokens, n, pos, greedy_logits_.data(), false, nullptr);
    return greedy_token(greedy_logits_.data(), dims_.vocab);
  }
  int32_t token = 0;
  run_chunks(tokens, n, pos, nullptr, false, &token);
  return token;
}

void LlamaModel::run_chunks(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits,
                            int32_t* token) {
  if (dims_.kv_blocks > 0) throw internal_error("forward: a batched engine's KV pool is addressed through step()");
  ops_.on_device([&] {
    for (int64_t start = 0; start < n; start += dims_.prefill_rows) {
      const int64_t m = std::min(dims_.prefill_rows, n - start);
      const bool last = start + m == n;
      // Logits of every row (perplexity), or of the last row of the last chunk.
      const int64_t head_rows = all_logits ? m : (last ? 1 : 0);
      const int64_t head_row0 = all_logits ? 0 : m - 1;
      for (int64_t i = 0; i < m; ++i) positions_[static_cast<size_t>(i)] = pos + start + i;
      StepRows rows;
      rows.count = m;
      rows.tokens = tokens + start;
      rows.positions = positions_.data();
      if (token && last)
        ops_.stage_greedy(rows, token);
      else
        ops_.stage(rows, head_rows && logits ? logits + (all_logits ? start * dims_.vocab : 0) : nullptr, head_rows);
      if (m == 1 && last && !all_logits) ops_.decode_step([&] { run_step(1, 0, 1); });
      else run_step(m, head_row0, head_rows);
      ops_.finish();
    }
  });
}

void LlamaModel::check_step(const BatchStep& step) const {
  if (dims_.kv_blocks <= 0) throw internal_error("step: this engine has no paged KV pool (EngineOptions::kv_blocks)");
  if (step.rows < 1 || step.rows > dims_.max_rows)
    throw invalid_input(fmt::format("step: {} rows, expected 1 to {}", step.rows, dims_.max_rows));
  if (!step.tokens || !step.positions || !step.sequences || !step.tables || step.table_count < 1)
    throw invalid_input("step: tokens, positions, sequences and block tables are required");
  for (int64_t i = 0; i < step.rows; ++i) {
    const int32_t token = step.tokens[i], seq = step.sequences[i];
    const int64_t p = step.positions[i];
    if (token < 0 || token >= dims_.vocab)
      throw invalid_input(fmt::format("step: row {}: token id {} is outside the vocabulary [0, {})", i, token,
                                      dims_.vocab));
    if (p < 0 || p >= dims_.capacity)
      throw invalid_input(fmt::format("step: row {}: position {} is outside [0, {})", i, p, dims_.capacity));
    if (seq < 0 || seq >= step.table_count)
      throw invalid_input(fmt::format("step: row {}: sequence {} is outside the {} block tables", i, seq,
                                      step.table_count));
    const KvBlockTable& t = step.tables[seq];
    const int64_t b = p / kKvBlockPositions;
    if (!t.blocks || b >= t.count)
      throw invalid_input(fmt::format("step: row {}: position {} needs block {} of sequence {}, whose table has {}", i,
                                      p, b, seq, t.count));
    if (t.blocks[b] < 0 || t.blocks[b] >= dims_.kv_blocks)
      throw invalid_input(fmt::format("step: row {}: block {} is outside the pool of {}", i, t.blocks[b],
                                      dims_.kv_blocks));
  }
  if (step.logit_count < 0 || step.logit_count > step.rows || (step.logit_count > 0 && !step.logit_rows))
    throw invalid_input(fmt::format("step: {} logit rows of a {}-row step", step.logit_count, step.rows));
  for (int64_t k = 0; k < step.logit_count; ++k)
    if (step.logit_rows[k] < 0 || step.logit_rows[k] >= step.rows || (k > 0 && step.logit_rows[k] <= step.logit_rows[k - 1]))
      throw invalid_input(fmt::format("step: logit row {} ({}) is not an ascending row of the step", k,
                                      step.logit_rows[k]));
}

void LlamaModel::step(const BatchStep& step, float* logits) {
  check_step(step);
  ops_.on_device([&] {
    StepRows rows;
    rows.count = step.rows;
    rows.tokens = step.tokens;
    rows.positions = step.positions;
    rows.sequences = step.sequences;
    rows.tables = step.tables;
    rows.table_count = step.table_count;
    ops_.stage(rows, step.logit_count ? logits : nullptr, step.logit_count);
    run_step(step.rows, 0, 0);
    if (step.logit_count > 0) {
      // The wanted rows first, then the final norm and the head over them alone (each row's
      // result is the same as in a step of its own).
      ops_.gather_rows(step.logit_rows, step.logit_count);
      ops_.norm_head(!blocks_.empty(), final_norm_, head_, 0, step.logit_count);
    }
    ops_.finish();
  });
}

LlamaModel::Views LlamaModel::views(size_t layer) const {
  const Block& b = blocks_[layer];
  Views v;
  if (b.qkv.present()) {
    const int64_t stride = dims_.q_dim + 2 * dims_.kv_dim;
    v.q = {Buffer::Qkv, 0, stride};
    v.k = {Buffer::Qkv, dims_.q_dim, stride};
    v.v = {Buffer::Qkv, dims_.q_dim + dims_.kv_dim, stride};
  } else {
    v.q = {Buffer::Q, 0, dims_.q_dim};
    v.k = {Buffer::K, 0, dims_.kv_dim};
    v.v = {Buffer::V, 0, dims_.kv_dim};
  }
  if (b.gate_up.present()) {
    v.gate = {Buffer::GateUp, 0, 2 * dims_.inter};
    v.up = {Buffer::GateUp, dims_.inter, 2 * dims_.inter};
  } else {
    v.gate = {Buffer::Gate, 0, dims_.inter};
    v.up = {Buffer::Up, 0, dims_.inter};
  }
  return v;
}

void LlamaModel::run_block(size_t layer, int64_t m) {
  Block& b = blocks_[layer];
  const Views v = views(layer);
  const View normed{Buffer::Normed, 0, dims_.hidden}, attn{Buffer::Attn, 0, dims_.q_dim};
  const View proj{Buffer::Proj, 0, dims_.hidden}, act{Buffer::Gate, 0, dims_.inter};
  // The previous block's output (Proj) joins the residual stream inside this block's first norm
  // (block 0's norm runs with the embedding, run_step).
  if (layer > 0) ops_.add_rmsnorm(true, b.input_norm, 0, m);
  if (b.qkv.present()) {
    ops_.linear(b.qkv, normed, v.q, m);
  } else {
    ops_.linear(b.q, normed, v.q, m);
    ops_.linear(b.k, normed, v.k, m);
    ops_.linear(b.v, normed, v.v, m);
  }
  ops_.rope_store_attention(static_cast<int64_t>(layer), v.q, v.k, v.v, attn, m);
  ops_.linear(b.o, attn, proj, m);
  if (dims_.sandwich_norms) {
    // Gemma-2: the attention output is normalized before it joins the residual stream, and the
    // MLP has a norm of its own.
    ops_.rmsnorm_proj(b.post_norm, m);
    ops_.add_rmsnorm(true, b.pre_ff_norm, 0, m);
  } else {
    ops_.add_rmsnorm(true, b.post_norm, 0, m);
  }
  if (b.gate_up.present()) {
    ops_.linear(b.gate_up, normed, v.gate, m);
  } else {
    ops_.linear(b.gate, normed, v.gate, m);
    ops_.linear(b.up, normed, v.up, m);
  }
  if (dims_.gelu_tanh) ops_.gelu_tanh_mul(v.gate, v.up, act, m);
  else ops_.silu_mul(v.gate, v.up, act, m);
  ops_.linear(b.down, act, proj, m);
  if (dims_.sandwich_norms) ops_.rmsnorm_proj(b.post_ff_norm, m);
}

void LlamaModel::run_step(int64_t m, int64_t head_row0, int64_t head_rows) {
  if (blocks_.empty()) ops_.embed(m);
  else ops_.embed_rmsnorm(blocks_[0].input_norm, m);
  for (size_t li = 0; li < blocks_.size(); ++li) run_block(li, m);
  // The last block's output joins the residual stream in the final norm.
  if (head_rows > 0) ops_.norm_head(!blocks_.empty(), final_norm_, head_, head_row0, head_rows);
  ops_.end_step();
}

std::vector<const ModelLinear*> LlamaModel::linears() const {
  std::vector<const ModelLinear*> out;
  for (const Block& b : blocks_)
    for (const ModelLinear* l : {&b.qkv, &b.q, &b.k, &b.v, &b.o, &b.gate_up, &b.gate, &b.up, &b.down})
      if (l->present()) out.push_back(l);
  out.push_back(&head_);
  return out;
}

std::vector<std::pair<std::string, std::vector<KernelChoice>>> LlamaModel::kernels() const {
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> out;
  for (const ModelLinear* l : linears())
    if (l->quantized) out.emplace_back(l->quantized->layer().name, l->quantized->kernels());
  return out;
}

std::map<std::string, int> LlamaModel::backend_counts() const {
  std::map<std::string, int> counts;
  // Unquantized linears and the tied head count as "dense".
  for (const ModelLinear* l : linears()) count_backends(l->quantized.get(), counts);
  return counts;
}

}  // namespace qrt::model
