// load_model: a checkpoint (HF folder or GGUF, through qrt/checkpoint.h) -> ModelWeights.
// Quantized linears stay in their canonical QuantizedWeight form; everything else is read as
// float32. With LoadOptions::quantize, or a torchao quantization_config on a checkpoint that stores
// float weights, plain float linears are quantized here with RTN (int4 / int8) or to FP8 e4m3 per
// channel; lm_head and the embedding stay dense, as those libraries leave them.
#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <optional>

#include "core/parallel_tasks.h"
#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "quant/calibration.h"
#include "quant/rtn.h"

namespace qrt {

// The calibrated quantizers (layerwise_calibrate.cpp) register here: this file is linked into
// every binary that loads models, while a registrar alone in layerwise_calibrate.cpp would be
// dropped by the static-library linker (nothing references that object file).
quant::CalibrationResult run_calibration(const Checkpoint& ck, const quant::CalibrationSettings& s);
namespace {
const quant::CalibratorRegistrar calibrator_registrar(run_calibration);

// How float linears are quantized while loading: --quantize, or what a torchao config asks for.
struct LoadQuantization {
  int bits = 0;               // 4 or 8 (integer RTN); 0 = none
  bool fp8 = false;           // FP8 e4m3, one scale per output row
  int group_size = 128;
  std::string label;          // source_format of the layers: "rtn:int4", "torchao:int4_weight_only"
  std::vector<std::string> skip;   // module names (or prefixes) left dense
  bool active() const { return bits != 0 || fp8; }
};

LoadQuantization load_quantization(const Checkpoint& ck, const LoadOptions& options) {
  LoadQuantization q;
  if (options.quantize == "int4") q.bits = 4;
  else if (options.quantize == "int8") q.bits = 8;
  else if (!options.quantize.empty())
    throw invalid_input(fmt::format("--quantize {}: expected int4 or int8", options.quantize));
  if (q.bits && (options.group_size == 0 || options.group_size < -1))
    throw invalid_input(fmt::format("--group-size {}: expected -1 (per row) or a positive size", options.group_size));
  const QuantizationConfig& qc = ck.quantization();
  if (q.bits) {
    if (!qc.empty())
      throw invalid_input(fmt::format("{}: --quantize {} needs a plain fp16/bf16/f32 checkpoint, this one is "
                                      "already quantized",
                                      ck.path(), options.quantize));
    q.group_size = options.group_size;
    q.label = "rtn:" + options.quantize;
    return q;
  }
  // A torchao config on float weights: quantize as --quantize does (checkpoint_runtime names what
  // runs differently from torchao: layouts, dynamic activations).
  const TorchAoConfig* t = qc.get<TorchAoConfig>();
  if (!t) return q;
  q.label = "torchao:" + t->quant_type;
  q.skip = t->modules_to_not_convert;
  if (t->quant_type == "int4_weight_only") {
    q.bits = 4;
    q.group_size = t->group_size;
  } else if (t->quant_type == "int8_weight_only" || t->quant_type == "int8_dynamic_activation_int8_weight") {
    q.bits = 8;
    q.group_size = -1;
  } else if (t->quant_type == "float8_weight_only" || t->quant_type == "float8_dynamic_activation_float8_weight") {
    q.fp8 = true;
  }
  return q;
}

// modules_to_not_convert entries name a module ("model.layers.1.mlp.down_proj"), a prefix of one
// ("model.layers.1") or its last components ("o_proj").
bool skipped(const LoadQuantization& q, const std::string& name) {
  for (const auto& s : q.skip) {
    const bool suffix = name.size() > s.size() + 1 &&
                        name.compare(name.size() - s.size() - 1, std::string::npos, "." + s) == 0;
    if (name == s || name.rfind(s + ".", 0) == 0 || suffix) return true;
  }
  return false;
}

std::vector<float> load_exact(const Checkpoint& ck, const std::string& name, int64_t expected) {
  if (!ck.has_tensor(name)) throw invalid_input(fmt::format("{}: tensor {} is missing", ck.path(), name));
  std::vector<float> v = ck.load_float(name);
  if (static_cast<int64_t>(v.size()) != expected)
    throw invalid_input(fmt::format("{}: tensor {} has {} elements, the config implies {}", ck.path(), name,
                                    v.size(), expected));
  // One NaN or Inf in a norm, an embedding or a dense weight makes every output NaN (an empty answer
  // or "PPL = nan" much later): refuse it here, naming the tensor.
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw invalid_input(fmt::format("{}: tensor {}: element {} is {}; the model would compute NaN", ck.path(), name,
                                      i, std::isnan(v[i]) ? "NaN" : "Inf"));
  return v;
}

// The spec of the quantized lm_head made from a tied embedding stored as GGUF Q8_0, or nothing
// when the head is stored, untied, not Q8_0, or LoadOptions says to keep it dense. Metadata only:
// load_model() and quantized_linear_specs() (what `qrt plan` lists) both decide through here.
std::optional<LayerSpec> quantized_tied_head_spec(const Checkpoint& ck, const LoadOptions& options) {
  constexpr int64_t G = 32;
  const ModelConfig& c = ck.config();
  if (!options.quantized_tied_head || !options.quantize.empty()) return std::nullopt;
  for (const auto& l : ck.linears())
    if (l.spec.name == "lm_head") return std::nullopt;
  if (!c.tie_word_embeddings && ck.has_tensor("lm_head.weight")) return std::nullopt;
  bool q8 = false;
  for (const auto& t : ck.tensors())
    if (t.name == "model.embed_tokens.weight") q8 = t.storage == "gguf:Q8_0";
  if (!q8 || c.hidden_size <= 0 || c.vocab_size <= 0 || c.hidden_size % G != 0) return std::nullopt;
  LayerSpec s;
  s.name = "lm_head";
  s.in_features = c.hidden_size;
  s.out_features = c.vocab_size;
  s.encoding = WeightEncoding::IntAffine;
  s.bits = 8;
  s.group_size = static_cast<int>(G);
  s.zero_kind = ZeroKind::Symmetric;
  s.source_format = "gguf:Q8_0 (tied embedding)";
  return s;
}

// A tied embedding stored as GGUF Q8_0 holds values q * d exactly (q in [-127, 127], one fp16 d
// per 32 values, the largest |q| = 127). Recovering q and d is lossless and lets the output
// projection run as an 8-bit quantized linear through the planned backend, as llama.cpp does,
// instead of streaming the matrix as floats every decode step. Returns false (and leaves `out`
// alone) when any group is not exactly on such a grid.
bool recover_q8_grid(const std::vector<float>& w, const LayerSpec& spec, QuantizedWeight& out) {
  const int64_t N = spec.out_features, K = spec.in_features, G = spec.group_size;
  if (G <= 0 || K % G != 0 || static_cast<int64_t>(w.size()) != N * K) return false;
  QuantizedWeight q;
  q.spec = spec;
  q.codes.resize(static_cast<size_t>(N * K));
  q.scales.resize(static_cast<size_t>(N * (K / G)));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < K / G; ++g) {
      const float* v = w.data() + n * K + g * G;
      float amax = 0;
      for (int64_t i = 0; i < G; ++i) amax = std::max(amax, std::abs(v[i]));
      const float d = amax / 127.0f;
      q.scales[n * (K / G) + g] = d;
      for (int64_t i = 0; i < G; ++i) {
        const float r = d == 0 ? 0.0f : std::nearbyint(v[i] / d);
        if (r < -127 || r > 127 || r * d != v[i]) return false;
        q.codes[n * K + g * G + i] = static_cast<uint8_t>(static_cast<int>(r) + 128);
      }
    }
  out = std::move(q);
  return true;
}

// The spec of a float linear that load_quantization() turns into a quantized one on load. Metadata
// only: load_model() gives the quantized weight this spec and quantized_linear_specs() lists it, so
// plan and run agree.
LayerSpec on_load_spec(const Checkpoint& ck, const LayerSpec& stored, const LoadQuantization& q) {
  LayerSpec s;
  s.name = stored.name;
  s.in_features = stored.in_features;
  s.out_features = stored.out_features;
  if (q.fp8) {
    s.encoding = WeightEncoding::Fp8E4M3;
    s.bits = 8;
    s.group_size = -1;
    s.scale_block_n = 1;
    s.scale_block_k = static_cast<int>(stored.in_features);
    s.zero_kind = ZeroKind::Symmetric;
  } else {
    s.bits = q.bits;
    s.group_size = q.group_size;
    s.zero_kind = q.bits == 8 ? ZeroKind::Symmetric : ZeroKind::Integer;
  }
  s.source_format = q.label;
  s.has_bias = ck.has_tensor(stored.name + ".bias");
  return s;
}

// The float linear `stored` quantized as `q` says, with the spec on_load_spec() plans.
QuantizedWeight quantize_on_load(const Checkpoint& ck, const LayerSpec& stored, const LoadQuantization& q,
                                 const std::vector<float>& dense) {
  const int64_t out = stored.out_features, in = stored.in_features;
  QuantizedWeight w = q.fp8 ? quant::fp8_quantize(stored.name, dense.data(), out, in, 1, static_cast<int>(in))
                            : quant::rtn_quantize(stored.name, dense.data(), out, in, q.bits, q.group_size,
                                                  /*sym=*/q.bits == 8, quant::RtnStyle::Gptq);
  w.spec = on_load_spec(ck, stored, q);
  return w;
}

// The quantized lm_head of a tied Q8_0 embedding (quantized_tied_head_spec): its exact grid, or
// when some group is not exactly on the grid a Q8_0 writer produces (no |q| = 127), the stored
// values quantized again to the same 8-bit g32 layout, so the head is still the layer `qrt plan`
// listed (the error is within Q8_0's own rounding).
QuantizedWeight tied_head_weight(const std::vector<float>& embedding, const LayerSpec& spec) {
  QuantizedWeight head;
  if (!recover_q8_grid(embedding, spec, head)) {
    head = quant::rtn_quantize("lm_head", embedding.data(), spec.out_features, spec.in_features, 8, spec.group_size,
                               /*sym=*/true, quant::RtnStyle::Gptq);
    head.spec = spec;
    head.spec.source_format += ", re-quantized";
  }
  return head;
}

void add_norm_offset(const ModelConfig& c, std::vector<float>& w) {
  const float offset = norm_weight_offset(c);
  if (offset == 0.0f) return;
  for (float& v : w) v = offset + v;
}

}  // namespace

// The order engines run the linears and plans list them.
std::vector<std::string> decoder_linear_names(const ModelConfig& c, int64_t i) {
  const std::string p = fmt::format("model.layers.{}.", i);
  if (c.architecture == "Phi3ForCausalLM")
    return {p + "self_attn.qkv_proj", p + "self_attn.o_proj", p + "mlp.gate_up_proj", p + "mlp.down_proj"};
  return {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj", p + "self_attn.o_proj",
          p + "mlp.gate_proj",    p + "mlp.up_proj",      p + "mlp.down_proj"};
}

float norm_weight_offset(const ModelConfig& c) { return c.architecture == "Gemma2ForCausalLM" ? 1.0f : 0.0f; }

std::shared_ptr<ModelWeights> load_model(const std::string& path, const LoadOptions& options) {
  return load_model(*open_checkpoint(path), options);
}

std::shared_ptr<ModelWeights> load_model(const Checkpoint& checkpoint, const LoadOptions& options) {
  const Checkpoint* ck = &checkpoint;
  const std::string& path = checkpoint.path();
  const LoadQuantization lq = load_quantization(checkpoint, options);
  auto w = std::make_shared<ModelWeights>();
  w->source = path;
  w->config = ck->config();
  w->generation = ck->generation_defaults();
  const ModelConfig& c = w->config;
  const QuantizationConfig& qc = ck->quantization();
  w->quantization = qc.empty() ? (lq.active() ? "rtn " + options.quantize + " on load" : "none") : qc.describe();
  if (!qc.empty() && lq.active()) w->quantization += " (quantized on load)";
  const auto archs = supported_architectures();
  if (std::find(archs.begin(), archs.end(), c.architecture) == archs.end()) {
    std::string list;
    for (const auto& a : archs) list += (list.empty() ? "" : ", ") + a;
    throw unsupported(fmt::format("{}: architecture '{}' is not supported (qrt runs {})", path, c.architecture, list));
  }

  std::map<std::string, const CheckpointLinear*> linear_by_name;
  for (const auto& l : ck->linears()) linear_by_name[l.spec.name] = &l;

  const int64_t h = c.hidden_size;
  const int64_t total = 2 + c.num_layers * 9 + 1;
  int64_t done = 0;
  std::mutex progress_mutex;   // ticks come from the loading threads
  auto tick = [&](int64_t steps = 1) {
    std::lock_guard<std::mutex> lock(progress_mutex);
    done += steps;
    if (options.progress) options.progress(done, total);
  };

  // How a quantized linear's canonical weight is read again once drop_canonical_weights() freed it:
  // from the same checkpoint file, with the same options (no progress callback).
  LoadOptions reload_options = options;
  reload_options.progress = nullptr;
  auto reload_of = [&](const std::string& name) -> std::function<QuantizedWeight()> {
    return [source = path, name, reload_options] {
      return load_quantized_linear(*open_checkpoint(source), name, reload_options);
    };
  };

  auto load_linear = [&](const std::string& name, int64_t in, int64_t out, bool may_quantize) {
    auto it = linear_by_name.find(name);
    if (it == linear_by_name.end())
      throw invalid_input(fmt::format("{}: linear layer {} is missing", path, name));
    const CheckpointLinear& cl = *it->second;
    LinearWeight lw;
    lw.name = name;
    lw.in_features = cl.spec.in_features;
    lw.out_features = cl.spec.out_features;
    if (lw.in_features != in || lw.out_features != out)
      throw invalid_input(fmt::format("{}: {} has shape [{}, {}], the config implies [{}, {}]", path, name,
                                      lw.out_features, lw.in_features, out, in));
    std::vector<float> bias;
    if (ck->has_tensor(name + ".bias")) bias = load_exact(*ck, name + ".bias", out);
    if (cl.quantized) {
      auto q = std::make_shared<QuantizedWeight>(ck->load_quantized(name));
      if (q->bias.empty() && !bias.empty()) {
        q->bias = std::move(bias);
        q->spec.has_bias = true;
      }
      lw.quantized = std::move(q);
      lw.reload = reload_of(name);
    } else {
      std::vector<float> dense = load_exact(*ck, name + ".weight", in * out);
      if (lq.active() && may_quantize && !skipped(lq, name)) {
        QuantizedWeight q = quantize_on_load(*ck, cl.spec, lq, dense);
        q.bias = std::move(bias);
        lw.quantized = std::make_shared<QuantizedWeight>(std::move(q));
        lw.reload = reload_of(name);
      } else {
        lw.dense = std::move(dense);
        lw.bias = std::move(bias);
      }
    }
    return lw;
  };

  // The big tensors (the embedding, every linear, a stored lm_head) are decoded on several threads
  // (run_parallel_tasks): one at a time, a Llama-2-7B GPTQ folder took ~31 s, most of it unpacking
  // codes and faulting in fresh pages, against 0.3 s to read its 3.9 GB. The norms are read first,
  // in order; the tasks' errors are reported as the sequential order would meet them.
  std::vector<std::function<void()>> tasks;
  tasks.push_back([&] {
    w->embed_tokens = load_exact(*ck, "model.embed_tokens.weight", c.vocab_size * h);
    tick();
  });
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim, inter = c.intermediate_size;
  w->layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto& l = w->layers[i];
    const std::string p = fmt::format("model.layers.{}.", i);
    l.input_norm = load_exact(*ck, p + "input_layernorm.weight", h);
    l.post_attention_norm = load_exact(*ck, p + "post_attention_layernorm.weight", h);
    if (c.architecture == "Gemma2ForCausalLM") {
      l.pre_feedforward_norm = load_exact(*ck, p + "pre_feedforward_layernorm.weight", h);
      l.post_feedforward_norm = load_exact(*ck, p + "post_feedforward_layernorm.weight", h);
    }
    for (auto* norm : {&l.input_norm, &l.post_attention_norm, &l.pre_feedforward_norm, &l.post_feedforward_norm})
      add_norm_offset(c, *norm);
    tick();
    // The names (and order) quantized_linear_specs() lists for `qrt plan`.
    const std::vector<std::string> names = decoder_linear_names(c, i);
    auto add = [&](LinearWeight* slot, const std::string& name, int64_t in, int64_t out, int64_t steps) {
      tasks.push_back([&load_linear, &tick, slot, name, in, out, steps] {
        *slot = load_linear(name, in, out, true);
        tick(steps);
      });
    };
    if (c.architecture == "Phi3ForCausalLM") {
      LinearWeight* slots[4] = {&l.qkv_proj, &l.o_proj, &l.gate_up_proj, &l.down_proj};
      const int64_t ins[4] = {h, qd, h, inter}, outs[4] = {qd + 2 * kvd, h, 2 * inter, h};
      // The progress counts 7 linears a layer: the fused ones count for the two or three they hold.
      const int64_t steps[4] = {3, 1, 2, 1};
      for (size_t j = 0; j < 4; ++j) add(slots[j], names[j], ins[j], outs[j], steps[j]);
    } else {
      LinearWeight* slots[7] = {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj};
      const int64_t ins[7] = {h, h, h, qd, h, h, inter}, outs[7] = {qd, kvd, kvd, h, inter, inter, h};
      for (size_t j = 0; j < 7; ++j) add(slots[j], names[j], ins[j], outs[j], 1);
    }
  }
  w->final_norm = load_exact(*ck, "model.norm.weight", h);
  add_norm_offset(c, w->final_norm);
  tick();
  const bool stored_head = linear_by_name.count("lm_head") > 0;
  const bool dense_head = !stored_head && !c.tie_word_embeddings && ck->has_tensor("lm_head.weight");
  if (stored_head)
    tasks.push_back([&] { w->lm_head = load_linear("lm_head", h, c.vocab_size, false); });
  // A checkpoint that marks lm_head as tied but stores it anyway: use what is stored.
  else if (dense_head)
    tasks.push_back([&] {
      w->lm_head.name = "lm_head";
      w->lm_head.in_features = h;
      w->lm_head.out_features = c.vocab_size;
      w->lm_head.dense = load_exact(*ck, "lm_head.weight", c.vocab_size * h);
    });
  run_parallel_tasks(static_cast<int64_t>(tasks.size()), 0, [&](int64_t i) { tasks[static_cast<size_t>(i)](); });

  // Attention biases are required where the architecture has them (Qwen2): a checkpoint without
  // them would run silently wrong.
  for (const auto& l : w->layers)
    if (c.attention_bias && !l.fused_qkv())
      for (const LinearWeight* lw : {&l.q_proj, &l.k_proj, &l.v_proj}) {
        const bool has = lw->is_quantized() ? !lw->quantized->bias.empty() : !lw->bias.empty();
        if (!has)
          throw invalid_input(fmt::format("{}: tensor {}.bias is missing (config has attention_bias)", path, lw->name));
      }
  if (!stored_head && !dense_head) {
    if (const auto spec = quantized_tied_head_spec(*ck, options)) {
      w->lm_head.name = "lm_head";
      w->lm_head.in_features = h;
      w->lm_head.out_features = c.vocab_size;
      w->lm_head.quantized = std::make_shared<QuantizedWeight>(tied_head_weight(w->embed_tokens, *spec));
      w->lm_head.reload = reload_of("lm_head");
    }
  }
  tick();
  w->validate();
  return w;
}

std::vector<LayerSpec> quantized_linear_specs(const Checkpoint& ck, const LoadOptions& options) {
  std::map<std::string, const CheckpointLinear*> by_name;
  for (const auto& l : ck.linears()) by_name[l.spec.name] = &l;
  const LoadQuantization lq = load_quantization(ck, options);
  std::vector<LayerSpec> out;
  // may_quantize: a float linear quantized on load (--quantize or a torchao config; never lm_head).
  auto add = [&](const std::string& name, bool may_quantize) {
    auto it = by_name.find(name);
    if (it == by_name.end()) return;
    if (it->second->quantized) out.push_back(it->second->spec);
    else if (lq.active() && may_quantize && !skipped(lq, name)) out.push_back(on_load_spec(ck, it->second->spec, lq));
  };
  for (int64_t i = 0; i < ck.config().num_layers; ++i)
    for (const auto& name : decoder_linear_names(ck.config(), i)) add(name, true);
  if (by_name.count("lm_head")) add("lm_head", false);
  else if (const auto head = quantized_tied_head_spec(ck, options)) out.push_back(*head);
  return out;
}

QuantizedWeight load_quantized_linear(const Checkpoint& ck, const std::string& name, const LoadOptions& options) {
  for (const auto& l : ck.linears()) {
    if (l.spec.name != name) continue;
    if (l.quantized) {
      // As load_model() reads it: a bias stored beside the quantized tensors joins the weight.
      QuantizedWeight q = ck.load_quantized(name);
      if (q.bias.empty() && ck.has_tensor(name + ".bias")) {
        q.bias = load_exact(ck, name + ".bias", l.spec.out_features);
        q.spec.has_bias = true;
      }
      return q;
    }
    const LoadQuantization lq = load_quantization(ck, options);
    if (!lq.active() || skipped(lq, name) || name == "lm_head") break;
    const int64_t in = l.spec.in_features, out = l.spec.out_features;
    QuantizedWeight q = quantize_on_load(ck, l.spec, lq, load_exact(ck, name + ".weight", in * out));
    if (q.spec.has_bias) q.bias = load_exact(ck, name + ".bias", out);
    return q;
  }
  if (const auto head = quantized_tied_head_spec(ck, options); head && name == head->name) {
    const ModelConfig& c = ck.config();
    return tied_head_weight(load_exact(ck, "model.embed_tokens.weight", c.vocab_size * c.hidden_size), *head);
  }
  throw invalid_input(fmt::format("{}: {} is not a quantized linear of this checkpoint", ck.path(), name));
}

}  // namespace qrt
