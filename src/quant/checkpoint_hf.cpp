// Hugging Face folder checkpoint: config.json (+ legacy quantize_config.json), generation_config.json,
// tokenizer files, safetensors (single, sharded with index, or several files) through TensorStore.
//
// Opening reads metadata only and checks every tensor shape the model config implies (embedding,
// norms, each linear's packed weight), so a mismatched checkpoint fails at open with the tensor and
// the config fields named. Linear data is decoded on demand by the format codecs.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "io/bounded_read.h"
#include "io/json_strict.h"
#include "qrt/error.h"
#include "qrt/safetensors.h"
#include "quant/checkpoint_impl.h"
#include "quant/formats/codecs.h"
#include "quant/quant_config_json.h"

namespace qrt::quant {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const fs::path& p) {
  return io::read_file_bounded(p.string(), io::kMaxConfigFileBytes, "a JSON config file");
}

json read_json(const fs::path& p) {
  const std::string text = read_text(p);
  return io::parse_json_strict(text.data(), text.data() + text.size(), p.string());
}

std::string dims_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

const std::vector<std::string>& part_suffixes(QuantMethod m) {
  static const std::vector<std::string> gptq = {"qweight", "qzeros", "scales", "g_idx", "bias"};
  static const std::vector<std::string> awq = {"qweight", "qzeros", "scales", "bias"};
  static const std::vector<std::string> fp8 = {"weight", "weight_scale", "weight_scale_inv", "input_scale", "bias"};
  // LLM.int8 (SCB) and 4-bit (absmax, code books, quant_state) share the bitsandbytes method.
  static const std::vector<std::string> int8 = {"weight", "SCB", "weight_format", "bias", "weight.absmax",
                                                "weight.quant_map", "weight.nested_absmax", "weight.nested_quant_map",
                                                "weight.quant_state.bitsandbytes__nf4",
                                                "weight.quant_state.bitsandbytes__fp4"};
  static const std::vector<std::string> ct = {"weight_packed", "weight_scale", "weight_zero_point", "weight_shape",
                                             "weight", "input_scale", "bias"};
  static const std::vector<std::string> higgs = {"weight", "scales", "tables", "tables2", "bias"};
  static const std::vector<std::string> none;
  switch (m) {
    case QuantMethod::Higgs: return higgs;
    case QuantMethod::Gptq: return gptq;
    case QuantMethod::Awq: return awq;
    case QuantMethod::Fp8: return fp8;
    case QuantMethod::Int8: return int8;
    case QuantMethod::CompressedTensors: return ct;
    default: return none;
  }
}

class HfCheckpoint final : public Checkpoint {
 public:
  explicit HfCheckpoint(const std::string& folder) : path_(folder) {
    const fs::path dir(folder);
    const fs::path cfg_path = dir / "config.json";
    if (!fs::exists(cfg_path))
      throw invalid_input(folder + ": no config.json (not a Hugging Face model folder)");
    config_text_ = read_text(cfg_path);
    const json cj = io::parse_json_strict(config_text_.data(), config_text_.data() + config_text_.size(),
                                          cfg_path.string());
    config_ = model_config_from_json(cj, cfg_path.string());
    if (auto q = cj.find("quantization_config"); q != cj.end() && !q->is_null()) {
      quant_ = parse_quantization_config_json(*q, cfg_path.string() + ": quantization_config");
    } else {
      for (const char* legacy : {"quantize_config.json", "quant_config.json"})
        if (fs::exists(dir / legacy)) {
          quant_ = parse_quantization_config_json(read_json(dir / legacy), (dir / legacy).string());
          break;
        }
    }
    warnings_ = quant_.warnings;
    warning_order_.assign(warnings_.size(), 0);
    if (quant_.method() == QuantMethod::Gguf)
      throw invalid_input(cfg_path.string() + ": quantization_config: quant_method 'gguf' belongs in a .gguf file");
    read_generation_config(dir);
    store_ = std::make_unique<TensorStore>(TensorStore::open(folder));
    index_tensors();
  }

  CheckpointKind kind() const override { return CheckpointKind::HfFolder; }
  const std::string& path() const override { return path_; }
  const ModelConfig& config() const override { return config_; }
  const GenerationDefaults& generation_defaults() const override { return generation_; }
  const QuantizationConfig& quantization() const override { return quant_; }
  const std::vector<CheckpointLinear>& linears() const override { return linears_; }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }
  bool has_tensor(const std::string& name) const override {
    return store_->contains(name) || logical_.count(name) > 0;
  }

  QuantizedWeight load_quantized(const std::string& layer) const override {
    auto it = quantized_.find(layer);
    if (it == quantized_.end())
      throw invalid_input(path_ + ": " + layer + " is not a quantized linear layer of this checkpoint");
    TensorParts parts;
    for (const std::string& s : part_suffixes(quant_.method()))
      if (store_->contains(layer + "." + s)) parts[s] = store_->get(layer + "." + s);
    const int64_t k = it->second->spec.in_features;
    std::vector<std::string> w;
    QuantizedWeight q;
    try {
      switch (quant_.method()) {
        case QuantMethod::Gptq: q = decode_gptq(layer, parts, *quant_.get<GptqConfig>(), k, &w); break;
        case QuantMethod::Awq: q = decode_awq(layer, parts, *quant_.get<AwqConfig>(), k); break;
        case QuantMethod::Fp8: q = decode_fp8(layer, parts, *quant_.get<Fp8Config>(), k); break;
        case QuantMethod::Int8:
          if (it->second->spec.encoding == WeightEncoding::Codebook) {
            q = decode_bnb4(layer, parts, k);
          } else {
            q = decode_int8(layer, parts, k);
            q.spec.llm_int8_threshold = it->second->spec.llm_int8_threshold;   // the config's (index_tensors)
          }
          break;
        case QuantMethod::CompressedTensors:
          q = decode_compressed_tensors(layer, parts, *quant_.get<CompressedTensorsConfig>(), k);
          break;
        case QuantMethod::Higgs:
          q = decode_higgs(layer, parts, higgs_layouts_.at(layer), it->second->spec.out_features, k);
          break;
        default: throw unsupported(layer + ": quant_method " + quant_method_name(quant_.method()) + " has no codec");
      }
    } catch (const Error& e) {
      throw Error(e.kind(), path_ + ": " + e.what());   // name the checkpoint as well as the tensor
    }
    if (q.N() != it->second->spec.out_features)
      throw invalid_input(layer + ": out_features " + std::to_string(q.N()) + " of the stored tensors does not match " +
                          std::to_string(it->second->spec.out_features) + " implied by config.json");
    if (!w.empty()) {
      // In the order of the layers, whatever order the loads run in (load_model decodes layers on
      // several threads): the warnings a command prints are the same on every run.
      const size_t order = static_cast<size_t>(it->second - linears_.data()) + 1;
      std::lock_guard<std::mutex> lock(mutex_);
      const auto at = std::upper_bound(warning_order_.begin(), warning_order_.end(), order);
      const auto pos = warnings_.begin() + (at - warning_order_.begin());
      warnings_.insert(pos, w.begin(), w.end());
      warning_order_.insert(at, w.size(), order);
    }
    return q;
  }

  std::vector<float> load_float(const std::string& name) const override {
    if (logical_.count(name)) {
      const std::string layer = name.substr(0, name.size() - std::string(".weight").size());
      return dequantize_reference(load_quantized(layer));
    }
    if (!store_->contains(name)) throw invalid_input(path_ + ": no tensor named '" + name + "'");
    const TensorView v = store_->get(name);
    if (!dtype_is_float(v.dtype))
      throw invalid_input(path_ + ": tensor " + name + ": dtype " + std::string(dtype_name(v.dtype)) +
                          " is an integer type where float values (F32, F16, BF16) are expected");
    return tensor_to_float(v);
  }

  RawTensor load_raw(const std::string& name) const override {
    if (logical_.count(name)) throw invalid_input(name + " is a quantized weight; use load_quantized or load_float");
    TensorView v = store_->get(name);
    RawTensor r;
    r.dtype = v.dtype;
    r.shape = v.shape;
    r.data.assign(v.bytes.begin(), v.bytes.end());
    return r;
  }

  std::string tokenizer_json_path() const override {
    const fs::path p = fs::path(path_) / "tokenizer.json";
    return fs::exists(p) ? p.string() : std::string();
  }
  std::vector<std::string> tokenizer_files() const override {
    std::vector<std::string> out;
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                          "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json"}) {
      const fs::path p = fs::path(path_) / f;
      if (fs::exists(p)) out.push_back(p.string());
    }
    return out;
  }
  std::string config_json() const override { return config_text_; }
  const std::vector<std::string>& warnings() const override { return warnings_; }

 private:
  void read_generation_config(const fs::path& dir) {
    const fs::path p = dir / "generation_config.json";
    if (!fs::exists(p)) return;
    const json g = read_json(p);
    if (!g.is_object()) throw invalid_input(p.string() + ": expected a JSON object");
    auto num = [&](const char* key) -> std::optional<double> {
      auto it = g.find(key);
      if (it == g.end() || it->is_null()) return std::nullopt;
      if (!it->is_number()) throw invalid_input(p.string() + ": " + key + ": expected a number");
      return it->get<double>();
    };
    auto integer = [&](const char* key) -> std::optional<int64_t> {
      auto it = g.find(key);
      if (it == g.end() || it->is_null()) return std::nullopt;
      if (!it->is_number_integer()) throw invalid_input(p.string() + ": " + key + ": expected an integer");
      return it->get<int64_t>();
    };
    if (auto it = g.find("do_sample"); it != g.end() && it->is_boolean()) generation_.do_sample = it->get<bool>();
    generation_.temperature = num("temperature");
    generation_.top_p = num("top_p");
    generation_.top_k = integer("top_k");
    generation_.min_p = num("min_p");
    generation_.repetition_penalty = num("repetition_penalty");
    generation_.max_new_tokens = integer("max_new_tokens");
    // Each value in the range and type the sampler uses it in (float32), named with this file: a
    // bad value found later by the sampler would not say where it came from.
    auto bad = [&](const char* key, double v, const char* expected) {
      throw invalid_input(fmt::format("{}: {} = {}: expected {}", p.string(), key, v, expected));
    };
    if (auto t = generation_.temperature; t && (!(*t >= 0) || !std::isfinite(*t) ||
                                                (*t > 0 && !std::isnormal(1.0f / static_cast<float>(*t)))))
      bad("temperature", *t, "0 (greedy) or a positive number a float32 can divide by (at least 1e-30)");
    if (auto v = generation_.top_p; v && !(*v > 0 && *v <= 1)) bad("top_p", *v, "a number in (0, 1]");
    if (auto v = generation_.min_p; v && !(*v >= 0 && *v <= 1)) bad("min_p", *v, "a number in [0, 1]");
    if (auto v = generation_.repetition_penalty; v && !(std::isfinite(*v) && std::isnormal(static_cast<float>(*v)) && *v > 0))
      bad("repetition_penalty", *v, "a positive number (1 = off)");
    if (auto v = generation_.top_k; v && (*v < 0 || *v > INT32_MAX))
      bad("top_k", static_cast<double>(*v), "an integer in [0, 2^31) (0 = off)");
    if (auto v = generation_.max_new_tokens; v && *v < 0) bad("max_new_tokens", static_cast<double>(*v), "an integer >= 0");
    // eos ids from generation_config.json join those of config.json (chat models list several).
    auto ids = [&](const char* key) {
      std::vector<int64_t> out;
      auto it = g.find(key);
      if (it == g.end() || it->is_null()) return out;
      auto one = [&](const json& v) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
          throw invalid_input(p.string() + ": " + key + ": expected a token id");
        out.push_back(v.get<int64_t>());
      };
      if (it->is_array()) for (const auto& v : *it) one(v);
      else one(*it);
      return out;
    };
    for (int64_t id : ids("eos_token_id"))
      if (std::find(config_.eos_token_ids.begin(), config_.eos_token_ids.end(), id) == config_.eos_token_ids.end())
        config_.eos_token_ids.push_back(id);
    if (config_.bos_token_id < 0) {
      auto b = ids("bos_token_id");
      if (!b.empty()) config_.bos_token_id = b[0];
    }
  }

  [[noreturn]] void shape_error(const std::string& tensor, const std::vector<int64_t>& got,
                                const std::vector<int64_t>& expected, const std::string& fields) const {
    throw invalid_input(path_ + ": " + tensor + ": shape " + dims_str(got) + " does not match " + dims_str(expected) +
                        " expected from config.json (" + fields + ")");
  }

  // A tensor the model reads as float values (embedding, norms): present, float-typed, of the shape
  // the config implies.
  void expect_tensor_shape(const std::string& name, const std::vector<int64_t>& expected, const std::string& fields) const {
    const SafetensorsTensorInfo* info = store_->info(name);
    if (!info) throw invalid_input(path_ + ": tensor " + name + " is missing");
    if (!dtype_is_float(info->dtype) || info->dtype == DType::F8_E8M0)
      throw invalid_input(path_ + ": tensor " + name + ": dtype " + std::string(dtype_name(info->dtype)) +
                          " where float values (F32, F16, BF16) are expected");
    if (info->shape != expected) shape_error(name, info->shape, expected, fields);
  }

  void index_tensors() {
    const ModelConfig& c = config_;
    // num_hidden_layers must agree with the layers stored, both ways: a smaller count would run (and
    // quantize would write) a truncated model; a larger one is named before the first missing tensor.
    const int64_t stored = stored_layer_count(store_->names(), "model.layers.");
    if (stored != c.num_layers)
      throw invalid_input(path_ + ": config.json: num_hidden_layers = " + std::to_string(c.num_layers) +
                          ", but the safetensors store " +
                          (stored == 0 ? std::string("no decoder layers (model.layers.N.*)")
                                       : "layers 0.." + std::to_string(stored - 1) + " (" + std::to_string(stored) + ")") +
                          (stored > c.num_layers ? ": the model would run truncated" : ""));
    const std::string hs = "hidden_size=" + std::to_string(c.hidden_size);
    expect_tensor_shape("model.embed_tokens.weight", {c.vocab_size, c.hidden_size},
                        "vocab_size=" + std::to_string(c.vocab_size) + ", " + hs);
    expect_tensor_shape("model.norm.weight", {c.hidden_size}, hs);
    for (int64_t i = 0; i < c.num_layers; ++i)
      for (const std::string& norm : block_norm_names(c))
        expect_tensor_shape("model.layers." + std::to_string(i) + "." + norm + ".weight", {c.hidden_size}, hs);
    const bool lm_head_stored = store_->contains("lm_head.weight") || store_->contains("lm_head.qweight");
    if (!c.tie_word_embeddings && !lm_head_stored)
      throw invalid_input(path_ + ": tensor lm_head.weight is missing and config.json says tie_word_embeddings = false");
    const QuantMethod m = quant_.method();
    for (const LinearSlot& slot : llama_linear_slots(c, lm_head_stored)) {
      const std::string fields = "out_features=" + std::to_string(slot.out_features) +
                                 ", in_features=" + std::to_string(slot.in_features) + " from hidden_size=" +
                                 std::to_string(c.hidden_size) + ", intermediate_size=" + std::to_string(c.intermediate_size) +
                                 ", heads=" + std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads) +
                                 ", head_dim=" + std::to_string(c.head_dim);
      CheckpointLinear l;
      l.spec.name = slot.name;
      l.spec.in_features = slot.in_features;
      l.spec.out_features = slot.out_features;
      l.spec.has_bias = store_->contains(slot.name + ".bias");
      const SafetensorsTensorInfo* weight = store_->info(slot.name + ".weight");
      const SafetensorsTensorInfo* qweight = store_->info(slot.name + ".qweight");
      if ((m == QuantMethod::Gptq || m == QuantMethod::Awq) && qweight) {
        describe_packed(l, *qweight, fields);
      } else if (m == QuantMethod::Fp8 && weight && weight->dtype == DType::F8_E4M3) {
        if (weight->shape != std::vector<int64_t>{slot.out_features, slot.in_features})
          shape_error(weight->name, weight->shape, {slot.out_features, slot.in_features}, fields);
        describe_fp8(l);
      } else if (m == QuantMethod::CompressedTensors && (store_->contains(slot.name + ".weight_packed") ||
                                                         (weight && store_->contains(slot.name + ".weight_scale")))) {
        describe_compressed_tensors(l, weight, fields);
      } else if (m == QuantMethod::Int8 && weight && store_->contains(slot.name + ".weight.absmax")) {
        describe_bnb4(l);
      } else if (m == QuantMethod::Int8 && weight && store_->contains(slot.name + ".SCB")) {
        if (weight->shape != std::vector<int64_t>{slot.out_features, slot.in_features})
          shape_error(weight->name, weight->shape, {slot.out_features, slot.in_features}, fields);
        l.quantized = true;
        l.spec.bits = 8;
        l.spec.group_size = -1;
        l.spec.zero_kind = ZeroKind::Symmetric;
        l.spec.source_format = "int8";
        // LLM.int8's outlier threshold travels with the layer: the backend that multiplies int8
        // activations applies it (docs/LLM_INT8.md); a threshold of 0 or below means no decomposition
        // (docs/CHECKPOINTS.md, "LLM.int8 (bitsandbytes)").
        l.spec.llm_int8_threshold =
            static_cast<float>(std::max(0.0, quant_.get<Int8Config>()->llm_int8_threshold));
      } else if (m == QuantMethod::Higgs && weight && weight->dtype == DType::I16) {
        describe_higgs(l);
      } else if (weight) {
        if (!dtype_is_float(weight->dtype) || weight->dtype == DType::F8_E4M3 || weight->dtype == DType::F8_E5M2)
          throw invalid_input(path_ + ": tensor " + weight->name + ": dtype " + std::string(dtype_name(weight->dtype)) +
                              " is not a float weight and the checkpoint's quantization (" + quant_.describe() +
                              ") does not explain it");
        if (weight->shape != std::vector<int64_t>{slot.out_features, slot.in_features})
          shape_error(weight->name, weight->shape, {slot.out_features, slot.in_features}, fields);
        l.stored_dtype = weight->dtype;
      } else if (m == QuantMethod::TorchAo) {
        throw unsupported(path_ + ": " + slot.name + ": " + quant_method_name(m) +
                          " tensor layouts are not supported (their packing is library-internal); dequantize with the "
                          "reference library first");
      } else {
        throw invalid_input(path_ + ": tensor " + slot.name + ".weight" +
                            (m == QuantMethod::Gptq || m == QuantMethod::Awq ? " (or .qweight)" : "") + " is missing");
      }
      linears_.push_back(l);
    }
    for (const auto& l : linears_)
      if (l.quantized) {
        quantized_[l.spec.name] = &l;
        logical_.insert(l.spec.name + ".weight");
      }
    // The tensor list: stored tensors, with each quantized module's parts folded into one entry.
    std::set<std::string> folded;
    for (const auto& [name, lin] : quantized_) {
      CheckpointTensor t;
      t.name = name + ".weight";
      t.shape = {lin->spec.out_features, lin->spec.in_features};
      t.storage = lin->spec.source_format + " " + lin->spec.describe();
      for (const std::string& s : part_suffixes(m)) {
        if (s == "bias") continue;
        if (const SafetensorsTensorInfo* info = store_->info(name + "." + s)) {
          t.bytes += info->nbytes();
          folded.insert(info->name);
        }
      }
      tensors_.push_back(t);
    }
    for (const std::string& name : store_->names()) {
      if (folded.count(name)) continue;
      const SafetensorsTensorInfo* info = store_->info(name);
      tensors_.push_back({name, info->dtype, info->shape, std::string(dtype_name(info->dtype)), info->nbytes()});
    }
    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  }

  // A compressed-tensors linear: spec from the config and the stored shapes (no data read).
  void describe_compressed_tensors(CheckpointLinear& l, const SafetensorsTensorInfo* weight, const std::string& fields) {
    const CompressedTensorsConfig& c = *quant_.get<CompressedTensorsConfig>();
    const int64_t n = l.spec.out_features, k = l.spec.in_features;
    if (c.format == "float-quantized") {
      if (!weight || weight->dtype != DType::F8_E4M3)
        throw invalid_input(path_ + ": " + l.spec.name + ".weight: float-quantized expects an F8_E4M3 weight");
      if (weight->shape != std::vector<int64_t>{n, k}) shape_error(weight->name, weight->shape, {n, k}, fields);
      describe_fp8(l);
      l.spec.source_format = "compressed-tensors fp8";
      return;
    }
    if (c.format == "naive-quantized") {
      if (!weight || weight->dtype != DType::I8)
        throw invalid_input(path_ + ": " + l.spec.name + ".weight: naive-quantized expects an I8 weight");
      if (weight->shape != std::vector<int64_t>{n, k}) shape_error(weight->name, weight->shape, {n, k}, fields);
    } else {
      const SafetensorsTensorInfo* p = store_->info(l.spec.name + ".weight_packed");
      const std::vector<int64_t> expected = {n, (k * c.num_bits + 31) / 32};
      if (!p || p->shape != expected)
        shape_error(l.spec.name + ".weight_packed", p ? p->shape : std::vector<int64_t>{}, expected,
                    fields + ", num_bits=" + std::to_string(c.num_bits));
    }
    l.quantized = true;
    l.spec.encoding = WeightEncoding::IntAffine;
    l.spec.bits = c.num_bits;
    l.spec.group_size = c.strategy == "group" && c.group_size < k ? c.group_size : -1;
    l.spec.zero_kind = c.symmetric ? ZeroKind::Symmetric : ZeroKind::Integer;
    l.spec.source_format = "compressed-tensors int" + std::to_string(c.num_bits);
  }

  // A bitsandbytes 4-bit linear: its quant_state (a small JSON tensor) and 16-value code book are
  // read now, so the spec (group = blocksize, the code book) is known before the codes are.
  void describe_bnb4(CheckpointLinear& l) {
    TensorParts parts;
    for (const char* s : {"weight.quant_state.bitsandbytes__nf4", "weight.quant_state.bitsandbytes__fp4",
                          "weight.quant_map"})
      if (store_->contains(l.spec.name + "." + s)) parts[s] = store_->get(l.spec.name + "." + s);
    const Bnb4State st = read_bnb4_state(path_ + ": " + l.spec.name, parts);
    if (st.out_features != l.spec.out_features || st.in_features != l.spec.in_features)
      throw invalid_input(path_ + ": " + l.spec.name + ": quant_state.shape [" + std::to_string(st.out_features) + ", " +
                          std::to_string(st.in_features) + "] does not match the model config's [" +
                          std::to_string(l.spec.out_features) + ", " + std::to_string(l.spec.in_features) + "]");
    if (st.in_features % st.blocksize != 0)
      throw unsupported(path_ + ": " + l.spec.name + ": bitsandbytes blocksize " + std::to_string(st.blocksize) +
                        " does not divide in_features " + std::to_string(st.in_features));
    const TensorView& map = require_part(parts, path_ + ": " + l.spec.name, "weight.quant_map", "4-bit code book");
    std::vector<float> codebook = read_float_tensor(map);
    if (codebook.size() != 16)
      throw invalid_input(map.name + ": the code book holds " + std::to_string(codebook.size()) + " values, expected 16");
    l.quantized = true;
    l.spec.encoding = WeightEncoding::Codebook;
    l.spec.bits = 4;
    l.spec.group_size = static_cast<int>(st.blocksize);
    l.spec.zero_kind = ZeroKind::Symmetric;
    l.spec.codebook = std::move(codebook);
    l.spec.source_format = "bnb_" + st.quant_type + (st.nested ? " double-quant" : "");
  }

  // A HIGGS linear: its FLUTE layout from the config and tune_metadata, and its grid (small), read
  // now so that the plan knows the spec; shapes are checked here, values when the codes are decoded.
  void describe_higgs(CheckpointLinear& l) {
    const HiggsConfig& c = *quant_.get<HiggsConfig>();
    const std::string where = path_ + ": " + l.spec.name;
    auto meta = c.tune_metadata.find(l.spec.name);
    HiggsLayout layout = higgs_layout(where, c, meta == c.tune_metadata.end() ? nullptr : &meta->second,
                                      l.spec.out_features, l.spec.in_features);
    TensorParts parts;
    for (const char* s : {"weight", "scales", "tables", "tables2"})
      if (store_->contains(l.spec.name + "." + s)) parts[s] = store_->get(l.spec.name + "." + s);
    const TensorView& w = require_part(parts, where, "weight", "FLUTE-packed codes");
    expect_shape(w, {l.spec.out_features * layout.bits / 16, l.spec.in_features},
                 "[out_features * bits / 16, in_features]");
    const TensorView& scales = require_part(parts, where, "scales", "group scales");
    expect_shape(scales, {l.spec.out_features, l.spec.in_features / layout.group_size},
                 "[out_features, in_features / group_size]");
    l.quantized = true;
    l.spec.encoding = WeightEncoding::RotatedCodebook;
    l.spec.bits = layout.bits;
    l.spec.group_size = layout.group_size >= l.spec.in_features ? -1 : layout.group_size;
    l.spec.zero_kind = ZeroKind::Symmetric;
    l.spec.codebook_dim = layout.p;
    l.spec.hadamard_size = layout.hadamard_size;
    l.spec.codebook = read_higgs_codebook(where, parts, layout, scales.dtype);
    l.spec.source_format = "higgs";
    higgs_layouts_[l.spec.name] = layout;
  }

  void describe_packed(CheckpointLinear& l, const SafetensorsTensorInfo& qweight, const std::string& fields) {
    l.quantized = true;
    const int64_t n = l.spec.out_features, k = l.spec.in_features;
    if (const GptqConfig* g = quant_.get<GptqConfig>()) {
      const int b = g->bits;
      if ((k * b) % 32 != 0)
        throw invalid_input(path_ + ": " + qweight.name + ": in_features " + std::to_string(k) + " cannot be packed at " +
                            std::to_string(b) + " bits (" + fields + ")");
      if (qweight.shape != std::vector<int64_t>{k * b / 32, n})
        shape_error(qweight.name, qweight.shape, {k * b / 32, n}, fields + ", bits=" + std::to_string(b));
      g->check_layer(k, path_ + ": " + l.spec.name);
      l.spec.bits = b;
      l.spec.group_size = g->group_size <= 0 ? -1 : g->group_size;
      l.spec.zero_kind = g->sym ? ZeroKind::Symmetric : ZeroKind::Integer;
      l.spec.source_format = g->is_v2() ? "gptq_v2" : "gptq";
      // act_order only when g_idx is non-trivial (reading it is cheap: K int32).
      if (g->desc_act && store_->contains(l.spec.name + ".g_idx")) {
        std::vector<int32_t> gi = read_i32_tensor(store_->get(l.spec.name + ".g_idx"));
        const int64_t gs = l.spec.effective_group_size();
        for (size_t i = 0; i < gi.size(); ++i)
          if (gi[i] != static_cast<int64_t>(i) / gs) {
            l.spec.act_order = true;
            break;
          }
      }
    } else if (const AwqConfig* a = quant_.get<AwqConfig>()) {
      // Layouts no decoder reads are refused here, when the checkpoint opens (qrt plan opens it too).
      check_awq_layout(*a, path_ + ": quantization_config");
      const bool gemv = a->version == "gemv";
      const std::vector<int64_t> expected = gemv ? std::vector<int64_t>{n, k / 8} : std::vector<int64_t>{k, n / 8};
      if (qweight.shape != expected) shape_error(qweight.name, qweight.shape, expected, fields + ", bits=4, version=" + a->version);
      a->check_layer(k, path_ + ": " + l.spec.name);
      l.spec.bits = a->bits;
      l.spec.group_size = a->group_size <= 0 ? -1 : a->group_size;
      l.spec.zero_kind = ZeroKind::Integer;
      l.spec.source_format = gemv ? "awq_gemv" : "awq_gemm";
    }
  }

  void describe_fp8(CheckpointLinear& l) {
    const Fp8Config* f = quant_.get<Fp8Config>();
    l.quantized = true;
    l.spec.encoding = WeightEncoding::Fp8E4M3;
    l.spec.bits = 8;
    l.spec.group_size = -1;
    l.spec.source_format = "fp8";
    const int64_t n = l.spec.out_features, k = l.spec.in_features;
    const SafetensorsTensorInfo* s = store_->info(l.spec.name + ".weight_scale_inv");
    if (!s) s = store_->info(l.spec.name + ".weight_scale");
    if (!s) throw invalid_input(path_ + ": " + l.spec.name + ": missing tensor weight_scale_inv or weight_scale");
    int64_t numel = 1;
    for (int64_t d : s->shape) numel *= d;
    if (numel == 1) {
      l.spec.scale_block_n = static_cast<int>(n);
      l.spec.scale_block_k = static_cast<int>(k);
    } else if (s->shape == std::vector<int64_t>{n} || s->shape == std::vector<int64_t>{n, 1}) {
      l.spec.scale_block_n = 1;
      l.spec.scale_block_k = static_cast<int>(k);
    } else if (f && f->weight_block_size) {
      l.spec.scale_block_n = f->weight_block_size->first;
      l.spec.scale_block_k = f->weight_block_size->second;
    } else {
      throw invalid_input(path_ + ": " + s->name + ": shape " + dims_str(s->shape) +
                          " is neither per-tensor nor per-channel and quantization_config has no weight_block_size");
    }
  }

  std::string path_;
  std::string config_text_;
  ModelConfig config_;
  GenerationDefaults generation_;
  QuantizationConfig quant_;
  std::unique_ptr<TensorStore> store_;
  std::vector<CheckpointLinear> linears_;
  std::vector<CheckpointTensor> tensors_;
  std::map<std::string, const CheckpointLinear*> quantized_;
  std::map<std::string, HiggsLayout> higgs_layouts_;   // HIGGS: each layer's FLUTE packing
  std::set<std::string> logical_;
  mutable std::mutex mutex_;
  mutable std::vector<std::string> warnings_;
  mutable std::vector<size_t> warning_order_;   // per warning: 0 (the config's) or 1 + its layer's index
};

}  // namespace

std::unique_ptr<Checkpoint> open_hf_checkpoint(const std::string& folder) {
  return std::make_unique<HfCheckpoint>(folder);
}

}  // namespace qrt::quant
