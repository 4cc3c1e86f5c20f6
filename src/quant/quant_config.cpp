// Quantization configs: parse (with the aliases and defaults of
// docs/CHECKPOINTS.md, "quantization_config"), validate with the rules stated there, serialize back.
// Fields are read through `Fields`, which remembers what was consumed: whatever is left is kept verbatim for
// serialization, and reported as a warning unless it is a field the method is known to carry
// (calibration-only settings etc.).
#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "qrt/error.h"
#include "quant/formats/codecs.h"
#include "quant/quant_config_json.h"

namespace qrt {

using nlohmann::json;

namespace {

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string render(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads the fields of one JSON object with type checks whose errors name "<where>.<field>".
class Fields {
 public:
  Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw invalid_input(where_ + "." + key + ": " + what);
  }
  // The first of `keys` present (aliases), marking all of them consumed; nullptr if none.
  const json* find(std::initializer_list<const char*> keys) {
    const json* hit = nullptr;
    for (const char* k : keys) {
      auto it = obj_.find(k);
      if (it == obj_.end()) continue;
      used_.insert(k);
      if (!hit) {
        hit = &*it;
        hit_key_ = k;
      }
    }
    return hit;
  }
  const std::string& last_key() const { return hit_key_; }
  const json& object() const { return obj_; }
  bool has(const char* key) const { return obj_.contains(key); }
  void consume(const char* key) { used_.insert(key); }

  std::optional<int64_t> get_int(std::initializer_list<const char*> keys) {
    const json* v = find(keys);
    if (!v || v->is_null()) return std::nullopt;
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) return static_cast<int64_t>(d);
    }
    fail(hit_key_, "expected an integer, got " + render(*v));
  }
  std::optional<double> get_number(std::initializer_list<const char*> keys) {
    const json* v = find(keys);
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_number()) fail(hit_key_, "expected a number, got " + render(*v));
    return v->get<double>();
  }
  std::optional<bool> get_bool(std::initializer_list<const char*> keys) {
    const json* v = find(keys);
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_boolean()) fail(hit_key_, "expected true or false, got " + render(*v));
    return v->get<bool>();
  }
  std::optional<std::string> get_string(std::initializer_list<const char*> keys) {
    const json* v = find(keys);
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_string()) fail(hit_key_, "expected a string, got " + render(*v));
    return v->get<std::string>();
  }
  std::vector<std::string> get_string_list(std::initializer_list<const char*> keys) {
    const json* v = find(keys);
    if (!v || v->is_null()) return {};
    if (!v->is_array()) fail(hit_key_, "expected a list of strings, got " + render(*v));
    std::vector<std::string> out;
    for (const auto& e : *v) {
      if (!e.is_string()) fail(hit_key_, "expected a list of strings, got an element " + render(e));
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  int one_of(const char* key, int64_t value, const std::vector<int>& allowed) {
    for (int a : allowed)
      if (a == value) return a;
    std::vector<std::string> names;
    for (int a : allowed) names.push_back(std::to_string(a));
    fail(key, std::to_string(value) + " is not one of " + join(names));
  }
  std::string one_of(const char* key, const std::string& value, const std::vector<std::string>& allowed) {
    if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return value;
    fail(key, "'" + value + "' is not one of " + join(allowed));
  }

  // Fields not consumed: kept verbatim; those not in `known` are reported.
  std::string leftovers(const std::set<std::string>& known, std::vector<std::string>& warnings) const {
    json rest = json::object();
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (used_.count(it.key())) continue;
      rest[it.key()] = it.value();
      if (!known.count(it.key()))
        warnings.push_back(where_ + "." + it.key() + ": unknown field, kept as is but not used by qrt");
    }
    return rest.dump();
  }

 private:
  const json& obj_;
  std::string where_;
  std::set<std::string> used_;
  std::string hit_key_;
};

// Optional fields that are modelled but written back only when the input had them (or they are
// not at their default): their original values ride in the passthrough object, and the serializer
// overwrites them with the modelled value.
std::string keep_present(const json& obj, const std::string& rest_text, std::initializer_list<const char*> keys) {
  json rest = json::parse(rest_text);
  for (const char* k : keys)
    if (obj.contains(k)) rest[k] = obj[k];
  return rest.dump();
}

int checked_int(Fields& f, const char* key, int64_t v) {
  if (v < INT32_MIN || v > INT32_MAX) f.fail(key, std::to_string(v) + " is out of range");
  return static_cast<int>(v);
}

int parse_group_size(Fields& f, std::initializer_list<const char*> keys, int fallback, std::vector<std::string>& warnings,
                     const std::string& where, bool warn_missing) {
  auto v = f.get_int(keys);
  if (!v) {
    if (warn_missing)
      warnings.push_back(where + ".group_size: missing, assuming " + std::to_string(fallback) + " (transformers default)");
    return fallback;
  }
  const std::string key = f.last_key();
  if (*v != -1 && *v <= 0) f.fail(key, std::to_string(*v) + " must be -1 (one group per column) or positive");
  return checked_int(f, key.c_str(), *v);
}

void check_group_divides(int group_size, int64_t in_features, const std::string& where) {
  if (group_size > 0 && in_features > 0 && in_features % group_size != 0)
    throw invalid_input(where + ": quantization_config.group_size " + std::to_string(group_size) +
                        " does not divide in_features " + std::to_string(in_features));
}

// ---------------------------------------------------------------------------------------------

GptqConfig parse_gptq(Fields& f, const std::string& where, std::vector<std::string>& warnings, std::string& pass) {
  GptqConfig c;
  c.wrote_method_key = f.has("method");
  c.wrote_format_key = f.has("format");
  f.find({"quant_method", "method"});
  auto bits = f.get_int({"bits", "w_bit"});
  if (!bits) f.fail("bits", "missing (required for gptq: 2, 3, 4 or 8)");
  c.bits = f.one_of(f.last_key().c_str(), *bits, {2, 3, 4, 8});
  c.group_size = parse_group_size(f, {"group_size", "q_group_size"}, 128, warnings, where, true);
  c.desc_act = f.get_bool({"desc_act"}).value_or(false);
  c.static_groups = f.get_bool({"static_groups"}).value_or(false);
  c.sym = f.get_bool({"sym"}).value_or(true);
  c.true_sequential = f.get_bool({"true_sequential"}).value_or(true);
  if (auto d = f.get_number({"damp_percent"})) {
    if (!(*d > 0.0 && *d < 1.0)) f.fail("damp_percent", render(json(*d)) + " is not between 0 and 1 (exclusive)");
    c.damp_percent = *d;
  }
  bool marlin = f.get_bool({"is_marlin_format"}).value_or(false);
  if (auto fmt = f.get_string({"checkpoint_format", "format"})) {
    const std::string key = f.last_key();
    c.checkpoint_format = lower(*fmt);
    if (c.checkpoint_format == "marlin") marlin = true;
    else c.checkpoint_format = f.one_of(key.c_str(), c.checkpoint_format, {"gptq", "gptq_v2"});
  }
  if (marlin)
    throw unsupported(where + ".checkpoint_format: 'marlin' (AutoGPTQ pre-packed Marlin tensors) is not supported; "
                      "supported: gptq, gptq_v2");
  // Any name: the runtime maps it through the alias table or ignores it with a warning (the file
  // may be written for another library's kernels); only the type is checked here.
  if (auto b = f.get_string({"backend"})) c.backend = lower(*b);
  c.lm_head = f.get_bool({"lm_head"}).value_or(false);
  if (auto p = f.get_string({"pack_dtype"})) {
    if (*p != "int32") throw unsupported(where + ".pack_dtype: '" + *p + "' is not supported (only int32)");
    c.pack_dtype = *p;
  }
  if (c.static_groups && !c.desc_act)
    warnings.push_back(where + ".static_groups: true has no effect without desc_act");
  if (c.desc_act && c.group_size == -1) {
    warnings.push_back(where + ".desc_act: true with group_size -1 is equivalent to false (one group); treated as false");
    c.desc_act = false;
  }
  // Runtime fields of a GPTQConfig: read and kept verbatim for the round trip.
  if (auto m = f.get_int({"max_input_length"})) {
    if (*m < 1 || *m > (int64_t{1} << 31)) f.fail("max_input_length", std::to_string(*m) + " must be in 1..2^31");
    c.max_input_length = *m;
  }
  c.use_exllama = f.get_bool({"use_exllama"});
  if (auto d = f.get_bool({"disable_exllama"})) {
    if (!c.use_exllama) c.use_exllama = !*d;   // the older spelling
    else if (*c.use_exllama == *d)
      warnings.push_back(where + ".disable_exllama: contradicts use_exllama; use_exllama is used");
  }
  if (const json* e = f.find({"exllama_config"}); e && !e->is_null()) {
    if (!e->is_object()) f.fail("exllama_config", "expected an object, got " + render(*e));
    if (e->contains("version")) {
      const json& v = (*e)["version"];
      if (!v.is_number_integer() || (v.get<int64_t>() != 1 && v.get<int64_t>() != 2))
        f.fail("exllama_config.version", render(v) + " is not 1 or 2");
      c.exllama_version = static_cast<int>(v.get<int64_t>());
    }
  }
  c.use_cuda_fp16 = f.get_bool({"use_cuda_fp16"});
  if (const json* d = f.find({"dynamic"}); d && !d->is_null() && !d->empty()) {
    warnings.push_back(where + ".dynamic: per-module overrides are not applied; layer shapes are checked against "
                       "the global bits/group_size");
  }
  pass = f.leftovers({"meta", "dataset", "tokenizer", "model_seqlen", "block_name_to_quantize",
                      "module_name_preceding_first_block", "batch_size", "pad_token_id", "max_input_length",
                      "cache_block_outputs", "modules_in_block_to_quantize", "use_exllama", "exllama_config",
                      "disable_exllama", "use_cuda_fp16", "model_name_or_path", "model_file_base_name",
                      "act_group_aware", "rotation", "mse", "v2", "v2_alpha", "hyb_act", "damp_auto_increment",
                      "offload_to_disk", "offload_to_disk_path", "quantizer", "quant_type", "adapter", "device",
                      "buffered_fwd", "mock_quantization", "fail_safe", "modules_to_not_convert", "true_sequential",
                      "zero_point", "version"},
                     warnings);
  pass = keep_present(f.object(), pass, {"static_groups", "backend", "lm_head", "pack_dtype", "format", "method", "dynamic",
                                        "max_input_length", "use_exllama", "disable_exllama", "exllama_config",
                                        "use_cuda_fp16"});
  return c;
}

AwqConfig parse_awq(Fields& f, const std::string& where, std::vector<std::string>& warnings, std::string& pass) {
  AwqConfig c;
  f.find({"quant_method"});
  if (auto bits = f.get_int({"bits", "w_bit"})) c.bits = f.one_of(f.last_key().c_str(), *bits, {2, 3, 4, 8});
  c.group_size = parse_group_size(f, {"group_size", "q_group_size"}, 128, warnings, where, false);
  c.zero_point = f.get_bool({"zero_point"}).value_or(true);
  if (auto v = f.get_string({"version", "format"})) {
    const std::string key = f.last_key();
    c.version = f.one_of(key.c_str(), lower(*v), {"gemm", "gemv", "gemv_fast", "exllama", "ipex", "marlin", "llm-awq"});
  }
  if (auto b = f.get_string({"backend"})) {
    c.backend = lower(*b);   // any name, as for GPTQ
    if (c.backend == "llm-awq") {   // backend llm-awq also names the llm-awq layout (docs/CHECKPOINTS.md, "AWQ")
      c.version = "llm-awq";
    }
  }
  c.modules_to_not_convert = f.get_string_list({"modules_to_not_convert"});
  c.do_fuse = f.get_bool({"do_fuse"});
  if (auto m = f.get_int({"fuse_max_seq_len"})) {
    if (*m < 1 || *m > (int64_t{1} << 31)) f.fail("fuse_max_seq_len", std::to_string(*m) + " must be in 1..2^31");
    c.fuse_max_seq_len = *m;
  }
  if (const json* m = f.find({"modules_to_fuse"}); m && !m->is_null()) c.modules_to_fuse = true;
  if (const json* e = f.find({"exllama_config"}); e && !e->is_null()) {
    if (!e->is_object()) f.fail("exllama_config", "expected an object, got " + render(*e));
    if (e->contains("version") && (*e)["version"].is_number_integer())
      c.exllama_version = static_cast<int>((*e)["version"].get<int64_t>());
  }
  pass = f.leftovers({"exllama_config", "do_fuse", "fuse_max_seq_len", "modules_to_fuse", "desc_act", "sym",
                      "checkpoint_format", "method", "meta", "pack_dtype", "lm_head", "damp_percent",
                      "true_sequential", "dynamic", "act_group_aware", "static_groups"},
                     warnings);
  pass = keep_present(f.object(), pass, {"backend", "format", "modules_to_not_convert", "do_fuse", "fuse_max_seq_len",
                                        "modules_to_fuse", "exllama_config"});
  return c;
}

Fp8Config parse_fp8(Fields& f, const std::string& where, std::vector<std::string>& warnings, std::string& pass) {
  Fp8Config c;
  f.find({"quant_method"});
  if (auto a = f.get_string({"activation_scheme"})) c.activation_scheme = f.one_of("activation_scheme", lower(*a), {"dynamic", "static"});
  if (const json* b = f.find({"weight_block_size"}); b && !b->is_null()) {
    if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() || !(*b)[1].is_number_integer() ||
        (*b)[0].get<int64_t>() <= 0 || (*b)[1].get<int64_t>() <= 0 || (*b)[0].get<int64_t>() > (1 << 20) ||
        (*b)[1].get<int64_t>() > (1 << 20))
      f.fail("weight_block_size", render(*b) + " is not a list of 2 positive integers [block_out, block_in]");
    c.weight_block_size = std::make_pair(static_cast<int>((*b)[0].get<int64_t>()), static_cast<int>((*b)[1].get<int64_t>()));
  }
  if (auto fmt = f.get_string({"fmt"})) {
    if (lower(*fmt) != "e4m3") throw unsupported(where + ".fmt: '" + *fmt + "' is not supported (e4m3 only)");
    c.fmt = lower(*fmt);
  }
  if (auto s = f.get_string({"scale_fmt"})) c.scale_fmt = f.one_of("scale_fmt", *s, {"float", "ue8m0"});
  if (c.scale_fmt == "ue8m0")
    warnings.push_back(where + ".scale_fmt: ue8m0 scales are read as stored floats");
  c.modules_to_not_convert = f.get_string_list({"modules_to_not_convert", "ignored_layers"});
  pass = f.leftovers({"dequantize", "kv_cache_scheme"}, warnings);
  pass = keep_present(f.object(), pass, {"fmt", "scale_fmt", "modules_to_not_convert", "ignored_layers"});
  return c;
}

Int8Config parse_int8(Fields& f, const std::string& where, std::vector<std::string>& warnings, std::string& pass) {
  Int8Config c;
  f.find({"quant_method"});
  c.load_in_8bit = f.get_bool({"load_in_8bit", "_load_in_8bit"}).value_or(false);
  c.load_in_4bit = f.get_bool({"load_in_4bit", "_load_in_4bit"}).value_or(false);
  if (c.load_in_8bit && c.load_in_4bit) f.fail("load_in_4bit", "load_in_8bit and load_in_4bit are both true");
  if (!c.load_in_8bit && !c.load_in_4bit) f.fail("load_in_8bit", "neither load_in_8bit nor load_in_4bit is true");
  if (auto t = f.get_number({"llm_int8_threshold"})) {
    if (!std::isfinite(*t)) f.fail("llm_int8_threshold", "must be finite");
    c.llm_int8_threshold = *t;
  }
  c.llm_int8_skip_modules = f.get_string_list({"llm_int8_skip_modules"});
  c.llm_int8_has_fp16_weight = f.get_bool({"llm_int8_has_fp16_weight"}).value_or(false);
  c.llm_int8_enable_fp32_cpu_offload = f.get_bool({"llm_int8_enable_fp32_cpu_offload"}).value_or(false);
  if (auto qt = f.get_string({"bnb_4bit_quant_type"})) f.one_of("bnb_4bit_quant_type", *qt, {"fp4", "nf4"});
  if (auto st = f.get_string({"bnb_4bit_quant_storage"}))
    f.one_of("bnb_4bit_quant_storage", *st, {"float16", "float32", "int8", "uint8", "float64", "bfloat16"});
  pass = f.leftovers({"bnb_4bit_compute_dtype", "bnb_4bit_use_double_quant", "bnb_4bit_quant_type",
                      "bnb_4bit_quant_storage"},
                     warnings);
  return c;   // the caller puts the bnb_4bit_* values consumed by the checks back verbatim
}

TorchAoConfig parse_torchao(Fields& f, const json& obj, const std::string& where, std::vector<std::string>& warnings,
                            std::string& pass) {
  TorchAoConfig c;
  f.find({"quant_method"});
  const json* qt = f.find({"quant_type"});
  if (!qt || qt->is_null()) f.fail("quant_type", "missing (e.g. \"int4_weight_only\")");
  auto read_layout = [&](const json& l, const char* key) -> std::string {
    if (l.is_string()) return l.get<std::string>();
    if (l.is_object() && l.contains("_type") && l["_type"].is_string()) return l["_type"].get<std::string>();
    if (l.is_null()) return "";
    f.fail(key, "layout must be a string or an object with \"_type\", got " + render(l));
  };
  auto read_group = [&](const json& g, const char* key) -> int {
    if (!g.is_number_integer()) f.fail(key, "group_size must be an integer, got " + render(g));
    return f.one_of(key, g.get<int64_t>(), {32, 64, 128, 256});
  };
  if (qt->is_string()) {
    c.quant_type = f.one_of("quant_type", qt->get<std::string>(),
                            {"int4_weight_only", "int8_weight_only", "int8_dynamic_activation_int8_weight",
                             "autoquant", "float8_weight_only", "float8_dynamic_activation_float8_weight"});
    if (const json* kw = f.find({"quant_type_kwargs"}); kw && !kw->is_null()) {
      if (!kw->is_object()) f.fail("quant_type_kwargs", "expected an object, got " + render(*kw));
      if (kw->contains("group_size")) c.group_size = read_group((*kw)["group_size"], "quant_type_kwargs.group_size");
      if (kw->contains("layout")) c.layout = read_layout((*kw)["layout"], "quant_type_kwargs.layout");
      for (auto it = kw->begin(); it != kw->end(); ++it)
        if (it.key() != "group_size" && it.key() != "layout")
          warnings.push_back(where + ".quant_type_kwargs." + it.key() + ": not used by qrt");
    }
  } else if (qt->is_object()) {
    // torchao > 0.9: {"default": {"_type": "Int4WeightOnlyConfig", "_version": N, "_data": {...}}}
    c.serialized_aobase = true;
    const json* d = qt->contains("default") ? &(*qt)["default"] : nullptr;
    if (!d || !d->is_object() || !d->contains("_type") || !(*d)["_type"].is_string())
      f.fail("quant_type", "expected a string or {\"default\": {\"_type\": ..., \"_data\": ...}}, got " + render(*qt));
    const std::string type = (*d)["_type"].get<std::string>();
    if (type == "Int4WeightOnlyConfig") c.quant_type = "int4_weight_only";
    else if (type == "Int8WeightOnlyConfig") c.quant_type = "int8_weight_only";
    else if (type == "Int8DynamicActivationInt8WeightConfig") c.quant_type = "int8_dynamic_activation_int8_weight";
    else if (type == "Float8WeightOnlyConfig") c.quant_type = "float8_weight_only";
    else if (type == "Float8DynamicActivationFloat8WeightConfig") c.quant_type = "float8_dynamic_activation_float8_weight";
    else throw unsupported(where + ".quant_type.default._type: '" + type + "' is not supported");
    if (d->contains("_data") && (*d)["_data"].is_object()) {
      const json& data = (*d)["_data"];
      if (data.contains("group_size") && !data["group_size"].is_null())
        c.group_size = read_group(data["group_size"], "quant_type.default._data.group_size");
      if (data.contains("layout")) c.layout = read_layout(data["layout"], "quant_type.default._data.layout");
    }
  } else {
    f.fail("quant_type", "expected a string or an object, got " + render(*qt));
  }
  c.modules_to_not_convert = f.get_string_list({"modules_to_not_convert"});
  c.include_input_output_embeddings = f.get_bool({"include_input_output_embeddings"}).value_or(false);
  c.untie_embedding_weights = f.get_bool({"untie_embedding_weights"}).value_or(false);
  json rest = json::parse(f.leftovers({}, warnings));
  rest["quant_type"] = *qt;   // kept verbatim (the AOBaseConfig form has fields qrt does not model)
  if (obj.contains("quant_type_kwargs")) rest["quant_type_kwargs"] = obj["quant_type_kwargs"];
  pass = rest.dump();
  return c;
}

HiggsConfig parse_higgs(Fields& f, const std::string& where, std::vector<std::string>& warnings, std::string& pass) {
  HiggsConfig c;
  f.find({"quant_method"});
  if (auto b = f.get_int({"bits"})) c.bits = f.one_of("bits", *b, {2, 3, 4});
  if (auto p = f.get_int({"p"})) c.p = f.one_of("p", *p, {1, 2});
  if (auto h = f.get_int({"hadamard_size"})) {
    if (*h <= 0 || *h > (1 << 20)) f.fail("hadamard_size", std::to_string(*h) + " must be positive");
    c.hadamard_size = static_cast<int>(*h);
  }
  if (auto g = f.get_int({"group_size"})) c.group_size = f.one_of("group_size", *g, {64, 128, 256});
  if (c.hadamard_size % c.group_size != 0)
    f.fail("group_size", std::to_string(c.group_size) + " does not divide hadamard_size " + std::to_string(c.hadamard_size));
  c.modules_to_not_convert = f.get_string_list({"modules_to_not_convert"});
  if (const json* t = f.find({"tune_metadata"}); t && !t->is_null()) {
    if (!t->is_object()) f.fail("tune_metadata", "expected an object of module name -> metadata, got " + render(*t));
    for (auto it = t->begin(); it != t->end(); ++it) {
      if (!it.value().is_object())
        f.fail("tune_metadata." + it.key(), "expected an object, got " + render(it.value()));
      c.tune_metadata[it.key()] = it.value().dump();
    }
  }
  pass = f.leftovers({}, warnings);
  return c;
}

GgufConfig parse_gguf(Fields& f, const std::string& where, std::vector<std::string>& warnings, std::string& pass) {
  GgufConfig c;
  f.find({"quant_method"});
  if (auto t = f.get_int({"file_type"})) c.file_type = checked_int(f, "file_type", *t);
  if (auto v = f.get_int({"quantization_version"})) c.quantization_version = checked_int(f, "quantization_version", *v);
  if (const json* m = f.find({"tensor_type_counts"}); m && !m->is_null()) {
    if (!m->is_object()) f.fail("tensor_type_counts", "expected an object");
    for (auto it = m->begin(); it != m->end(); ++it) {
      if (!it.value().is_number_integer()) f.fail("tensor_type_counts." + it.key(), "expected an integer");
      c.tensor_type_counts[it.key()] = it.value().get<int64_t>();
    }
  }
  pass = f.leftovers({}, warnings);
  return c;
}

CompressedTensorsConfig parse_compressed_tensors(Fields& f, const json& obj, const std::string& where) {
  CompressedTensorsConfig c;
  f.find({"quant_method"});
  auto fmt = f.get_string({"format"});
  if (!fmt) f.fail("format", "missing (pack-quantized, naive-quantized or float-quantized)");
  c.format = *fmt;
  if (c.format != "pack-quantized" && c.format != "naive-quantized" && c.format != "float-quantized")
    throw unsupported(where + ".format: '" + c.format +
                      "' is not supported (pack-quantized, naive-quantized, float-quantized are)");
  const json* groups = f.find({"config_groups"});
  if (!groups || !groups->is_object() || groups->empty())
    f.fail("config_groups", "expected an object with one quantization scheme");
  if (groups->size() != 1)
    throw unsupported(where + ".config_groups: " + std::to_string(groups->size()) +
                      " schemes; qrt reads checkpoints with one scheme for every Linear");
  const std::string gname = groups->begin().key();
  const json& g = groups->begin().value();
  const std::string gw = "config_groups." + gname;
  if (!g.is_object()) f.fail(gw, "expected an object");
  if (g.contains("targets")) {
    const json& t = g["targets"];
    if (!t.is_array() || t.size() != 1 || !t[0].is_string() || t[0].get<std::string>() != "Linear")
      throw unsupported(where + "." + gw + ".targets: " + render(t) + " is not supported (only [\"Linear\"])");
  }
  if (!g.contains("weights") || !g["weights"].is_object()) f.fail(gw + ".weights", "missing");
  const json& w = g["weights"];
  auto field = [&](const char* key) -> const json* {
    return w.contains(key) && !w[key].is_null() ? &w[key] : nullptr;
  };
  if (const json* b = field("num_bits")) {
    if (!b->is_number_integer() || b->get<int64_t>() < 2 || b->get<int64_t>() > 8)
      f.fail(gw + ".weights.num_bits", render(*b) + " is not an integer in 2..8");
    c.num_bits = static_cast<int>(b->get<int64_t>());
  } else {
    c.num_bits = 8;
  }
  if (const json* t = field("type")) {
    if (!t->is_string() || (t->get<std::string>() != "int" && t->get<std::string>() != "float"))
      f.fail(gw + ".weights.type", render(*t) + " is not \"int\" or \"float\"");
    c.type = t->get<std::string>();
  }
  if (const json* s = field("symmetric")) {
    if (!s->is_boolean()) f.fail(gw + ".weights.symmetric", "expected true or false");
    c.symmetric = s->get<bool>();
  }
  c.strategy = "tensor";
  if (const json* s = field("strategy")) {
    if (!s->is_string()) f.fail(gw + ".weights.strategy", "expected a string");
    c.strategy = s->get<std::string>();
  }
  if (c.strategy != "group" && c.strategy != "channel" && c.strategy != "tensor")
    throw unsupported(where + "." + gw + ".weights.strategy: '" + c.strategy +
                      "' is not supported (group, channel, tensor are)");
  if (const json* s = field("group_size")) {
    if (!s->is_number_integer() || s->get<int64_t>() <= 0 || s->get<int64_t>() > (1 << 24))
      f.fail(gw + ".weights.group_size", render(*s) + " is not a positive integer");
    c.group_size = static_cast<int>(s->get<int64_t>());
  }
  if (c.strategy == "group" && c.group_size <= 0) f.fail(gw + ".weights.group_size", "required by strategy group");
  if (c.strategy != "group") c.group_size = -1;
  if (const json* d = field("dynamic"); d && !(d->is_boolean() && !d->get<bool>()))
    throw unsupported(where + "." + gw + ".weights.dynamic: " + render(*d) + " (weights quantized at run time) is not supported");
  if (const json* a = field("actorder"); a && !(a->is_boolean() && !a->get<bool>()))
    throw unsupported(where + "." + gw + ".weights.actorder: " + render(*a) + " (weight_g_idx) is not supported");
  if (g.contains("input_activations") && !g["input_activations"].is_null()) {
    const json& a = g["input_activations"];
    if (!a.is_object()) f.fail(gw + ".input_activations", "expected an object or null");
    c.input_activations = a.contains("dynamic") && a["dynamic"].is_boolean() && a["dynamic"].get<bool>() ? "dynamic" : "static";
  }
  const bool packed = c.format == "pack-quantized", naive = c.format == "naive-quantized";
  if ((packed || naive) && c.type != "int")
    throw unsupported(where + "." + gw + ".weights.type: " + c.format + " with " + c.type + " weights is not supported");
  if (naive && (c.num_bits != 8 || !c.symmetric || c.strategy == "group"))
    throw unsupported(where + ": naive-quantized is supported for symmetric 8-bit channel or tensor weights");
  if (c.format == "float-quantized" && (c.type != "float" || c.num_bits != 8 || c.strategy == "group"))
    throw unsupported(where + ": float-quantized is supported for 8-bit float (e4m3) channel or tensor weights");
  if (packed && c.strategy == "tensor")
    throw unsupported(where + "." + gw + ".weights.strategy: tensor is not supported for pack-quantized (group, channel)");
  if (packed && !c.symmetric && c.strategy == "tensor")
    throw unsupported(where + ": asymmetric tensor-wise zero points are not supported");
  c.ignore = f.get_string_list({"ignore"});
  c.passthrough_json = obj.dump();
  return c;
}

json passthrough(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  return j.is_object() ? j : json::object();
}

json string_list_or_null(const std::vector<std::string>& v) { return v.empty() ? json(nullptr) : json(v); }

}  // namespace

// ---- public API ----

const char* quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::None: return "none";
    case QuantMethod::Gptq: return "gptq";
    case QuantMethod::Awq: return "awq";
    case QuantMethod::Fp8: return "fp8";
    case QuantMethod::Int8: return "bitsandbytes";
    case QuantMethod::TorchAo: return "torchao";
    case QuantMethod::Higgs: return "higgs";
    case QuantMethod::Gguf: return "gguf";
    case QuantMethod::CompressedTensors: return "compressed-tensors";
  }
  return "?";
}

std::vector<std::string> known_quant_methods() {
  return {"gptq", "awq", "fp8", "bitsandbytes", "torchao", "higgs", "gguf", "compressed-tensors"};
}

CheckpointRuntime checkpoint_runtime(const QuantizationConfig& config) {
  CheckpointRuntime r;
  const std::string q = "quantization_config.";
  auto exllama_note = [&](int version) {
    r.notes.push_back(q + "exllama_config.version " + std::to_string(version) +
                      ": qrt has one ExLlama-class kernel (cuda_gemv), used for either version");
  };
  if (const auto* g = config.get<GptqConfig>()) {
    r.backend = g->backend;
    r.max_input_length = g->max_input_length;
    if (g->use_exllama && !*g->use_exllama)
      r.disable.push_back({"cuda_gemv", q + "use_exllama: false (or disable_exllama: true)"});
    else if (g->exllama_version)
      exllama_note(*g->exllama_version);
    if (g->use_cuda_fp16)
      r.notes.push_back(q + "use_cuda_fp16: not applied; qrt's CUDA kernels compute in the run's activation dtype "
                            "(fp16 or bf16)");
  } else if (const auto* a = config.get<AwqConfig>()) {
    r.backend = a->backend;
    if (a->backend == "autoawq") {
      // transformers' AwqConfig.backend names the library that packed the weights (its default),
      // not a kernel: AutoAWQ's layout is `version`, which the loader reads.
      r.backend = "auto";
      r.backend_field = q + "backend 'autoawq': AutoAWQ's " + a->version + " packing, kernels chosen per layer";
    }
    if (a->do_fuse || a->modules_to_fuse)
      r.notes.push_back(q + "do_fuse / modules_to_fuse: not applied; qrt fuses the q/k/v and gate/up projections "
                            "itself (runtime config fuse_projections), not AutoAWQ's fused modules");
    if (a->fuse_max_seq_len)
      r.notes.push_back(q + "fuse_max_seq_len " + std::to_string(*a->fuse_max_seq_len) +
                        ": not applied; the KV cache holds --max-input-length + --max-new-tokens positions");
    if (a->exllama_version) exllama_note(*a->exllama_version);
  } else if (const auto* f = config.get<Fp8Config>()) {
    if (f->activation_scheme == "static")
      r.notes.push_back(q + "activation_scheme static: the input_scale tensors are not applied; cuda_fp8 scales "
                            "activations per token (dynamic) and the CPU backends keep them in float");
  } else if (const auto* h = config.get<HiggsConfig>()) {
    // FLUTE's record per layer: its shape and GPU facts were checked when the layer was read; its
    // template's packing tile becomes cpu_higgs' row tile (tile_n). Other keys are kernel
    // parameters someone wrote for qrt, passed on as they are.
    static const std::set<std::string> flute_keys = {"M", "N", "K", "num_bits", "group_size", "num_sms",
                                                     "dtype", "device", "template_id"};
    for (const auto& [module, text] : h->tune_metadata) {
      json j = json::parse(text, nullptr, false);
      if (!j.is_object()) {
        r.tune_metadata[module] = text;   // named by the runtime config as malformed
        continue;
      }
      json params = json::object();
      for (auto it = j.begin(); it != j.end(); ++it)
        if (!flute_keys.count(it.key())) params[it.key()] = it.value();
      const json* id = j.contains("template_id") ? &j["template_id"] : nullptr;
      if (id && id->is_number_integer() && !params.contains("tile_n")) {
        const int64_t rows = quant::higgs_flute_tile_rows(h->bits, id->get<int64_t>());
        if (rows > 0) params["tile_n"] = rows;
      }
      if (!params.empty()) r.tune_metadata[module] = params.dump();
    }
  } else if (const auto* ct = config.get<CompressedTensorsConfig>()) {
    if (ct->input_activations == "static")
      r.notes.push_back(q + "input_activations (static): the input_scale tensors are not applied; activations are "
                            "scaled per token (cuda_fp8) or kept in float / cpu_simd's 15-bit blocks");
    else if (ct->input_activations == "dynamic")
      r.notes.push_back(q + "input_activations (dynamic): qrt quantizes activations its own way (cuda_fp8 per token "
                            "for FP8 weights; int weights run with float or cpu_simd's 15-bit activations)");
  } else if (const auto* i = config.get<Int8Config>()) {
    // The threshold rides on each LLM.int8 layer (LayerSpec::llm_int8_threshold). Only a kernel that
    // quantizes the activations needs it; the weight-only kernels multiply them unrounded, which is
    // closer to the float model than the decomposition (docs/LLM_INT8.md).
    if (i->load_in_8bit) {
      std::ostringstream t;
      t << std::max(0.0, i->llm_int8_threshold);
      if (i->llm_int8_threshold > 0)
        r.notes.push_back(q + "llm_int8_threshold " + t.str() + ": applied by cuda_int8 (int8 tensor cores, CUDA "
                              "sm_80+): activation columns with some |x| >= " + t.str() + " multiply in fp32, the rest "
                              "in int8; the weight-only kernels (the CPU's, cuda_gemv, cuda_marlin, cuda_dequant, "
                              "cuda_int8 up to gemv_max_m rows) keep activations in float and need no decomposition");
      else
        r.notes.push_back(q + "llm_int8_threshold " + t.str() + ": no outlier decomposition; cuda_int8 quantizes "
                              "every activation column to int8, the weight-only kernels keep them in float");
    }
  } else if (const auto* t = config.get<TorchAoConfig>()) {
    // The loader quantizes float weights as --quantize does (model.h LoadOptions); what differs
    // from torchao is named here.
    const std::string l = lower(t->layout);
    if (l == "int4cpulayout" || l == "int4_cpu") {
      r.backend = "cpu_simd";   // the layout asks for CPU int4 kernels: qrt's are cpu_simd's
      r.backend_field = q + "layout " + t->layout;
    } else if (!l.empty() && l != "plainlayout" && l != "plain") {
      r.notes.push_back(q + "layout " + t->layout + ": not applied; qrt packs the int weights for the backend "
                            "its plan picks");
    }
    if (t->quant_type == "int8_dynamic_activation_int8_weight")
      r.notes.push_back(q + "quant_type int8_dynamic_activation_int8_weight: int8 per-channel weights; activations "
                            "are not quantized per token (cpu_simd uses 15-bit blocks, CUDA fp16/bf16)");
    else if (t->quant_type == "float8_dynamic_activation_float8_weight")
      r.notes.push_back(q + "quant_type float8_dynamic_activation_float8_weight: FP8 per-channel weights; cuda_fp8 "
                            "scales activations per token on sm_89+, the CPU keeps them in float");
    else if (t->quant_type == "autoquant")
      r.notes.push_back(q + "quant_type autoquant: nothing is quantized on load; the float weights run dense");
    if (t->include_input_output_embeddings)
      r.notes.push_back(q + "include_input_output_embeddings: not applied; the embedding and lm_head stay dense");
  }
  if (r.backend != "auto" && !r.backend.empty() && r.backend_field.empty()) r.backend_field = q + "backend";
  return r;
}

void GptqConfig::check_layer(int64_t in_features, const std::string& where) const {
  check_group_divides(group_size, in_features, where);
}
void AwqConfig::check_layer(int64_t in_features, const std::string& where) const {
  check_group_divides(group_size, in_features, where);
}

std::string QuantizationConfig::describe() const {
  std::ostringstream os;
  auto group = [](int g) { return g <= 0 ? std::string("per-channel") : "g" + std::to_string(g); };
  if (auto* g = get<GptqConfig>()) {
    os << "gptq " << g->bits << "-bit " << group(g->group_size) << (g->sym ? " sym" : " asym")
       << (g->desc_act ? " desc_act" : "") << " (" << (g->is_v2() ? "gptq_v2" : "gptq v1") << ")";
  } else if (auto* a = get<AwqConfig>()) {
    os << "awq " << a->bits << "-bit " << group(a->group_size) << (a->zero_point ? " zero_point" : " sym") << " ("
       << a->version << ")";
  } else if (auto* f = get<Fp8Config>()) {
    os << "fp8 e4m3 ";
    if (f->weight_block_size) os << "block " << f->weight_block_size->first << "x" << f->weight_block_size->second;
    else os << "per-tensor/per-channel";
    os << ", activations " << f->activation_scheme;
  } else if (auto* i = get<Int8Config>()) {
    os << "bitsandbytes " << (i->load_in_4bit ? "4-bit" : "LLM.int8 (row-wise int8)");
  } else if (auto* t = get<TorchAoConfig>()) {
    os << "torchao " << t->quant_type;
    if (t->quant_type == "int4_weight_only") os << " g" << t->group_size;
    if (!t->layout.empty()) os << " layout " << t->layout;
  } else if (auto* h = get<HiggsConfig>()) {
    os << "higgs " << h->bits << "-bit p" << h->p << " g" << h->group_size << " hadamard " << h->hadamard_size;
  } else if (auto* gg = get<GgufConfig>()) {
    os << "gguf";
    for (auto& [type, count] : gg->tensor_type_counts) os << " " << type << "x" << count;
  } else if (auto* ct = get<CompressedTensorsConfig>()) {
    os << "compressed-tensors " << ct->format << " " << ct->type << ct->num_bits << " " << ct->strategy;
    if (ct->strategy == "group") os << " g" << ct->group_size;
    os << (ct->symmetric ? " sym" : " asym");
    if (!ct->input_activations.empty()) os << ", activations " << ct->input_activations;
  } else {
    os << "none";
  }
  return os.str();
}

namespace quant {

QuantizationConfig parse_quantization_config_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw invalid_input(where + ": expected a JSON object, got " + render(j));
  std::string method;
  for (const char* key : {"quant_method", "method"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_string()) throw invalid_input(where + "." + key + ": expected a string, got " + render(*it));
    method = lower(it->get<std::string>());
    break;
  }
  // AutoGPTQ/AutoAWQ quantize_config.json files may lack quant_method.
  if (method.empty()) {
    if (j.contains("w_bit") || j.contains("zero_point") || j.contains("version")) method = "awq";
    else if (j.contains("bits") && (j.contains("desc_act") || j.contains("sym"))) method = "gptq";
    else throw invalid_input(where + ".quant_method: missing (one of " + join(known_quant_methods()) + ")");
  }
  if (method == "marlin")   // legacy AutoGPTQ spelling of a checkpoint of pre-packed Marlin tensors
    throw unsupported(where + ".quant_method: 'marlin' (pre-packed Marlin tensors) is not supported; supported: gptq, gptq_v2 formats");
  QuantizationConfig out;
  Fields f(j, where);
  std::string pass;
  if (method == "gptq") {
    GptqConfig c = parse_gptq(f, where, out.warnings, pass);
    c.passthrough_json = pass;
    out.config = std::move(c);
  } else if (method == "awq") {
    AwqConfig c = parse_awq(f, where, out.warnings, pass);
    c.passthrough_json = pass;
    out.config = std::move(c);
  } else if (method == "fp8") {
    Fp8Config c = parse_fp8(f, where, out.warnings, pass);
    c.passthrough_json = pass;
    out.config = std::move(c);
  } else if (method == "bitsandbytes") {
    Int8Config c = parse_int8(f, where, out.warnings, pass);
    // Keep the bnb_4bit_* fields verbatim (they were consumed by validation).
    json rest = passthrough(pass);
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key().rfind("bnb_4bit_", 0) == 0) rest[it.key()] = it.value();
    c.passthrough_json = rest.dump();
    out.config = std::move(c);
  } else if (method == "torchao") {
    TorchAoConfig c = parse_torchao(f, j, where, out.warnings, pass);
    c.passthrough_json = pass;
    out.config = std::move(c);
  } else if (method == "higgs") {
    HiggsConfig c = parse_higgs(f, where, out.warnings, pass);
    c.passthrough_json = pass;
    out.config = std::move(c);
  } else if (method == "gguf") {
    GgufConfig c = parse_gguf(f, where, out.warnings, pass);
    c.passthrough_json = pass;
    out.config = std::move(c);
  } else if (method == "compressed-tensors") {
    out.config = parse_compressed_tensors(f, j, where);
  } else {
    throw unsupported(where + ".quant_method: '" + method + "' is not supported; known methods: " +
                      join(known_quant_methods()));
  }
  return out;
}

json quantization_config_to_json_value(const QuantizationConfig& q) {
  json j = json::object();
  if (auto* c = q.get<GptqConfig>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "gptq";
    if (c->wrote_method_key || j.contains("method")) j["method"] = "gptq";
    j["bits"] = c->bits;
    j["group_size"] = c->group_size;
    j["desc_act"] = c->desc_act;
    j["sym"] = c->sym;
    j["true_sequential"] = c->true_sequential;
    j["damp_percent"] = c->damp_percent;
    j["checkpoint_format"] = c->checkpoint_format;
    if (c->wrote_format_key || j.contains("format")) j["format"] = c->checkpoint_format;
    if (c->static_groups || j.contains("static_groups")) j["static_groups"] = c->static_groups;
    if (c->backend != "auto" || (j.contains("backend") && !j["backend"].is_null())) j["backend"] = c->backend;
    if (c->lm_head || j.contains("lm_head")) j["lm_head"] = c->lm_head;
    if (c->pack_dtype != "int32" || j.contains("pack_dtype")) j["pack_dtype"] = c->pack_dtype;
  } else if (auto* c = q.get<AwqConfig>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "awq";
    j["bits"] = c->bits;
    j["group_size"] = c->group_size;
    j["zero_point"] = c->zero_point;
    j["version"] = c->version;
    if (j.contains("format")) j["format"] = c->version;
    if (c->backend != "auto" || (j.contains("backend") && !j["backend"].is_null())) j["backend"] = c->backend;
    if (!c->modules_to_not_convert.empty() || !j.contains("modules_to_not_convert") || !j["modules_to_not_convert"].is_array())
      j["modules_to_not_convert"] = string_list_or_null(c->modules_to_not_convert);
  } else if (auto* c = q.get<Fp8Config>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "fp8";
    j["activation_scheme"] = c->activation_scheme;
    if (c->weight_block_size) j["weight_block_size"] = {c->weight_block_size->first, c->weight_block_size->second};
    if (c->fmt != "e4m3" || j.contains("fmt")) j["fmt"] = c->fmt;
    if (c->scale_fmt != "float" || j.contains("scale_fmt")) j["scale_fmt"] = c->scale_fmt;
    const char* list_key = j.contains("ignored_layers") && !j.contains("modules_to_not_convert") ? "ignored_layers"
                                                                                                  : "modules_to_not_convert";
    if (!c->modules_to_not_convert.empty() || j.contains(list_key))
      j[list_key] = string_list_or_null(c->modules_to_not_convert);
  } else if (auto* c = q.get<Int8Config>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "bitsandbytes";
    j["load_in_8bit"] = c->load_in_8bit;
    j["load_in_4bit"] = c->load_in_4bit;
    j["_load_in_8bit"] = c->load_in_8bit;
    j["_load_in_4bit"] = c->load_in_4bit;
    j["llm_int8_threshold"] = c->llm_int8_threshold;
    j["llm_int8_skip_modules"] = string_list_or_null(c->llm_int8_skip_modules);
    j["llm_int8_has_fp16_weight"] = c->llm_int8_has_fp16_weight;
    j["llm_int8_enable_fp32_cpu_offload"] = c->llm_int8_enable_fp32_cpu_offload;
  } else if (auto* c = q.get<TorchAoConfig>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "torchao";
    if (!c->serialized_aobase) {
      j["quant_type"] = c->quant_type;
      json kw = j.contains("quant_type_kwargs") && j["quant_type_kwargs"].is_object() ? j["quant_type_kwargs"] : json::object();
      if (c->quant_type == "int4_weight_only") kw["group_size"] = c->group_size;
      if (!c->layout.empty() && !(kw.contains("layout") && kw["layout"].is_object())) kw["layout"] = c->layout;
      j["quant_type_kwargs"] = kw;
    }
    j["modules_to_not_convert"] = string_list_or_null(c->modules_to_not_convert);
    j["include_input_output_embeddings"] = c->include_input_output_embeddings;
    j["untie_embedding_weights"] = c->untie_embedding_weights;
  } else if (auto* c = q.get<HiggsConfig>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "higgs";
    j["bits"] = c->bits;
    j["p"] = c->p;
    j["hadamard_size"] = c->hadamard_size;
    j["group_size"] = c->group_size;
    j["modules_to_not_convert"] = string_list_or_null(c->modules_to_not_convert);
    json tm = json::object();
    for (auto& [name, text] : c->tune_metadata) tm[name] = json::parse(text);
    j["tune_metadata"] = tm;
  } else if (auto* c = q.get<CompressedTensorsConfig>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "compressed-tensors";
  } else if (auto* c = q.get<GgufConfig>()) {
    j = passthrough(c->passthrough_json);
    j["quant_method"] = "gguf";
    j["file_type"] = c->file_type;
    j["quantization_version"] = c->quantization_version;
    json counts = json::object();
    for (auto& [type, n] : c->tensor_type_counts) counts[type] = n;
    j["tensor_type_counts"] = counts;
  }
  return j;
}

}  // namespace quant

QuantizationConfig parse_quantization_config(std::string_view json_text, const std::string& where) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (j.is_discarded()) throw invalid_input(where + ": not valid JSON");
  return quant::parse_quantization_config_json(j, where);
}

std::string quantization_config_to_json(const QuantizationConfig& config, int indent) {
  return quant::quantization_config_to_json_value(config).dump(indent);
}

}  // namespace qrt
