// GGUF checkpoint: llama / qwen2 / gemma2 / phi3 GGUF files seen with Hugging Face names and
// conventions.
//
// - Metadata ({arch}.embedding_length, ...) becomes a ModelConfig; a config.json is synthesized.
// - Tensor names map to HF names (blk.N.attn_q.weight -> model.layers.N.self_attn.q_proj.weight),
//   per architecture: a norm name means a different HF norm in gemma2 files, and phi3 files hold
//   q/k/v in attn_qkv and gate/up in ffn_up, as Phi-3's HF checkpoints do.
// - llama.cpp's converter permutes the rows of Q and K of "llama" models for ggml's interleaved
//   RoPE (w.reshape(n_head, 2, hd/2, K).swapaxes(1, 2)); we undo it on load so the model always uses
//   HF's rotate-half RoPE. qwen2, gemma2 and phi3 GGUFs use NEOX RoPE and are not permuted.
// - The converter stores Gemma-2's norm weights as the factors 1 + w; they are served as HF's w,
//   so the model applies the offset once, the same way for both sources.
// - Block-quantized linears decode to QuantizedWeight with the io module's block codecs.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <regex>
#include <set>
#include <span>

#include "io/json_strict.h"
#include "qrt/error.h"
#include "qrt/gguf.h"
#include "quant/checkpoint_impl.h"
#include "quant/formats/codec_util.h"

#include "quant/formats/gguf_blocks.h"

namespace qrt::quant {

namespace {

struct NameMap {
  const char* gguf;
  const char* hf;
};
// Per-block tensors: blk.N.<gguf>.<weight|bias> -> model.layers.N.<hf>.<weight|bias>, by the
// names llama.cpp's converter gives each architecture.
constexpr NameMap kLlamaBlockNames[] = {
    {"attn_norm", "input_layernorm"},   {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};
// Gemma-2 normalizes the input of each branch and its output: ffn_norm is the MLP's input norm
// (HF pre_feedforward_layernorm), post_attention_norm the attention's output norm.
constexpr NameMap kGemma2BlockNames[] = {
    {"attn_norm", "input_layernorm"},
    {"post_attention_norm", "post_attention_layernorm"},
    {"ffn_norm", "pre_feedforward_layernorm"},
    {"post_ffw_norm", "post_feedforward_layernorm"},
    {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};
// Phi-3: attn_qkv holds the rows q | k | v, ffn_up the rows gate | up (HF's qkv_proj and
// gate_up_proj, which the model runs as stored).
constexpr NameMap kPhi3BlockNames[] = {
    {"attn_norm", "input_layernorm"},   {"ffn_norm", "post_attention_layernorm"},
    {"attn_qkv", "self_attn.qkv_proj"}, {"attn_output", "self_attn.o_proj"},
    {"ffn_up", "mlp.gate_up_proj"},     {"ffn_down", "mlp.down_proj"},
};

std::span<const NameMap> block_names(const std::string& arch) {
  if (arch == "gemma2") return kGemma2BlockNames;
  if (arch == "phi3") return kPhi3BlockNames;
  return kLlamaBlockNames;
}

constexpr NameMap kGlobalNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

std::string hf_name_of(const std::string& gguf, const std::string& arch) {
  for (const NameMap& m : kGlobalNames)
    if (gguf == m.gguf) return m.hf;
  if (gguf.rfind("blk.", 0) == 0) {
    const size_t dot = gguf.find('.', 4);
    if (dot == std::string::npos) return gguf;
    const std::string layer = gguf.substr(4, dot - 4);
    if (layer.empty() || layer.size() > 6 || layer.find_first_not_of("0123456789") != std::string::npos) return gguf;
    const std::string rest = gguf.substr(dot + 1);
    const size_t dot2 = rest.rfind('.');
    if (dot2 == std::string::npos) return gguf;
    const std::string base = rest.substr(0, dot2), kind = rest.substr(dot2 + 1);
    for (const NameMap& m : block_names(arch))
      if (base == m.gguf) return "model.layers." + layer + "." + m.hf + "." + kind;
  }
  return gguf;   // unmapped names (rope_freqs.weight, ...) keep their GGUF spelling
}

// The GGUF name an HF tensor name comes from (for messages about tensors the file lacks).
std::string gguf_name_of(const std::string& hf, const std::string& arch) {
  for (const NameMap& m : kGlobalNames)
    if (hf == m.hf) return m.gguf;
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) == 0) {
    const size_t dot = hf.find('.', prefix.size());
    const size_t last = hf.rfind('.');
    if (dot != std::string::npos && last > dot) {
      const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
      const std::string base = hf.substr(dot + 1, last - dot - 1), kind = hf.substr(last + 1);
      for (const NameMap& m : block_names(arch))
        if (base == m.hf) return "blk." + layer + "." + m.gguf + "." + kind;
    }
  }
  return hf;
}

DType plain_dtype(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return DType::F32;
    case GgmlType::F16: return DType::F16;
    case GgmlType::BF16: return DType::BF16;
    default: return DType::Unknown;
  }
}

class GgufCheckpoint final : public Checkpoint {
 public:
  explicit GgufCheckpoint(const std::string& file) : path_(file), gguf_(GgufFile::open(file)) {
    read_config();
    map_tensors();
    build_linears();
  }

  CheckpointKind kind() const override { return CheckpointKind::Gguf; }
  const std::string& path() const override { return path_; }
  const ModelConfig& config() const override { return config_; }
  const GenerationDefaults& generation_defaults() const override { return generation_; }
  const QuantizationConfig& quantization() const override { return quant_; }
  const std::vector<CheckpointLinear>& linears() const override { return linears_; }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }
  bool has_tensor(const std::string& name) const override { return by_hf_.count(name) > 0; }

  QuantizedWeight load_quantized(const std::string& layer) const override {
    auto lin = std::find_if(linears_.begin(), linears_.end(), [&](const auto& l) { return l.spec.name == layer; });
    if (lin == linears_.end() || !lin->quantized)
      throw invalid_input(path_ + ": " + layer + " is not a quantized linear layer of this checkpoint");
    QuantizedWeight w = decode_blocks(info(layer + ".weight"), layer);
    if (has_tensor(layer + ".bias")) {
      w.bias = gguf_dequantize_tensor(gguf_, info(layer + ".bias"));
      w.spec.has_bias = true;
    }
    unpermute(layer, w);
    w.validate();
    return w;
  }

  std::vector<float> load_float(const std::string& name) const override {
    const GgufTensorInfo& t = info(name);
    if (!gguf_can_dequantize(t.type))
      throw unsupported(path_ + ": tensor " + t.name + ": GGUF type " + ggml_type_name(t.type) +
                        " is not supported (" + gguf_supported_types() + " are)");
    std::vector<float> v = gguf_dequantize_tensor(gguf_, t);
    const std::vector<int64_t> shape = t.torch_shape();
    const int64_t rows = shape.empty() ? 1 : shape[0];
    if (auto perm = rope_permutation(name, rows)) permute_rows(v, rows > 0 ? static_cast<int64_t>(v.size()) / rows : 0, *perm);
    // 1 + w back to HF's w: exact for every factor in [0.5, 2^24) (Sterbenz), within one float32
    // step of 1 below it, which the model's 1 + w then rounds away again.
    if (norm_stores_unit_offset(name))
      for (float& x : v) x -= 1.0f;
    return v;
  }

  RawTensor load_raw(const std::string& name) const override {
    const GgufTensorInfo& t = info(name);
    if (norm_stores_unit_offset(name)) {
      // Served in float32 with the offset removed, as load_float serves it.
      const std::vector<float> v = load_float(name);
      RawTensor r;
      r.dtype = DType::F32;
      r.shape = t.torch_shape();
      r.data.resize(v.size() * sizeof(float));
      std::memcpy(r.data.data(), v.data(), r.data.size());
      return r;
    }
    const DType d = plain_dtype(t.type);
    if (d == DType::Unknown)
      throw invalid_input(path_ + ": " + name + " is stored as " + ggml_type_name(t.type) +
                          " (block-quantized); use load_quantized or load_float");
    RawTensor r;
    r.dtype = d;
    r.shape = t.torch_shape();
    auto bytes = gguf_.tensor_data(t);
    r.data.assign(bytes.begin(), bytes.end());
    const int64_t rows = r.shape.empty() ? 1 : r.shape[0];
    if (auto perm = rope_permutation(name, rows)) {
      const size_t row_bytes = rows > 0 ? r.data.size() / static_cast<size_t>(rows) : 0;
      std::vector<uint8_t> out(r.data.size());
      for (int64_t i = 0; i < rows; ++i)
        std::memcpy(out.data() + i * row_bytes, r.data.data() + (*perm)[i] * row_bytes, row_bytes);
      r.data.swap(out);
    }
    return r;
  }

  std::string tokenizer_json_path() const override { return ""; }
  std::vector<std::string> tokenizer_files() const override { return {}; }
  std::string config_json() const override { return model_config_to_json(config_).dump(2); }
  const std::vector<std::string>& warnings() const override { return warnings_; }

 private:
  const GgufTensorInfo& info(const std::string& hf) const {
    auto it = by_hf_.find(hf);
    if (it == by_hf_.end()) throw invalid_input(path_ + ": no tensor named '" + hf + "'");
    return *it->second;
  }

  // Gemma-2's norms, which llama.cpp's converter writes as 1 + w (every HF tensor named *norm.weight).
  bool norm_stores_unit_offset(const std::string& hf) const {
    const std::string suffix = "norm.weight";
    return config_.model_type == "gemma2" && hf.size() >= suffix.size() &&
           hf.compare(hf.size() - suffix.size(), suffix.size(), suffix) == 0;
  }

  void read_config() {
    const std::string arch = gguf_.architecture();
    ModelConfig& c = config_;
    if (arch == "llama") {
      c.architecture = "LlamaForCausalLM";
      c.model_type = "llama";
    } else if (arch == "qwen2") {
      c.architecture = "Qwen2ForCausalLM";
      c.model_type = "qwen2";
      c.attention_bias = true;
    } else if (arch == "gemma2") {
      c.architecture = "Gemma2ForCausalLM";
      c.model_type = "gemma2";
      c.hidden_act = "gelu_pytorch_tanh";
    } else if (arch == "phi3") {
      c.architecture = "Phi3ForCausalLM";
      c.model_type = "phi3";
    } else {
      throw unsupported(path_ + ": general.architecture " + io::quote_name(arch, 60) +
                        " is not supported (supported GGUF architectures: llama, qwen2, gemma2, phi3)");
    }
    const std::string a = arch + ".";
    auto dim = [&](const std::string& key, std::optional<int64_t> fallback) -> int64_t {
      std::optional<int64_t> v = gguf_.find_int(key);
      if (!v) {
        if (fallback) return *fallback;
        throw invalid_input(path_ + ": metadata " + key + " is missing");
      }
      if (*v <= 0 || *v > (int64_t{1} << 24))
        throw invalid_input(path_ + ": metadata " + key + " = " + std::to_string(*v) + " is not a positive size <= 2^24");
      return *v;
    };
    c.hidden_size = dim(a + "embedding_length", std::nullopt);
    c.intermediate_size = dim(a + "feed_forward_length", std::nullopt);
    c.num_layers = dim(a + "block_count", std::nullopt);
    c.num_heads = dim(a + "attention.head_count", std::nullopt);
    c.num_kv_heads = dim(a + "attention.head_count_kv", c.num_heads);
    if (c.num_heads % c.num_kv_heads != 0)
      throw invalid_input(path_ + ": " + a + "attention.head_count_kv " + std::to_string(c.num_kv_heads) +
                          " does not divide head_count " + std::to_string(c.num_heads));
    std::optional<int64_t> hd;
    if (c.hidden_size % c.num_heads == 0) hd = c.hidden_size / c.num_heads;
    c.head_dim = dim(a + "attention.key_length", hd);
    if (c.head_dim % 2) throw invalid_input(path_ + ": head dimension " + std::to_string(c.head_dim) + " must be even");
    c.max_position_embeddings = dim(a + "context_length", 2048);
    auto positive = [&](const std::string& key, double fallback) {
      std::optional<double> v = gguf_.find_float(key);
      if (!v) return fallback;
      if (!std::isfinite(*v) || *v <= 0) throw invalid_input(path_ + ": metadata " + key + " must be a positive number");
      return *v;
    };
    // FLOAT32 metadata: keep the shortest decimal of the float (1e-05, not 9.99999974e-06), as HF writes it.
    const std::string meta = path_ + ": metadata ";
    c.rms_norm_eps = check_float32_value(positive(a + "attention.layer_norm_rms_epsilon", 1e-5),
                                         meta + a + "attention.layer_norm_rms_epsilon", 0, false);
    c.rms_norm_eps = std::stod(fmt::format("{}", static_cast<float>(c.rms_norm_eps)));
    if (c.rms_norm_eps > 1)
      throw invalid_input(fmt::format("{}{}attention.layer_norm_rms_epsilon = {}: expected at most 1", meta, a, c.rms_norm_eps));
    c.rope_theta = check_float32_value(positive(a + "rope.freq_base", 10000.0), meta + a + "rope.freq_base", 1, false);
    // Phi-3 may rotate the leading part of each head only (partial_rotary_factor: Phi-4-mini);
    // elsewhere a rotary dimension below the head size would run wrong.
    if (auto rot = gguf_.find_int(a + "rope.dimension_count"); rot && *rot != c.head_dim) {
      if (arch != "phi3")
        throw unsupported(fmt::format("{}{}rope.dimension_count = {}, but the head dimension is {}: partial rotary "
                                      "embeddings are not supported for {} (qrt rotates the whole head)",
                                      meta, a, *rot, c.head_dim, arch));
      if (*rot < 2 || *rot > c.head_dim || *rot % 2 != 0)
        throw invalid_input(fmt::format("{}{}rope.dimension_count = {}: expected an even number in [2, {}] (the head "
                                        "dimension)",
                                        meta, a, *rot, c.head_dim));
      c.rotary_dim = *rot;
    }
    if (auto type = gguf_.find_string(a + "rope.scaling.type"); type && *type != "none") {
      static const char* const known[] = {"linear", "yarn", "longrope", "llama3", "dynamic"};
      if (std::find(std::begin(known), std::end(known), *type) == std::end(known))
        throw unsupported(meta + a + "rope.scaling.type " + io::quote_name(*type, 40) +
                          " is not a RoPE scaling qrt knows (none, linear, llama3)");
      c.rope_scaling.type = *type;
      c.rope_scaling.factor =
          check_float32_value(positive(a + "rope.scaling.factor", 1.0), meta + a + "rope.scaling.factor", 0, true);
      if (auto orig = gguf_.find_int(a + "rope.scaling.original_context_length"); orig && *orig > 0)
        c.rope_scaling.original_max_position_embeddings = *orig;
    }
    if (arch == "gemma2") read_gemma2_config(a);
    if (arch == "phi3") read_phi3_config(a);
    if (gguf_.find_tensor("rope_freqs.weight"))
      warnings_.push_back(path_ + ": rope_freqs.weight (llama3 rope scaling factors) is present; qrt does not apply "
                          "GGUF rope frequency factors yet");
    // Vocabulary: {arch}.vocab_size, else the tokenizer list, else the embedding's rows.
    std::optional<int64_t> vocab = gguf_.find_int(a + "vocab_size");
    if (!vocab && gguf_.contains("tokenizer.ggml.tokens"))
      vocab = static_cast<int64_t>(gguf_.get_string_array("tokenizer.ggml.tokens").size());
    if (!vocab) {
      if (const GgufTensorInfo* e = gguf_.find_tensor("token_embd.weight"); e && e->ne.size() == 2) vocab = e->ne[1];
    }
    if (!vocab || *vocab <= 0 || *vocab > (int64_t{1} << 24))
      throw invalid_input(path_ + ": cannot determine the vocabulary size ({arch}.vocab_size, tokenizer.ggml.tokens)");
    c.vocab_size = *vocab;
    c.tie_word_embeddings = gguf_.find_tensor("output.weight") == nullptr;
    auto token = [&](const char* key) -> int64_t {
      std::optional<int64_t> v = gguf_.find_int(key);
      return v && *v >= 0 && *v < c.vocab_size ? *v : -1;
    };
    c.bos_token_id = token("tokenizer.ggml.bos_token_id");
    for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
      const int64_t id = token(key);
      if (id >= 0 && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end())
        c.eos_token_ids.push_back(id);
    }
    c.pad_token_id = token("tokenizer.ggml.padding_token_id");
    c.torch_dtype = "float16";

    GgufConfig q;
    if (auto ft = gguf_.find_int("general.file_type")) q.file_type = static_cast<int>(*ft);
    if (auto qv = gguf_.find_int("general.quantization_version")) q.quantization_version = static_cast<int>(*qv);
    for (const auto& t : gguf_.tensors()) q.tensor_type_counts[ggml_type_name(t.type)]++;
    quant_.config = std::move(q);
  }

  // Gemma-2's rules from its metadata. The converter writes no query_pre_attn_scalar: like
  // llama.cpp, the attention scale is head_dim^-0.5, except for the 46-block model (Gemma-2 27B),
  // whose scalar is hidden_size / num_heads. Every even-indexed layer attends within the window.
  void read_gemma2_config(const std::string& a) {
    ModelConfig& c = config_;
    const std::string meta = path_ + ": metadata ";
    auto positive_float = [&](const std::string& key, double fallback) {
      const std::optional<double> v = gguf_.find_float(key);
      if (!v) return fallback;
      return check_float32_value(*v, meta + key, 0, true);
    };
    c.attn_logit_softcapping = positive_float(a + "attn_logit_softcapping", 50.0);
    c.final_logit_softcapping = positive_float(a + "final_logit_softcapping", 30.0);
    c.query_pre_attn_scalar = static_cast<double>(c.num_layers == 46 ? c.hidden_size / c.num_heads : c.head_dim);
    c.sliding_window = 4096;  // llama.cpp's and Gemma2Config's default
    if (auto sw = gguf_.find_int(a + "attention.sliding_window")) {
      if (*sw <= 0 || *sw > (int64_t{1} << 31))
        throw invalid_input(meta + a + "attention.sliding_window = " + std::to_string(*sw) +
                            ": expected a positive window");
      c.sliding_window = *sw;
    }
    c.sliding_layers.assign(static_cast<size_t>(c.num_layers), false);
    for (int64_t i = 0; i < c.num_layers; i += 2) c.sliding_layers[static_cast<size_t>(i)] = true;
  }

  // Phi-3's window (0 = none, how the converter marks Phi-4). Long-context files carry the
  // longrope factors as the tensors rope_factors_short / rope_factors_long (head_dim / 2 each),
  // rope.scaling.original_context_length and the attention factor rope.scaling.attn_factor.
  void read_phi3_config(const std::string& a) {
    ModelConfig& c = config_;
    if (auto sw = gguf_.find_int(a + "attention.sliding_window"); sw && *sw > 0) c.sliding_window = *sw;
    const GgufTensorInfo* short_t = gguf_.find_tensor("rope_factors_short.weight");
    const GgufTensorInfo* long_t = gguf_.find_tensor("rope_factors_long.weight");
    if (!short_t && !long_t) return;
    if (!short_t || !long_t)
      throw invalid_input(path_ + ": tensor " + (short_t ? "rope_factors_long.weight" : "rope_factors_short.weight") +
                          " is missing (longrope needs both factor sets)");
    RopeScaling& r = c.rope_scaling;
    r.type = "longrope";
    const int64_t half = (c.rotary_dim > 0 ? c.rotary_dim : c.head_dim) / 2;
    for (const GgufTensorInfo* t : {short_t, long_t}) {
      if (t->numel() != half || !gguf_can_dequantize(t->type))
        throw invalid_input(fmt::format("{}: tensor {}: expected {} float factors (one per rotary frequency), got {} {}",
                                        path_, t->name, half, t->numel(), ggml_type_name(t->type)));
      std::vector<double>& out = t == short_t ? r.short_factor : r.long_factor;
      const std::vector<float> v = gguf_dequantize_tensor(gguf_, *t);
      for (size_t i = 0; i < v.size(); ++i)
        out.push_back(check_float32_value(v[i], fmt::format("{}: tensor {}[{}]", path_, t->name, i), 0, true));
    }
    const std::string orig_key = a + "rope.scaling.original_context_length";
    const std::optional<int64_t> orig = gguf_.find_int(orig_key);
    if (!orig || *orig <= 0 || *orig > (int64_t{1} << 31))
      throw invalid_input(path_ + ": metadata " + orig_key + " must be a positive length (longrope picks its factors by it)");
    r.original_max_position_embeddings = *orig;
    r.factor = static_cast<double>(c.max_position_embeddings) / static_cast<double>(*orig);
    double attention = 1.0;
    if (r.factor > 1.0) attention = std::sqrt(1.0 + std::log(r.factor) / std::log(static_cast<double>(*orig)));
    if (auto af = gguf_.find_float(a + "rope.scaling.attn_factor")) attention = *af;
    r.attention_factor = check_float32_value(attention, path_ + ": metadata " + a + "rope.scaling.attn_factor", 0, false);
  }

  void map_tensors() {
    const std::string arch = gguf_.architecture();
    for (const GgufTensorInfo& t : gguf_.tensors()) {
      const std::string hf = hf_name_of(t.name, arch);
      if (!by_hf_.emplace(hf, &t).second)
        throw invalid_input(path_ + ": tensors map to the same name " + hf);
      CheckpointTensor ct;
      ct.name = hf;
      ct.dtype = plain_dtype(t.type);
      ct.shape = t.torch_shape();
      ct.storage = "gguf:" + ggml_type_name(t.type);
      ct.bytes = t.nbytes;
      tensors_.push_back(ct);
    }
    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  }

  void build_linears() {
    const ModelConfig& c = config_;
    // block_count must agree with the blocks the file stores, both ways: a smaller count would run
    // (and quantize would write) a truncated model; a larger one names the first missing tensor.
    std::vector<std::string> names;
    for (const GgufTensorInfo& t : gguf_.tensors()) names.push_back(t.name);
    const int64_t stored = stored_layer_count(names, "blk.");
    if (stored != c.num_layers)
      throw invalid_input(fmt::format("{}: metadata {}.block_count = {}, but the file stores {}{}", path_,
                                      gguf_.architecture(), c.num_layers,
                                      stored == 0 ? std::string("no block tensors (blk.N.*)")
                                                  : fmt::format("tensors of {} blocks (blk.0 .. blk.{})", stored, stored - 1),
                                      stored > c.num_layers ? ": the model would run truncated" : ""));
    auto expect = [&](const std::string& hf, const std::vector<int64_t>& shape, const std::string& fields) {
      auto it = by_hf_.find(hf);
      if (it == by_hf_.end()) {
        const std::string stored = gguf_name_of(hf, gguf_.architecture());
        throw invalid_input(path_ + ": tensor " + (stored == hf ? hf : stored + " (" + hf + ")") + " is missing" +
                            (hf.find("qkv_proj") != std::string::npos || hf.find("gate_up_proj") != std::string::npos
                                 ? " (phi3 files hold q/k/v fused in attn_qkv and gate/up fused in ffn_up)"
                                 : ""));
      }
      if (it->second->torch_shape() != shape)
        throw invalid_input(path_ + ": tensor " + it->second->name + " (" + hf + "): shape " +
                            shape_str(it->second->torch_shape()) + " does not match " + shape_str(shape) +
                            " expected from the metadata (" + fields + ")");
    };
    const std::string hs = "embedding_length=" + std::to_string(c.hidden_size);
    expect("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, "vocab_size=" + std::to_string(c.vocab_size) + ", " + hs);
    expect("model.norm.weight", {c.hidden_size}, hs);
    for (int64_t i = 0; i < c.num_layers; ++i)
      for (const std::string& norm : block_norm_names(c))
        expect("model.layers." + std::to_string(i) + "." + norm + ".weight", {c.hidden_size}, hs);
    for (const LinearSlot& slot : llama_linear_slots(c, !c.tie_word_embeddings)) {
      const std::string wname = slot.name + ".weight";
      expect(wname, {slot.out_features, slot.in_features},
             "out_features=" + std::to_string(slot.out_features) + ", in_features=" + std::to_string(slot.in_features) +
                 " from embedding_length, feed_forward_length, head counts");
      const GgufTensorInfo& t = *by_hf_.at(wname);
      CheckpointLinear l;
      l.spec.name = slot.name;
      l.spec.in_features = slot.in_features;
      l.spec.out_features = slot.out_features;
      l.spec.has_bias = by_hf_.count(slot.name + ".bias") > 0;
      l.spec.source_format = "gguf:" + ggml_type_name(t.type);
      l.stored_dtype = plain_dtype(t.type);
      l.quantized = gguf_has_canonical_form(t.type);
      if (l.quantized) gguf_canonical_spec(t.type, &l.spec);
      else if (l.stored_dtype == DType::Unknown && !gguf_can_dequantize(t.type))
        throw unsupported(path_ + ": tensor " + t.name + ": GGUF type " + ggml_type_name(t.type) +
                          " is not supported (" + gguf_supported_types() + " are)");
      else if (l.stored_dtype == DType::Unknown)
        l.stored_dtype = DType::F32;   // e.g. F64: served as float by load_float
      linears_.push_back(l);
    }
  }

  QuantizedWeight decode_blocks(const GgufTensorInfo& t, const std::string& layer) const {
    const std::vector<int64_t> shape = t.torch_shape();
    if (shape.size() != 2) throw invalid_input(path_ + ": tensor " + t.name + " is not 2-dimensional");
    return gguf_to_quantized_weight(t.type, gguf_.tensor_data(t), shape[1], shape[0], layer);
  }

  // The rope permutation to undo for an HF tensor name, if any ("llama" q/k weights and biases).
  std::optional<std::vector<int64_t>> rope_permutation(const std::string& hf, int64_t rows) const {
    if (config_.model_type != "llama") return std::nullopt;
    const bool q = hf.find(".self_attn.q_proj.") != std::string::npos;
    const bool k = hf.find(".self_attn.k_proj.") != std::string::npos;
    if (!q && !k) return std::nullopt;
    return gguf_unpermute_rows(rows, q ? config_.num_heads : config_.num_kv_heads);
  }

  void unpermute(const std::string& layer, QuantizedWeight& w) const {
    if (auto perm = rope_permutation(layer + ".weight", w.N())) permute_rows(w, *perm);
  }

  std::string path_;
  GgufFile gguf_;
  ModelConfig config_;
  GenerationDefaults generation_;
  QuantizationConfig quant_;
  std::map<std::string, const GgufTensorInfo*> by_hf_;
  std::vector<CheckpointLinear> linears_;
  std::vector<CheckpointTensor> tensors_;
  std::vector<std::string> warnings_;
};

}  // namespace

std::unique_ptr<Checkpoint> open_gguf_checkpoint(const std::string& file) {
  return std::make_unique<GgufCheckpoint>(file);
}

}  // namespace qrt::quant
