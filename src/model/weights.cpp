// ModelWeights helpers: the list of linears / quantized layer specs engines plan from, size checks,
// and make_engine() (dispatch by device kind).
#include <algorithm>
#include <cstdlib>
#include <utility>
#include <filesystem>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <fmt/format.h>

#include "qrt/batch_engine.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/sampler.h"

namespace qrt {

std::vector<const LinearWeight*> DecoderLayerWeights::linears() const {
  std::vector<const LinearWeight*> out;
  out.reserve(7);
  if (fused_qkv()) {
    out.push_back(&qkv_proj);
  } else {
    out.push_back(&q_proj);
    out.push_back(&k_proj);
    out.push_back(&v_proj);
  }
  out.push_back(&o_proj);
  if (fused_gate_up()) {
    out.push_back(&gate_up_proj);
  } else {
    out.push_back(&gate_proj);
    out.push_back(&up_proj);
  }
  out.push_back(&down_proj);
  return out;
}

std::vector<LinearWeight*> DecoderLayerWeights::linears() {
  std::vector<LinearWeight*> out;
  for (const LinearWeight* w : std::as_const(*this).linears()) out.push_back(const_cast<LinearWeight*>(w));
  return out;
}

std::vector<const LinearWeight*> ModelWeights::linears() const {
  std::vector<const LinearWeight*> out;
  out.reserve(layers.size() * 7 + 1);
  for (const auto& l : layers)
    for (const LinearWeight* w : l.linears()) out.push_back(w);
  if (!lm_head_uses_embedding()) out.push_back(&lm_head);
  return out;
}

std::vector<LayerSpec> ModelWeights::quantized_layer_specs() const {
  std::vector<LayerSpec> specs;
  for (const LinearWeight* w : linears())
    if (w->is_quantized()) specs.push_back(w->quantized->spec);
  return specs;
}

std::shared_ptr<const QuantizedWeight> LinearWeight::canonical() const {
  if (!dropped) return quantized;
  return std::make_shared<const QuantizedWeight>(reload());
}

int64_t drop_canonical_weights(ModelWeights& weights) {
  int64_t freed = 0;
  auto drop = [&](LinearWeight& l) {
    if (!l.quantized || !l.reload || l.dropped) return;
    const QuantizedWeight& q = *l.quantized;
    freed += static_cast<int64_t>(q.codes.size() + 4 * (q.scales.size() + q.zeros.size() + q.g_idx.size() + q.bias.size()));
    auto spec_only = std::make_shared<QuantizedWeight>();
    spec_only->spec = q.spec;
    l.quantized = std::move(spec_only);
    l.dropped = true;
  };
  for (auto& l : weights.layers)
    for (LinearWeight* w : l.linears()) drop(*w);
  drop(weights.lm_head);
#if defined(__GLIBC__)
  // The freed blocks sit in malloc's heap between live ones; hand their pages back to the system.
  if (freed > 0) malloc_trim(0);
#endif
  return freed;
}

namespace {
void check_size(const std::vector<float>& v, int64_t expected, const std::string& name) {
  if (static_cast<int64_t>(v.size()) != expected)
    throw invalid_input(fmt::format("tensor {}: has {} elements, config says {}", name, v.size(), expected));
}

void check_linear(const LinearWeight& w, int64_t in, int64_t out) {
  if (w.in_features != in || w.out_features != out)
    throw invalid_input(fmt::format("tensor {}: shape [{}, {}], config says [{}, {}]", w.name,
                                    w.out_features, w.in_features, out, in));
  if (w.is_quantized()) {
    if (w.quantized->K() != in || w.quantized->N() != out)
      throw invalid_input(fmt::format("tensor {}: quantized shape [{}, {}], config says [{}, {}]", w.name,
                                      w.quantized->N(), w.quantized->K(), out, in));
  } else {
    check_size(w.dense, in * out, w.name + ".weight");
  }
  if (!w.bias.empty()) check_size(w.bias, out, w.name + ".bias");
}
}  // namespace

void ModelWeights::validate() const {
  const ModelConfig& c = config;
  const std::string where = source.empty() ? "model" : source;
  auto need_positive = [&](int64_t v, const char* field) {
    if (v <= 0) throw invalid_input(fmt::format("{}: config field {} = {} must be > 0", where, field, v));
  };
  need_positive(c.vocab_size, "vocab_size");
  need_positive(c.hidden_size, "hidden_size");
  need_positive(c.intermediate_size, "intermediate_size");
  need_positive(c.num_layers, "num_hidden_layers");
  need_positive(c.num_heads, "num_attention_heads");
  need_positive(c.num_kv_heads, "num_key_value_heads");
  need_positive(c.head_dim, "head_dim");
  if (c.num_heads % c.num_kv_heads != 0)
    throw invalid_input(fmt::format("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                                    where, c.num_heads, c.num_kv_heads));
  if (c.head_dim % 2 != 0)
    throw invalid_input(fmt::format("{}: head_dim {} must be even for RoPE", where, c.head_dim));
  if (static_cast<int64_t>(layers.size()) != c.num_layers)
    throw invalid_input(fmt::format("{}: {} decoder layers loaded, config says {}", where, layers.size(), c.num_layers));
  const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const int64_t inter = c.intermediate_size;
  check_size(embed_tokens, c.vocab_size * h, "model.embed_tokens.weight");
  check_size(final_norm, h, "model.norm.weight");
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    const std::string p = fmt::format("model.layers.{}.", i);
    check_size(l.input_norm, h, p + "input_layernorm.weight");
    check_size(l.post_attention_norm, h, p + "post_attention_layernorm.weight");
    if (c.architecture == "Gemma2ForCausalLM") {
      check_size(l.pre_feedforward_norm, h, p + "pre_feedforward_layernorm.weight");
      check_size(l.post_feedforward_norm, h, p + "post_feedforward_layernorm.weight");
    } else if (!l.pre_feedforward_norm.empty() || !l.post_feedforward_norm.empty()) {
      throw invalid_input(fmt::format("{}: layer {} has Gemma-2's feed-forward norms, but the architecture is {}", where,
                                      i, c.architecture));
    }
    if (l.fused_qkv()) {
      check_linear(l.qkv_proj, h, q + 2 * kv);
    } else {
      check_linear(l.q_proj, h, q);
      check_linear(l.k_proj, h, kv);
      check_linear(l.v_proj, h, kv);
    }
    check_linear(l.o_proj, q, h);
    if (l.fused_gate_up()) {
      check_linear(l.gate_up_proj, h, 2 * inter);
    } else {
      check_linear(l.gate_proj, h, inter);
      check_linear(l.up_proj, h, inter);
    }
    check_linear(l.down_proj, inter, h);
  }
  if (!lm_head_uses_embedding()) check_linear(lm_head, h, c.vocab_size);
}

std::string default_model_path() {
  std::string dir;
  if (const char* c = std::getenv("QRT_CACHE_DIR"); c && *c) {
    dir = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    dir = std::string(x) + "/qrt";
  } else {
    const char* home = std::getenv("HOME");
    dir = std::string(home && *home ? home : ".") + "/.cache/qrt";
  }
  return dir + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string resolve_model_path(const std::string& given) {
  if (!given.empty()) return given;
  const std::string path = default_model_path();
  if (!std::filesystem::exists(path))
    throw invalid_input(fmt::format("no model given (-m) and the default model {} is missing: run "
                                    "scripts/fetch-model.sh to download it",
                                    path));
  return path;
}

#ifdef QRT_WITH_CUDA_ENGINE
std::unique_ptr<ForwardEngine> make_cuda_engine(std::shared_ptr<const ModelWeights> weights,
                                                const EngineOptions& options);
std::unique_ptr<BatchEngine> make_cuda_batch_engine(std::shared_ptr<const ModelWeights> weights,
                                                    const EngineOptions& options);
#endif

void EngineOptions::validate_lengths() const {
  constexpr int64_t kMaxPositions = int64_t{1} << 31;
  if (runtime.max_input_length < 1)
    throw invalid_input(fmt::format("max_input_length {} must be >= 1", runtime.max_input_length));
  if (runtime.max_new_tokens < 0)
    throw invalid_input(fmt::format("max_new_tokens {} must be >= 0", runtime.max_new_tokens));
  if (runtime.max_input_length > kMaxPositions || runtime.max_new_tokens > kMaxPositions)
    throw invalid_input(fmt::format("max_input_length {} and max_new_tokens {} must each be at most 2^31",
                                    runtime.max_input_length, runtime.max_new_tokens));
  if (kv_blocks < 0 || kv_blocks > kMaxPositions / 16)
    throw invalid_input(fmt::format("kv_blocks {} must be in [0, 2^27]", kv_blocks));
  if (max_step_rows < 0 || max_step_rows > (int64_t{1} << 20))
    throw invalid_input(fmt::format("max_step_rows {} must be in [0, 2^20]", max_step_rows));
}

int64_t attention_window(const ModelConfig& config, int64_t layer) {
  const bool mistral = config.architecture == "MistralForCausalLM" || config.model_type == "mistral";
  if (mistral || config.architecture == "Phi3ForCausalLM") return config.sliding_window;
  if (config.architecture != "Gemma2ForCausalLM") return 0;
  const auto& sliding = config.sliding_layers;
  if (layer < 0) return std::find(sliding.begin(), sliding.end(), true) != sliding.end() || sliding.empty() ? config.sliding_window : 0;
  if (sliding.empty()) return config.sliding_window;
  return layer < static_cast<int64_t>(sliding.size()) && sliding[static_cast<size_t>(layer)] ? config.sliding_window : 0;
}

std::unique_ptr<BatchEngine> make_cpu_batch_engine(std::shared_ptr<const ModelWeights> weights,
                                                   const EngineOptions& options);

std::unique_ptr<BatchEngine> make_batch_engine(std::shared_ptr<const ModelWeights> weights,
                                               const EngineOptions& options) {
  if (options.kv_blocks < 1)
    throw invalid_input(fmt::format("the batched engine needs a KV pool: kv_blocks {} must be >= 1", options.kv_blocks));
  if (options.device.kind == DeviceKind::Cpu) return make_cpu_batch_engine(std::move(weights), options);
#ifdef QRT_WITH_CUDA_ENGINE
  return make_cuda_batch_engine(std::move(weights), options);
#else
  throw Error(ErrorKind::Unsupported,
              fmt::format("device {}: this qrt binary has no batched engine for it (CPU only); use --device cpu",
                          options.device.id));
#endif
}

int32_t ForwardEngine::forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) {
  std::vector<float> logits(static_cast<size_t>(config().vocab_size));
  forward(tokens, n, pos, logits.data());
  return greedy_token(logits.data(), config().vocab_size);
}

std::unique_ptr<ForwardEngine> make_engine(std::shared_ptr<const ModelWeights> weights,
                                           const EngineOptions& options) {
  if (options.device.kind == DeviceKind::Cpu) return make_cpu_engine(std::move(weights), options);
#ifdef QRT_WITH_CUDA_ENGINE
  return make_cuda_engine(std::move(weights), options);
#else
  throw Error(ErrorKind::Unsupported,
              fmt::format("device {}: this qrt binary has no model engine for it (CPU only); use --device cpu",
                          options.device.id));
#endif
}

}  // namespace qrt
