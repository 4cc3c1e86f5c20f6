// RuntimeConfig: the JSON config file, QRT_DISABLE_BACKENDS, checkpoint backend hints, CLI values,
// their precedence (docs/CONFIG.md), backend-name aliases of other libraries, and the glob used by
// per-layer overrides.
#include "qrt/runtime_config.h"
#include "qrt/thread_pool.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backends/backends_internal.h"
#include "io/bounded_read.h"
#include "io/json_strict.h"
#include "qrt/error.h"

namespace qrt {

namespace {

// The backends qrt implements (registry order) and the names of other libraries that mean the same
// kind of kernel. A name on the "other libraries" list is a clear error, never a silent substitute.
const std::vector<std::string>& qrt_backend_names() {
  static const std::vector<std::string> names = {"cpu_ref", "cpu_simd", "cuda_dequant", "cuda_fp8", "cuda_marlin",
                                                 "cuda_gemv", "cpu_higgs", "cuda_higgs", "cuda_int8"};
  return names;
}

const std::vector<std::pair<std::string, std::string>>& alias_pairs() {
  static const std::vector<std::pair<std::string, std::string>> table = {
      // tensor-core int4/int8 (transformers/GPTQModel/vLLM Marlin family)
      {"marlin", "cuda_marlin"}, {"gptq_marlin", "cuda_marlin"}, {"awq_marlin", "cuda_marlin"},
      {"marlin_fp16", "cuda_marlin"},
      // small-batch GEMV (ExLlama family, AWQ GEMV)
      {"exllama", "cuda_gemv"}, {"exllama_v1", "cuda_gemv"}, {"exllama_v2", "cuda_gemv"},
      {"exllamav2", "cuda_gemv"}, {"gptq_exllama_v2", "cuda_gemv"}, {"awq_exllama_v2", "cuda_gemv"},
      {"gemv", "cuda_gemv"}, {"gemv_fast", "cuda_gemv"}, {"awq_gemv", "cuda_gemv"}, {"awq_gemv_fast", "cuda_gemv"},
      // dequantize + dense GEMM (AWQ GEMM, CUDA/torch kernels of the reference libraries)
      {"gemm", "cuda_dequant"}, {"awq_gemm", "cuda_dequant"}, {"cuda", "cuda_dequant"}, {"cublas", "cuda_dequant"},
      {"torch", "cuda_dequant"}, {"gptq_torch", "cuda_dequant"}, {"awq_torch", "cuda_dequant"},
      {"dequant", "cuda_dequant"},
      // FP8
      {"fp8", "cuda_fp8"}, {"fbgemm_fp8", "cuda_fp8"}, {"fp8_torch", "cuda_fp8"}, {"finegrained_fp8", "cuda_fp8"},
      // lookup-table kernels of rotated-codebook (HIGGS) weights: FLUTE is what transformers runs them with
      {"flute", "cuda_higgs"},
      // CPU
      {"cpu", "cpu_simd"}, {"ipex", "cpu_simd"}, {"torch_cpu", "cpu_simd"}, {"torch_fused", "cpu_simd"},
      {"gptq_torch_fused", "cpu_simd"}, {"awq_torch_fused", "cpu_simd"}, {"simd", "cpu_simd"},
      {"reference", "cpu_ref"}, {"ref", "cpu_ref"},
  };
  return table;
}

const std::vector<std::string>& not_implemented_names() {
  static const std::vector<std::string> names = {
      "triton", "gptq_triton", "awq_gemm_triton", "tritonv2", "bitblas", "gptq_bitblas", "awq_bitblas",
      "machete", "gptq_machete", "awq_machete", "swordfish", "gptq_swordfish", "awq_swordfish", "qqq", "qqq_torch",
      "exllama_v3", "exl3", "exl3_exllama_v3", "bitsandbytes", "bnb", "vllm", "sglang", "mlx", "conch", "allspark",
      "cutlass", "hqq", "eora", "gptq_torch_aten", "awq_torch_aten", "torch_aten", "gptq_torch_int8",
      "awq_torch_int8", "torch_int8", "gguf_triton", "gguf_torch", "gguf_cpp_cpu", "gguf_cpp_cuda", "higgs",
      "deep_gemm", "flashinfer", "aiter", "humming", "paroquant_cuda", "paroquant_triton",
  };
  return names;
}

std::string normalize_name(const std::string& name) {
  std::string s;
  for (char c : name) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    s += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

std::string available_text() { return "auto, " + join_names(qrt_backend_names()); }

// The alias of `name` or an Error(InvalidInput) naming `where`.
std::string resolve_backend_or_throw(const std::string& name, const std::string& where, bool allow_auto) {
  std::string why;
  const std::string b = backend_alias(name, &why);
  if (b.empty()) throw invalid_input(where + ": " + why);
  if (b == "auto" && !allow_auto) throw invalid_input(where + ": 'auto' is not a backend here; available: " +
                                                      join_names(qrt_backend_names()));
  return b;
}

void add_unique(std::vector<std::string>& list, const std::string& v) {
  if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = normalize_name(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> backend_alias_table() {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("auto", "auto");
  for (const auto& n : qrt_backend_names()) out.emplace_back(n, n);
  for (const auto& p : alias_pairs()) out.push_back(p);
  return out;
}

std::string backend_alias(const std::string& name, std::string* why) {
  const std::string n = normalize_name(name);
  if (n == "auto" || n.empty()) return "auto";
  for (const auto& q : qrt_backend_names())
    if (n == q) return q;
  for (const auto& [from, to] : alias_pairs())
    if (n == from) return to;
  const auto& ni = not_implemented_names();
  const bool elsewhere = std::find(ni.begin(), ni.end(), n) != ni.end() || n.rfind("gguf_", 0) == 0;
  if (why)
    *why = elsewhere ? "backend " + io::quote_name(name, 80) + " is a kernel of another library, not implemented in qrt; available: " +
                           available_text()
                     : "unknown backend " + io::quote_name(name, 80) + "; available: " + available_text() +
                           " (or a transformers/GPTQModel/vLLM name such as marlin, exllama_v2, gemm, gemv, cpu; "
                           "see docs/CONFIG.md)";
  return "";
}

bool glob_match(const std::string& pattern, const std::string& text) {
  // Iterative matcher with one backtrack point per '*' (linear in practice, no recursion).
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p, ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

const LayerOverride* RuntimeConfig::override_for(const std::string& layer_name) const {
  for (const auto& o : overrides)
    if (glob_match(o.pattern, layer_name)) return &o;
  return nullptr;
}

const LayerOverride* RuntimeConfig::checkpoint_params_for(const std::string& layer_name) const {
  for (const auto& o : checkpoint_params)
    if (glob_match(o.pattern, layer_name)) return &o;
  return nullptr;
}

std::vector<std::string> RuntimeConfig::apply_checkpoint_tune_metadata(
    const std::map<std::string, std::string>& metadata) {
  std::vector<std::string> warnings;
  const std::string where = "checkpoint quantization_config.tune_metadata";
  for (const auto& [module, text] : metadata) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      warnings.push_back(where + "." + module + ": malformed JSON, ignored: " + io::json_error_text(e));
      continue;
    }
    if (!j.is_object()) {
      warnings.push_back(where + "." + module + ": expected an object of kernel parameters, got " + j.dump() +
                         "; ignored");
      continue;
    }
    LayerOverride o;
    o.pattern = module;
    // Value by value: one value qrt cannot represent (a float, a nested object) does not cost the rest.
    for (const auto& [key, value] : j.items()) {
      try {
        o.params = o.params.merged(kernel_params_from_json_value(nlohmann::json{{key, value}}, where + "." + module));
      } catch (const Error& e) {
        warnings.push_back(std::string(e.what()) + "; ignored");
      }
    }
    if (!o.params.empty()) checkpoint_params.push_back(std::move(o));
  }
  if (!checkpoint_params.empty()) set_provenance("checkpoint_params", where);
  return warnings;
}

void RuntimeConfig::set_provenance(const std::string& field, const std::string& source) {
  for (auto& [f, s] : provenance)
    if (f == field) {
      s = source;
      return;
    }
  provenance.emplace_back(field, source);
}

std::string RuntimeConfig::provenance_of(const std::string& field) const {
  for (const auto& [f, s] : provenance)
    if (f == field) return s;
  return "default";
}

void RuntimeConfig::apply_environment() {
  const char* env = std::getenv("QRT_DISABLE_BACKENDS");
  if (!env || !*env) return;
  for (const auto& n : split_commas(env)) add_unique(disabled, resolve_backend_or_throw(n, "QRT_DISABLE_BACKENDS", false));
  set_provenance("disabled", "env QRT_DISABLE_BACKENDS");
}

std::string RuntimeConfig::apply_checkpoint_backend(const std::string& name) {
  if (normalize_name(name).empty() || normalize_name(name) == "auto") return "";
  std::string why;
  const std::string b = backend_alias(name, &why);
  if (b.empty()) return "checkpoint quantization_config.backend ignored: " + why;
  backend = b;
  backend_is_hint = true;
  set_provenance("backend", "checkpoint quantization_config.backend '" + name + "'");
  return "";
}

RuntimeConfig RuntimeConfig::from_json_file(const std::string& path, RuntimeConfig base) {
  return from_json_text(io::read_file_bounded(path, io::kMaxConfigFileBytes, "a runtime config file (JSON)"), path,
                        std::move(base));
}

RuntimeConfig RuntimeConfig::from_json_text(const std::string& text, const std::string& origin, RuntimeConfig base) {
  using ojson = nlohmann::ordered_json;  // keeps the file's order: overrides are first-match
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const ojson::exception& e) {
    throw invalid_input(origin + ": malformed JSON: " + io::json_error_text(e));
  }
  if (!j.is_object()) throw invalid_input(origin + ": expected a JSON object at the top level");
  RuntimeConfig c = std::move(base);
  const std::string src = "config file " + origin;
  auto field = [&](const std::string& name) { return origin + ": field '" + name + "'"; };
  auto want_string = [&](const ojson& v, const std::string& name) {
    if (!v.is_string()) throw invalid_input(field(name) + " must be a string, got " + v.dump());
    return v.get<std::string>();
  };
  auto want_int = [&](const ojson& v, const std::string& name, int64_t lo) {
    if (!v.is_number_integer() || v.get<int64_t>() < lo)
      throw invalid_input(field(name) + " must be an integer >= " + std::to_string(lo) + ", got " + v.dump());
    return v.get<int64_t>();
  };
  auto want_bool = [&](const ojson& v, const std::string& name) {
    if (!v.is_boolean()) throw invalid_input(field(name) + " must be true or false, got " + v.dump());
    return v.get<bool>();
  };
  auto want_names = [&](const ojson& v, const std::string& name) {
    std::vector<std::string> out;
    if (v.is_string()) {
      for (const auto& n : split_commas(v.get<std::string>())) add_unique(out, resolve_backend_or_throw(n, field(name), false));
      return out;
    }
    if (!v.is_array()) throw invalid_input(field(name) + " must be a list of backend names, got " + v.dump());
    for (const auto& e : v) add_unique(out, resolve_backend_or_throw(want_string(e, name), field(name), false));
    return out;
  };
  auto params_of = [&](const ojson& v, const std::string& where) {
    return kernel_params_from_json_value(nlohmann::json::parse(v.dump()), where);
  };

  static const std::vector<std::string> known = {"backend",       "fallback",      "disabled",
                                                 "max_input_length", "max_new_tokens", "threads",
                                                 "kernel_params", "layers",        "tuning_cache",
                                                 "use_tuning_cache", "ignore_bad_tuning_cache", "fuse_projections",
                                                 "$comment"};
  for (const auto& [key, v] : j.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end())
      throw invalid_input(origin + ": unknown field '" + key + "'; known fields: " + join_names(known));
    if (key == "backend") {
      c.backend = resolve_backend_or_throw(want_string(v, key), field(key), true);
      c.backend_is_hint = false;
    } else if (key == "fallback") {
      c.fallback = want_names(v, key);
    } else if (key == "disabled") {
      // Disabling is an escape hatch: lists from every source add up (docs/CONFIG.md).
      for (const auto& n : want_names(v, key)) add_unique(c.disabled, n);
    } else if (key == "max_input_length") {
      c.max_input_length = want_int(v, key, 1);
    } else if (key == "max_new_tokens") {
      c.max_new_tokens = want_int(v, key, 0);
    } else if (key == "threads") {
      const int64_t threads = want_int(v, key, 0);
      if (threads > ThreadPool::kMaxThreads)
        throw invalid_input(field(key) + " must be at most " + std::to_string(ThreadPool::kMaxThreads) + ", got " +
                            v.dump());
      c.threads = static_cast<int>(threads);
    } else if (key == "tuning_cache") {
      c.tuning_cache_path = want_string(v, key);
    } else if (key == "use_tuning_cache") {
      c.use_tuning_cache = want_bool(v, key);
    } else if (key == "ignore_bad_tuning_cache") {
      c.ignore_bad_tuning_cache = want_bool(v, key);
    } else if (key == "fuse_projections") {
      c.fuse_projections = want_bool(v, key);
    } else if (key == "$comment") {
      continue;
    } else if (key == "kernel_params") {
      if (!v.is_object()) throw invalid_input(field(key) + " must be an object, got " + v.dump());
      // Keys naming a backend (with an object value) are per-backend; the rest are global.
      ojson flat = ojson::object();
      for (const auto& [pk, pv] : v.items()) {
        std::string why;
        const std::string b = pv.is_object() ? backend_alias(pk, &why) : std::string();
        if (!b.empty() && b != "auto") {
          c.backend_params[b] = c.backend_params[b].merged(params_of(pv, field(key + "." + pk)));
        } else if (pv.is_object()) {
          throw invalid_input(field(key + "." + pk) + ": an object value must be keyed by a backend name: " + why);
        } else {
          flat[pk] = pv;
        }
      }
      c.kernel_params = c.kernel_params.merged(params_of(flat, field(key)));
    } else if (key == "layers") {
      if (!v.is_object())
        throw invalid_input(field(key) + " must be an object {\"layer name or glob\": {\"backend\": ..., params...}}");
      std::vector<LayerOverride> file_overrides;
      for (const auto& [pattern, body] : v.items()) {
        const std::string where = field("layers." + pattern);
        if (!body.is_object()) throw invalid_input(where + " must be an object, got " + body.dump());
        LayerOverride o;
        o.pattern = pattern;
        ojson params = ojson::object();
        for (const auto& [pk, pv] : body.items()) {
          if (pk == "backend") o.backend = resolve_backend_or_throw(want_string(pv, "layers." + pattern + ".backend"), where, false);
          else params[pk] = pv;
        }
        o.params = params_of(params, where);
        file_overrides.push_back(std::move(o));
      }
      // The file's overrides come before older ones: a more specific source matches first.
      file_overrides.insert(file_overrides.end(), c.overrides.begin(), c.overrides.end());
      c.overrides = std::move(file_overrides);
    }
    c.set_provenance(key, src);
  }
  return c;
}

std::vector<std::string> RuntimeConfig::apply_checkpoint_runtime(const CheckpointRuntime& checkpoint) {
  std::vector<std::string> warnings;
  if (std::string w = apply_checkpoint_backend(checkpoint.backend); !w.empty())
    warnings.push_back(w);
  else if (backend_is_hint && checkpoint.backend_field.find(".layout") != std::string::npos)
    set_provenance("backend", "checkpoint " + checkpoint.backend_field);   // e.g. torchao Int4CPULayout
  else if (backend == "auto" && !checkpoint.backend_field.empty())
    set_provenance("backend", "checkpoint " + checkpoint.backend_field);   // a packing name, e.g. AWQ autoawq
  for (auto& w : apply_checkpoint_tune_metadata(checkpoint.tune_metadata)) warnings.push_back(std::move(w));
  if (checkpoint.max_input_length) {
    max_input_length = *checkpoint.max_input_length;
    set_provenance("max_input_length", "checkpoint quantization_config.max_input_length");
  }
  for (const auto& [backend, field] : checkpoint.disable) {
    add_unique(disabled, backend);
    set_provenance("disabled", "checkpoint " + field);
  }
  warnings.insert(warnings.end(), checkpoint.notes.begin(), checkpoint.notes.end());
  return warnings;
}

RuntimeConfig build_runtime_config(const CheckpointRuntime& checkpoint, const std::string& config_path,
                                   const CliOverrides& cli, std::vector<std::string>* warnings,
                                   const std::string& config_json) {
  RuntimeConfig c;
  for (auto& w : c.apply_checkpoint_runtime(checkpoint))
    if (warnings) warnings->push_back(std::move(w));
  c.apply_environment();
  if (!config_path.empty()) c = RuntimeConfig::from_json_file(config_path, std::move(c));
  if (!config_json.empty()) c = RuntimeConfig::from_json_text(config_json, "config", std::move(c));
  if (cli.backend) {
    c.backend = resolve_backend_or_throw(*cli.backend, "--backend", true);
    c.backend_is_hint = false;
    c.set_provenance("backend", "cli --backend");
  }
  if (cli.fallback) {
    c.fallback.clear();
    for (const auto& n : *cli.fallback)
      for (const auto& part : split_commas(n)) add_unique(c.fallback, resolve_backend_or_throw(part, "--fallback", false));
    c.set_provenance("fallback", "cli --fallback");
  }
  if (cli.disabled) {
    for (const auto& n : *cli.disabled)
      for (const auto& part : split_commas(n)) add_unique(c.disabled, resolve_backend_or_throw(part, "--disable", false));
    c.set_provenance("disabled", "cli --disable");
  }
  if (cli.max_input_length) {
    if (*cli.max_input_length < 1) throw invalid_input("--max-input-length must be >= 1");
    c.max_input_length = *cli.max_input_length;
    c.set_provenance("max_input_length", "cli");
  }
  if (cli.max_new_tokens) {
    c.max_new_tokens = *cli.max_new_tokens;
    c.set_provenance("max_new_tokens", "cli");
  }
  if (cli.threads) {
    c.threads = *cli.threads;
    c.set_provenance("threads", "cli");
  }
  if (cli.tuning_cache_path) {
    c.tuning_cache_path = *cli.tuning_cache_path;
    c.set_provenance("tuning_cache", "cli --tuning-cache");
  }
  if (cli.use_tuning_cache) {
    c.use_tuning_cache = *cli.use_tuning_cache;
    c.set_provenance("use_tuning_cache", "cli");
  }
  if (cli.ignore_bad_tuning_cache) {
    c.ignore_bad_tuning_cache = *cli.ignore_bad_tuning_cache;
    c.set_provenance("ignore_bad_tuning_cache", "cli");
  }
  return c;
}

std::string default_tuning_cache_path() {
  if (const char* p = std::getenv("QRT_TUNING_CACHE"); p && *p) return p;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/qrt/tuning.json";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/qrt/tuning.json";
  return ".qrt-tuning.json";
}

}  // namespace qrt
