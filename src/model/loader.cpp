// load_model: a checkpoint (HF folder or GGUF, through qrt/checkpoint.h) -> ModelWeights.
// Quantized linears stay in their canonical QuantizedWeight form; everything else is read as
// float32. With LoadOptions::quantize, plain float linears are quantized here with RTN
// (the torchao int4_weight_only / bitsandbytes load_in_8bit use case); lm_head and the
// embedding stay dense, as those libraries leave them.
#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>

#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "quant/calibration.h"
#include "quant/rtn.h"

namespace qrt {

// The GPTQ calibrator (gptq_calibrate.cpp) registers here: this file is linked into every binary
// that loads models, while a registrar alone in gptq_calibrate.cpp would be dropped by the
// static-library linker (nothing references that object file).
std::map<std::string, QuantizedWeight> run_gptq_calibration(const Checkpoint& ck, const quant::CalibrationSettings& s);
namespace {
const quant::GptqCalibratorRegistrar gptq_registrar(run_gptq_calibration);

std::vector<float> load_exact(const Checkpoint& ck, const std::string& name, int64_t expected) {
  if (!ck.has_tensor(name)) throw invalid_input(fmt::format("{}: tensor {} is missing", ck.path(), name));
  std::vector<float> v = ck.load_float(name);
  if (static_cast<int64_t>(v.size()) != expected)
    throw invalid_input(fmt::format("{}: tensor {} has {} elements, the config implies {}", ck.path(), name,
                                    v.size(), expected));
  return v;
}

// A tied embedding stored as GGUF Q8_0 holds values q * d exactly (q in [-127, 127], one fp16 d
// per 32 values, the largest |q| = 127). Recovering q and d is lossless and lets the output
// projection run as an 8-bit quantized linear through the planned backend, as llama.cpp does,
// instead of streaming the matrix as floats every decode step. Returns false (and leaves `out`
// alone) when any group is not exactly on such a grid.
bool recover_q8_grid(const std::vector<float>& w, int64_t N, int64_t K, QuantizedWeight& out) {
  constexpr int64_t G = 32;
  if (K % G != 0 || static_cast<int64_t>(w.size()) != N * K) return false;
  QuantizedWeight q;
  q.spec.name = "lm_head";
  q.spec.in_features = K;
  q.spec.out_features = N;
  q.spec.bits = 8;
  q.spec.group_size = static_cast<int>(G);
  q.spec.zero_kind = ZeroKind::Symmetric;
  q.spec.source_format = "gguf:Q8_0 (tied embedding)";
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

}  // namespace

std::shared_ptr<ModelWeights> load_model(const std::string& path, const LoadOptions& options) {
  int bits = 0;
  if (options.quantize == "int4") bits = 4;
  else if (options.quantize == "int8") bits = 8;
  else if (!options.quantize.empty())
    throw invalid_input(fmt::format("--quantize {}: expected int4 or int8", options.quantize));
  if (bits && (options.group_size == 0 || options.group_size < -1))
    throw invalid_input(fmt::format("--group-size {}: expected -1 (per row) or a positive size", options.group_size));

  std::unique_ptr<Checkpoint> ck = open_checkpoint(path);
  auto w = std::make_shared<ModelWeights>();
  w->source = path;
  w->config = ck->config();
  w->generation = ck->generation_defaults();
  const ModelConfig& c = w->config;
  const QuantizationConfig& qc = ck->quantization();
  w->quantization = qc.empty() ? (bits ? "rtn " + options.quantize + " on load" : "none") : qc.describe();
  if (const auto* g = qc.get<GptqConfig>()) w->checkpoint_backend = g->backend;
  if (const auto* a = qc.get<AwqConfig>()) w->checkpoint_backend = a->backend;
  const auto archs = supported_architectures();
  if (std::find(archs.begin(), archs.end(), c.architecture) == archs.end()) {
    std::string list;
    for (const auto& a : archs) list += (list.empty() ? "" : ", ") + a;
    throw unsupported(fmt::format("{}: architecture '{}' is not supported (qrt runs {})", path, c.architecture, list));
  }
  if (bits && !qc.empty())
    throw invalid_input(fmt::format("{}: --quantize {} needs a plain fp16/bf16/f32 checkpoint, this one is "
                                    "already quantized",
                                    path, options.quantize));

  std::map<std::string, const CheckpointLinear*> linear_by_name;
  for (const auto& l : ck->linears()) linear_by_name[l.spec.name] = &l;

  const int64_t h = c.hidden_size;
  const int64_t total = 2 + c.num_layers * 9 + 1;
  int64_t done = 0;
  auto tick = [&] {
    ++done;
    if (options.progress) options.progress(done, total);
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
    } else {
      std::vector<float> dense = load_exact(*ck, name + ".weight", in * out);
      if (bits && may_quantize) {
        QuantizedWeight q = quant::rtn_quantize(name, dense.data(), out, in, bits, options.group_size,
                                                /*sym=*/bits == 8, quant::RtnStyle::Gptq);
        q.spec.source_format = "rtn:" + options.quantize;
        if (!bias.empty()) {
          q.bias = std::move(bias);
          q.spec.has_bias = true;
        }
        lw.quantized = std::make_shared<QuantizedWeight>(std::move(q));
      } else {
        lw.dense = std::move(dense);
        lw.bias = std::move(bias);
      }
    }
    return lw;
  };

  w->embed_tokens = load_exact(*ck, "model.embed_tokens.weight", c.vocab_size * h);
  tick();
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim, inter = c.intermediate_size;
  w->layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto& l = w->layers[i];
    const std::string p = fmt::format("model.layers.{}.", i);
    l.input_norm = load_exact(*ck, p + "input_layernorm.weight", h);
    l.post_attention_norm = load_exact(*ck, p + "post_attention_layernorm.weight", h);
    tick();
    l.q_proj = load_linear(p + "self_attn.q_proj", h, qd, true);
    tick();
    l.k_proj = load_linear(p + "self_attn.k_proj", h, kvd, true);
    tick();
    l.v_proj = load_linear(p + "self_attn.v_proj", h, kvd, true);
    tick();
    l.o_proj = load_linear(p + "self_attn.o_proj", qd, h, true);
    tick();
    l.gate_proj = load_linear(p + "mlp.gate_proj", h, inter, true);
    tick();
    l.up_proj = load_linear(p + "mlp.up_proj", h, inter, true);
    tick();
    l.down_proj = load_linear(p + "mlp.down_proj", inter, h, true);
    tick();
    // Attention biases are required where the architecture has them (Qwen2): a checkpoint without
    // them would run silently wrong.
    if (c.attention_bias)
      for (const LinearWeight* lw : {&l.q_proj, &l.k_proj, &l.v_proj}) {
        const bool has = lw->is_quantized() ? !lw->quantized->bias.empty() : !lw->bias.empty();
        if (!has)
          throw invalid_input(fmt::format("{}: tensor {}.bias is missing (config has attention_bias)", path, lw->name));
      }
  }
  w->final_norm = load_exact(*ck, "model.norm.weight", h);
  tick();
  if (linear_by_name.count("lm_head")) {
    w->lm_head = load_linear("lm_head", h, c.vocab_size, false);
    // A checkpoint that marks lm_head as tied but stores it anyway: use what is stored.
  } else if (!c.tie_word_embeddings && ck->has_tensor("lm_head.weight")) {
    w->lm_head.name = "lm_head";
    w->lm_head.in_features = h;
    w->lm_head.out_features = c.vocab_size;
    w->lm_head.dense = load_exact(*ck, "lm_head.weight", c.vocab_size * h);
  } else if (options.quantized_tied_head) {
    bool q8 = false;
    for (const auto& t : ck->tensors())
      if (t.name == "model.embed_tokens.weight") q8 = t.storage == "gguf:Q8_0";
    QuantizedWeight head;
    if (q8 && recover_q8_grid(w->embed_tokens, c.vocab_size, h, head)) {
      w->lm_head.name = "lm_head";
      w->lm_head.in_features = h;
      w->lm_head.out_features = c.vocab_size;
      w->lm_head.quantized = std::make_shared<QuantizedWeight>(std::move(head));
    }
  }
  tick();
  w->validate();
  return w;
}

}  // namespace qrt
