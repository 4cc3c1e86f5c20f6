// Default behaviour shared by every backend: the generic capability check (the declared table is
// read here, once, so backends do not repeat ifs), KernelParams helpers and their JSON form.
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/json_strict.h"
#include "qrt/backend.h"
#include "qrt/error.h"
#include "qrt/plan.h"

namespace qrt {

// ---- KernelParams ----
int64_t KernelParams::get_int(const std::string& k, int64_t fallback) const {
  auto it = values.find(k);
  if (it == values.end()) return fallback;
  if (const auto* v = std::get_if<int64_t>(&it->second)) return *v;
  if (const auto* v = std::get_if<std::vector<int64_t>>(&it->second); v && v->size() == 1) return (*v)[0];
  return fallback;
}

std::vector<int64_t> KernelParams::get_ints(const std::string& k) const {
  auto it = values.find(k);
  if (it == values.end()) return {};
  if (const auto* v = std::get_if<int64_t>(&it->second)) return {*v};
  if (const auto* v = std::get_if<std::vector<int64_t>>(&it->second)) return *v;
  return {};
}

KernelParams KernelParams::merged(const KernelParams& over) const {
  KernelParams out = *this;
  for (const auto& [k, v] : over.values) out.values[k] = v;
  return out;
}

std::string KernelParams::to_json() const {
  nlohmann::json j = nlohmann::json::object();  // std::map keeps keys sorted
  for (const auto& [k, v] : values) {
    if (const auto* i = std::get_if<int64_t>(&v)) j[k] = *i;
    else if (const auto* a = std::get_if<std::vector<int64_t>>(&v)) j[k] = *a;
    else j[k] = std::get<std::string>(v);
  }
  return j.dump();
}

namespace {
ParamValue param_from_json(const std::string& key, const nlohmann::json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_boolean()) return static_cast<int64_t>(v.get<bool>() ? 1 : 0);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::vector<int64_t> out;
    for (const auto& e : v) {
      if (!e.is_number_integer())
        throw invalid_input("kernel parameter '" + key + "': array elements must be integers, got " + e.dump());
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  throw invalid_input("kernel parameter '" + key + "': expected an integer, a list of integers or a string, got " +
                      v.dump());
}
}  // namespace

KernelParams KernelParams::from_json(const std::string& json) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_input(std::string("kernel parameters: malformed JSON: ") + io::json_error_text(e));
  }
  if (!j.is_object()) throw invalid_input("kernel parameters: expected a JSON object, got " + j.dump());
  KernelParams p;
  for (const auto& [k, v] : j.items()) p.values[k] = param_from_json(k, v);
  return p;
}

// Used by runtime_config.cpp and tuning_cache.cpp, which hold already-parsed JSON.
KernelParams kernel_params_from_json_value(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw invalid_input(where + ": expected an object of kernel parameters, got " + j.dump());
  KernelParams p;
  for (const auto& [k, v] : j.items()) {
    try {
      p.values[k] = param_from_json(k, v);
    } catch (const Error& e) {
      throw invalid_input(where + ": " + e.what());
    }
  }
  return p;
}

const char* param_source_name(ParamSource s) {
  switch (s) {
    case ParamSource::Default: return "default";
    case ParamSource::Global: return "global";
    case ParamSource::Tuned: return "tuned";
    case ParamSource::Override: return "override";
    case ParamSource::Checkpoint: return "checkpoint tune_metadata";
  }
  return "?";
}

// ---- Backend defaults ----
namespace {
template <typename T>
std::string join_list(const std::vector<T>& v, const char* last_sep = " or ") {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) os << (i + 1 == v.size() ? last_sep : ", ");
    os << v[i];
  }
  return os.str();
}

std::string group_name(int g) { return g <= 0 ? std::string("-1 (per-row)") : std::to_string(g); }
}  // namespace

Verdict Backend::check_capability(const LayerSpec& layer, const DeviceInfo& device) const {
  const BackendCapability& cap = capability();
  if (cap.device != device.kind)
    return Verdict::no(std::string("runs on ") + device_kind_name(cap.device) + ", device is " + device.id);
  if (cap.device == DeviceKind::Cuda && device.gpu.compute_capability() < cap.min_compute_capability) {
    const int need = cap.min_compute_capability;
    return Verdict::no("needs compute capability >= " + std::to_string(need / 10) + "." + std::to_string(need % 10) +
                       " (sm_" + std::to_string(need) + "); " + device.gpu.name + " is sm_" +
                       std::to_string(device.gpu.compute_capability()));
  }
  if (cap.device == DeviceKind::Cpu) {
    const auto& f = device.cpu.features;
    const std::pair<const char*, bool> known[] = {
        {"sse4.2", f.sse42},       {"avx", f.avx},           {"avx2", f.avx2},
        {"fma", f.fma},            {"f16c", f.f16c},         {"avx512f", f.avx512f},
        {"avx512bw", f.avx512bw},  {"avx512vl", f.avx512vl}, {"avx512dq", f.avx512dq},
        {"avx512_vnni", f.avx512_vnni}, {"avx_vnni", f.avx_vnni}, {"avx512_bf16", f.avx512_bf16},
        {"amx_tile", f.amx_tile},  {"amx_int8", f.amx_int8},
    };
    for (const std::string& need : cap.cpu_features) {
      bool present = false, recognised = false;
      for (const auto& [n, p] : known)
        if (need == n) recognised = true, present = p;
      if (!recognised) return Verdict::no("declares unknown CPU feature '" + need + "'");
      if (!present) return Verdict::no("needs CPU feature " + need + ", absent on " + device.cpu.model);
    }
  }
  bool encoding_ok = false;
  for (auto e : cap.encodings) encoding_ok |= (e == layer.encoding);
  if (!encoding_ok) {
    std::vector<std::string> names;
    for (auto e : cap.encodings) names.push_back(weight_encoding_name(e));
    return Verdict::no(std::string(weight_encoding_name(layer.encoding)) + " weights unsupported: runs " +
                       (names.empty() ? std::string("nothing") : join_list(names)) + " weights");
  }
  if (layer.encoding == WeightEncoding::Fp8E4M3) {
    const bool blocked = layer.scale_block_k > 0 && layer.scale_block_k < layer.in_features &&
                         !(layer.scale_block_n >= layer.out_features);
    if (blocked && !cap.fp8_block_scales)
      return Verdict::no("fp8 block scales " + std::to_string(layer.scale_block_n) + "x" +
                         std::to_string(layer.scale_block_k) + " unsupported: needs per-tensor or per-channel scales");
  } else {
    if (!cap.bits.empty()) {
      bool ok = false;
      for (int b : cap.bits) ok |= (b == layer.bits);
      if (!ok) return Verdict::no(std::to_string(layer.bits) + "-bit weights unsupported: needs " + join_list(cap.bits) + " bits");
    }
    if (!cap.group_sizes.empty()) {
      // A group spanning all of K is the same thing as "one group per row" (-1).
      const int g = (layer.group_size <= 0 || layer.group_size >= layer.in_features) ? -1 : layer.group_size;
      bool ok = false;
      for (int c : cap.group_sizes) ok |= (c <= 0 ? g == -1 : c == g);
      if (!ok) {
        std::vector<std::string> names;
        for (int c : cap.group_sizes) names.push_back(group_name(c));
        return Verdict::no("group size " + group_name(g) + " unsupported: needs " + join_list(names));
      }
    }
    if (layer.act_order && !cap.act_order) return Verdict::no("act-order (g_idx) unsupported");
    switch (layer.zero_kind) {
      case ZeroKind::Symmetric:
        if (!cap.symmetric) return Verdict::no("symmetric weights unsupported: needs zero points");
        break;
      case ZeroKind::Integer:
        if (!cap.integer_zero) return Verdict::no("integer zero points (asymmetric) unsupported: needs symmetric");
        break;
      case ZeroKind::Float:
        if (!cap.float_zero) return Verdict::no("float zero offsets (GGUF-style min) unsupported");
        break;
    }
  }
  if (cap.k_multiple > 1 && layer.in_features % cap.k_multiple != 0)
    return Verdict::no("in_features " + std::to_string(layer.in_features) + " is not a multiple of " +
                       std::to_string(cap.k_multiple));
  if (cap.n_multiple > 1 && layer.out_features % cap.n_multiple != 0)
    return Verdict::no("out_features " + std::to_string(layer.out_features) + " is not a multiple of " +
                       std::to_string(cap.n_multiple));
  return Verdict::yes();
}

Verdict Backend::check(const LayerSpec& layer, const DeviceInfo& device) const {
  return check_capability(layer, device);
}

Verdict Backend::validate_params(const LayerSpec& layer, const KernelParams& params) const {
  if (params.empty()) return Verdict::yes();
  return Verdict::no("unknown parameter '" + params.values.begin()->first + "': " + name() +
                     " has no kernel parameters");
}

KernelParams Backend::default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const {
  return {};
}

std::vector<KernelParams> Backend::tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const {
  return {};
}

}  // namespace qrt
