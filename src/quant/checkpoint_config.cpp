// config.json -> ModelConfig (and back), the supported architectures, and the GGUF rope row
// permutation. Every field error names the file and the field.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "io/json_strict.h"
#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "quant/checkpoint_impl.h"

namespace qrt {

using nlohmann::json;

std::vector<std::string> supported_architectures() {
  return {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Gemma2ForCausalLM", "Phi3ForCausalLM"};
}

namespace quant {

namespace {

std::string render(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Sizes are bounded so that products of two of them never overflow int64 (fuzzed input).
constexpr int64_t kMaxDim = int64_t{1} << 24;

int64_t get_dim(const json& j, const std::string& where, const char* key, std::optional<int64_t> fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    throw invalid_input(where + ": " + key + " is missing");
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > kMaxDim)
    throw invalid_input(where + ": " + key + ": expected a positive integer <= 2^24, got " + render(*it));
  return it->get<int64_t>();
}

double get_positive(const json& j, const std::string& where, const char* key, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() <= 0)
    throw invalid_input(where + ": " + key + ": expected a positive number, got " + render(*it));
  return it->get<double>();
}

bool get_flag(const json& j, const std::string& where, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw invalid_input(where + ": " + key + ": expected true or false, got " + render(*it));
  return it->get<bool>();
}

// Token ids: an integer or a list of integers (eos_token_id may be a list).
std::vector<int64_t> get_ids(const json& j, const std::string& where, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  auto one = [&](const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      throw invalid_input(where + ": " + key + ": expected a token id, got " + render(v));
    return v.get<int64_t>();
  };
  if (it->is_array()) {
    std::vector<int64_t> out;
    for (const auto& v : *it) out.push_back(one(v));
    return out;
  }
  return {one(*it)};
}

}  // namespace

double check_float32_value(double v, const std::string& what, double min_exclusive, bool reciprocal) {
  const float f = static_cast<float>(v);
  const char* range = "positive normal float32 values lie between 1.2e-38 and 3.4e38";
  if (!std::isfinite(v) || !std::isnormal(f) || f < 0)
    throw invalid_input(fmt::format("{} = {}: qrt computes with it in float32, where it is {} ({})", what, v, f, range));
  if (!(v > min_exclusive))
    throw invalid_input(fmt::format("{} = {}: expected a value above {}", what, v, min_exclusive));
  if (reciprocal && !std::isnormal(1.0f / f))
    throw invalid_input(fmt::format("{} = {}: qrt divides by it in float32, and 1 / {} is {} there", what, v, f, 1.0f / f));
  return v;
}

int64_t stored_layer_count(const std::vector<std::string>& names, const std::string& prefix) {
  int64_t count = 0;
  for (const std::string& n : names) {
    if (n.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t dot = n.find('.', prefix.size());
    const std::string digits = n.substr(prefix.size(), dot == std::string::npos ? std::string::npos : dot - prefix.size());
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    count = std::max<int64_t>(count, std::stoll(digits) + 1);
  }
  return count;
}

ModelConfig finish_config(const json& j, const std::string& where, ModelConfig& c);

// Phi-3's longrope: one divisor per rotary frequency for contexts within
// original_max_position_embeddings (short_factor) and beyond it (long_factor), and the factor cos
// and sin are multiplied by. Phi3Config keeps original_max_position_embeddings at the top level
// (default 4096) and derives factor from it and max_position_embeddings unless one is given.
void read_longrope(const json& j, const std::string& where, const json& rs, const std::string& w2, ModelConfig& c) {
  RopeScaling& r = c.rope_scaling;
  r.type = "longrope";
  const int64_t half = (c.rotary_dim > 0 ? c.rotary_dim : c.head_dim) / 2;
  for (const char* key : {"short_factor", "long_factor"}) {
    auto it = rs.find(key);
    if (it == rs.end() || !it->is_array() || static_cast<int64_t>(it->size()) != half)
      throw invalid_input(fmt::format("{}.{}: expected a list of {} numbers (one per rotary frequency: the rotary "
                                      "dimension / 2)",
                                      w2, key, half));
    std::vector<double>& out = std::string(key) == "short_factor" ? r.short_factor : r.long_factor;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& v = (*it)[i];
      if (!v.is_number()) throw invalid_input(fmt::format("{}.{}[{}]: expected a number, got {}", w2, key, i, render(v)));
      out.push_back(check_float32_value(v.get<double>(), fmt::format("{}.{}[{}]", w2, key, i), 0, true));
    }
  }
  r.original_max_position_embeddings = get_dim(j, where, "original_max_position_embeddings", 4096);
  const double ratio = static_cast<double>(c.max_position_embeddings) / static_cast<double>(r.original_max_position_embeddings);
  r.factor = check_float32_value(get_positive(rs, w2, "factor", ratio), w2 + ".factor", 0, false);
  // transformers: sqrt(1 + ln(factor) / ln(original_max_position_embeddings)), 1 when factor <= 1.
  double attention = 1.0;
  if (r.factor > 1.0)
    attention = std::sqrt(1.0 + std::log(r.factor) / std::log(static_cast<double>(r.original_max_position_embeddings)));
  if (auto a = rs.find("attention_factor"); a != rs.end() && !a->is_null()) attention = get_positive(rs, w2, "attention_factor", 1.0);
  r.attention_factor = check_float32_value(attention, w2 + ".attention_factor", 0, false);
}

ModelConfig model_config_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw invalid_input(where + ": expected a JSON object");
  ModelConfig c;
  auto arch = j.find("architectures");
  if (arch == j.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string())
    throw invalid_input(where + ": architectures: expected a list with the model class name (e.g. [\"LlamaForCausalLM\"])");
  c.architecture = (*arch)[0].get<std::string>();
  const auto supported = supported_architectures();
  if (std::find(supported.begin(), supported.end(), c.architecture) == supported.end()) {
    std::string list;
    for (const auto& a : supported) list += (list.empty() ? "" : ", ") + a;
    throw unsupported(where + ": architecture " + io::quote_name(c.architecture, 80) + " is not supported (supported: " +
                      list + ")");
  }
  if (auto mt = j.find("model_type"); mt != j.end() && mt->is_string()) c.model_type = mt->get<std::string>();
  const bool gemma2 = c.architecture == "Gemma2ForCausalLM", phi3 = c.architecture == "Phi3ForCausalLM";
  if (c.model_type.empty())
    c.model_type = c.architecture == "Qwen2ForCausalLM"     ? "qwen2"
                   : c.architecture == "MistralForCausalLM" ? "mistral"
                   : gemma2                                 ? "gemma2"
                   : phi3                                   ? "phi3"
                                                            : "llama";
  c.hidden_size = get_dim(j, where, "hidden_size", std::nullopt);
  c.intermediate_size = get_dim(j, where, "intermediate_size", std::nullopt);
  c.num_layers = get_dim(j, where, "num_hidden_layers", std::nullopt);
  c.num_heads = get_dim(j, where, "num_attention_heads", std::nullopt);
  c.num_kv_heads = get_dim(j, where, "num_key_value_heads", c.num_heads);
  c.vocab_size = get_dim(j, where, "vocab_size", std::nullopt);
  if (c.num_heads % c.num_kv_heads != 0)
    throw invalid_input(where + ": num_key_value_heads " + std::to_string(c.num_kv_heads) +
                        " does not divide num_attention_heads " + std::to_string(c.num_heads));
  std::optional<int64_t> default_head_dim;
  if (c.hidden_size % c.num_heads == 0) default_head_dim = c.hidden_size / c.num_heads;
  // Fields save_pretrained leaves out take the values of the architecture's config class.
  if (gemma2) default_head_dim = 256;
  if (!default_head_dim && !(j.contains("head_dim") && !j["head_dim"].is_null()))
    throw invalid_input(where + ": hidden_size " + std::to_string(c.hidden_size) + " is not a multiple of num_attention_heads " +
                        std::to_string(c.num_heads) + " and head_dim is not given");
  c.head_dim = get_dim(j, where, "head_dim", default_head_dim);
  if (c.head_dim % 2 != 0) throw invalid_input(where + ": head_dim " + std::to_string(c.head_dim) + " must be even for RoPE");
  c.rms_norm_eps = check_float32_value(get_positive(j, where, "rms_norm_eps", phi3 ? 1e-5 : 1e-6), where + ": rms_norm_eps", 0, false);
  if (c.rms_norm_eps > 1) throw invalid_input(fmt::format("{}: rms_norm_eps = {}: expected at most 1", where, c.rms_norm_eps));
  // RoPE frequencies are base^(-2i/d) in float32: a base at or below 1 makes them grow with i.
  // transformers 5 writes rope_theta and the scaling into one object, rope_parameters.
  const json* rope_params = nullptr;
  if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) rope_params = &*rp;
  const bool theta_in_params = !j.contains("rope_theta") && rope_params && rope_params->contains("rope_theta");
  c.rope_theta = check_float32_value(get_positive(theta_in_params ? *rope_params : j, where, "rope_theta", 10000.0),
                                     where + (theta_in_params ? ": rope_parameters.rope_theta" : ": rope_theta"), 1, false);
  // The gated MLP's activation: SiLU, or GELU's tanh approximation (Gemma-2); another one would
  // run silently wrong. Gemma-2 reads hidden_activation alone (its hidden_act is a leftover of
  // Gemma-1 configs that the reference implementation ignores), the others hidden_act.
  if (gemma2) c.hidden_act = "gelu_pytorch_tanh";
  for (const char* key : {"hidden_act", "hidden_activation"}) {
    if (gemma2 && std::string(key) == "hidden_act") continue;
    if (auto act = j.find(key); act != j.end() && !act->is_null()) {
      if (!act->is_string())
        throw invalid_input(where + ": " + key + ": expected an activation name, got " + render(*act));
      const std::string name = act->get<std::string>();
      if (name == "silu" || name == "swish") c.hidden_act = "silu";
      else if (name == "gelu_pytorch_tanh") c.hidden_act = name;
      else
        throw unsupported(where + ": " + key + " " + io::quote_name(name, 40) +
                          " is not supported: qrt runs gated MLPs with \"silu\" or \"gelu_pytorch_tanh\" only");
    }
  }
  if (gemma2) {
    // A cap of null (or absent where the class default is null) turns capping off.
    auto cap = [&](const char* key, double fallback) {
      auto it = j.find(key);
      if (it != j.end() && it->is_null()) return 0.0;
      const double v = get_positive(j, where, key, fallback);
      return check_float32_value(v, where + ": " + key, 0, true);
    };
    c.attn_logit_softcapping = cap("attn_logit_softcapping", 50.0);
    c.final_logit_softcapping = cap("final_logit_softcapping", 30.0);
    c.query_pre_attn_scalar = check_float32_value(get_positive(j, where, "query_pre_attn_scalar", 256.0),
                                                  where + ": query_pre_attn_scalar", 0, true);
  } else {
    for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping", "query_pre_attn_scalar"})
      if (auto it = j.find(key); it != j.end() && !it->is_null())
        throw unsupported(where + ": " + key + " is set, but " + c.architecture +
                          " has no such rule in qrt (it belongs to Gemma2ForCausalLM)");
  }
  // Partial rotary embeddings: Phi-3 rotates the first int(head_dim * partial_rotary_factor)
  // dimensions of each head (top level or, transformers 5, in rope_parameters). Other
  // architectures' reference implementations rotate the whole head whatever the field says.
  for (const json* holder : {&j, j.contains("rope_parameters") ? &j["rope_parameters"] : nullptr}) {
    if (!holder || !holder->is_object()) continue;
    auto prf = holder->find("partial_rotary_factor");
    if (prf == holder->end() || prf->is_null()) continue;
    if (prf->is_number() && prf->get<double>() == 1.0) {
      c.rotary_dim = 0;  // rope_parameters' value comes after the top-level one and wins, as in transformers
      continue;
    }
    if (!phi3)
      throw unsupported(where + ": partial_rotary_factor " + render(*prf) + " is not supported for " + c.architecture +
                        ": qrt rotates part of the head for Phi3ForCausalLM only");
    if (!prf->is_number() || !(prf->get<double>() > 0) || prf->get<double>() > 1)
      throw invalid_input(where + ": partial_rotary_factor " + render(*prf) + ": expected a number in (0, 1]");
    const int64_t rot = static_cast<int64_t>(static_cast<double>(c.head_dim) * prf->get<double>());
    if (rot < 2 || rot % 2 != 0)
      throw invalid_input(fmt::format("{}: partial_rotary_factor {} gives {} rotary dimensions of head_dim {}: expected "
                                      "an even number of at least 2",
                                      where, render(*prf), rot, c.head_dim));
    c.rotary_dim = rot;
  }
  c.max_position_embeddings = get_dim(j, where, "max_position_embeddings", 2048);
  c.tie_word_embeddings = get_flag(j, where, "tie_word_embeddings", gemma2);
  c.attention_bias = c.architecture == "Qwen2ForCausalLM" ? true : get_flag(j, where, "attention_bias", false);
  c.mlp_bias = get_flag(j, where, "mlp_bias", false);
  if (auto sw = j.find("sliding_window"); sw != j.end() && sw->is_number_integer() && sw->get<int64_t>() > 0) {
    const bool used = c.architecture != "Qwen2ForCausalLM" || get_flag(j, where, "use_sliding_window", false);
    if (used) c.sliding_window = sw->get<int64_t>();
  } else if (gemma2 && (sw == j.end())) {
    c.sliding_window = 4096;  // Gemma2Config's default
  }
  if (gemma2) {
    // Gemma-2 alternates: even-indexed layers attend within the window, odd ones to everything.
    // A config that lists layer_types says it per layer.
    c.sliding_layers.assign(static_cast<size_t>(c.num_layers), false);
    for (int64_t i = 0; i < c.num_layers; i += 2) c.sliding_layers[static_cast<size_t>(i)] = true;
    if (auto lt = j.find("layer_types"); lt != j.end() && !lt->is_null()) {
      if (!lt->is_array() || static_cast<int64_t>(lt->size()) != c.num_layers)
        throw invalid_input(where + ": layer_types: expected a list of " + std::to_string(c.num_layers) +
                            " layer kinds (num_hidden_layers)");
      for (size_t i = 0; i < lt->size(); ++i) {
        const json& t = (*lt)[i];
        if (t == "sliding_attention") c.sliding_layers[i] = true;
        else if (t == "full_attention") c.sliding_layers[i] = false;
        else
          throw unsupported(where + ": layer_types[" + std::to_string(i) + "] " + render(t) +
                            ": expected \"sliding_attention\" or \"full_attention\"");
      }
    }
  }
  auto rs = j.find("rope_scaling");
  const bool scaling_in_params = (rs == j.end() || rs->is_null()) && rope_params;
  if (scaling_in_params) rs = j.find("rope_parameters");
  if (rs != j.end() && !rs->is_null()) {
    if (!rs->is_object()) throw invalid_input(where + ": rope_scaling: expected an object or null, got " + render(*rs));
    const std::string w2 = where + (scaling_in_params ? ": rope_parameters" : ": rope_scaling");
    for (const char* key : {"rope_type", "type"})
      if (auto t = rs->find(key); t != rs->end() && t->is_string()) {
        c.rope_scaling.type = t->get<std::string>();
        break;
      }
    if (c.rope_scaling.type == "default") c.rope_scaling.type.clear();
    // Phi-3's long-context models: transformers' Phi3Config reads the older names "su" and "yarn"
    // as longrope too.
    const std::string& type = c.rope_scaling.type;
    if (type == "longrope" || type == "su" || (phi3 && type == "yarn")) {
      if (!phi3)
        throw unsupported(w2 + ": type " + io::quote_name(type, 20) + " is supported for Phi3ForCausalLM only, not " +
                          c.architecture);
      read_longrope(j, where, *rs, w2, c);
      return finish_config(j, where, c);
    }
    c.rope_scaling.factor = check_float32_value(get_positive(*rs, w2, "factor", 1.0), w2 + ".factor", 0, true);
    c.rope_scaling.low_freq_factor =
        check_float32_value(get_positive(*rs, w2, "low_freq_factor", 1.0), w2 + ".low_freq_factor", 0, true);
    c.rope_scaling.high_freq_factor =
        check_float32_value(get_positive(*rs, w2, "high_freq_factor", 4.0), w2 + ".high_freq_factor", 0, true);
    c.rope_scaling.original_max_position_embeddings = get_dim(*rs, w2, "original_max_position_embeddings", 8192);
    if (c.rope_scaling.type == "llama3" && c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor)
      throw invalid_input(w2 + ": high_freq_factor must be greater than low_freq_factor");
  }
  return finish_config(j, where, c);
}

// The token ids and dtype, read last whatever the RoPE.
ModelConfig finish_config(const json& j, const std::string& where, ModelConfig& c) {
  const auto bos = get_ids(j, where, "bos_token_id");
  if (!bos.empty()) c.bos_token_id = bos[0];
  c.eos_token_ids = get_ids(j, where, "eos_token_id");
  const auto pad = get_ids(j, where, "pad_token_id");
  if (!pad.empty()) c.pad_token_id = pad[0];
  for (const char* key : {"torch_dtype", "dtype"})
    if (auto d = j.find(key); d != j.end() && d->is_string()) {
      c.torch_dtype = d->get<std::string>();
      break;
    }
  return c;
}

json model_config_to_json(const ModelConfig& c) {
  json j;
  j["architectures"] = {c.architecture};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else if (c.rope_scaling.type == "longrope") {
    const RopeScaling& r = c.rope_scaling;
    j["rope_scaling"] = {{"type", "longrope"},
                         {"short_factor", r.short_factor},
                         {"long_factor", r.long_factor},
                         {"factor", r.factor},
                         {"attention_factor", r.attention_factor}};
    j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  } else {
    j["rope_scaling"] = {{"rope_type", c.rope_scaling.type},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  }
  if (c.rotary_dim > 0 && c.rotary_dim != c.head_dim)
    j["partial_rotary_factor"] = static_cast<double>(c.rotary_dim) / static_cast<double>(c.head_dim);
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2") {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids;
  if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  j["hidden_act"] = c.hidden_act;
  if (c.architecture == "Gemma2ForCausalLM") {
    // Gemma2Config's defaults differ from what a GGUF file implies (query_pre_attn_scalar 256):
    // every rule is written out.
    j["hidden_activation"] = c.hidden_act;
    j["query_pre_attn_scalar"] = c.query_pre_attn_scalar;
    j["attn_logit_softcapping"] = c.attn_logit_softcapping > 0 ? json(c.attn_logit_softcapping) : json(nullptr);
    j["final_logit_softcapping"] = c.final_logit_softcapping > 0 ? json(c.final_logit_softcapping) : json(nullptr);
    if (!c.sliding_layers.empty()) {
      json types = json::array();
      for (const bool sliding : c.sliding_layers) types.push_back(sliding ? "sliding_attention" : "full_attention");
      j["layer_types"] = types;
    }
  }
  j["torch_dtype"] = c.torch_dtype.empty() ? "float16" : c.torch_dtype;
  return j;
}

}  // namespace quant

ModelConfig parse_model_config(const std::string& json_text, const std::string& where) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded()) throw invalid_input(where + ": not valid JSON");
  return quant::model_config_from_json(j, where);
}

std::vector<int64_t> gguf_unpermute_rows(int64_t rows, int64_t n_head) {
  if (n_head <= 0 || rows <= 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0)
    throw invalid_input("GGUF rope un-permute: " + std::to_string(rows) + " rows do not split into " +
                        std::to_string(n_head) + " heads of even size");
  const int64_t hd = rows / n_head, half = hd / 2;
  std::vector<int64_t> src(static_cast<size_t>(rows));
  // llama.cpp's converter: w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2) -> GGUF row h*hd + 2j + i
  // holds HF row h*hd + i*hd/2 + j.
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j) src[h * hd + i * half + j] = h * hd + 2 * j + i;
  return src;
}

}  // namespace qrt
