// The tuning cache file (see include/qrt/tuning_cache.h for the key and the format).
#include "qrt/tuning_cache.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backends/backends_internal.h"
#include "io/bounded_read.h"
#include "io/json_strict.h"
#include "qrt/error.h"
#include "qrt/plan.h"

namespace qrt {

std::string TuningKey::to_string() const {
  std::ostringstream os;
  os << device << "|" << backend << "|v" << kernel_version << "|K" << k << "|N" << n << "|b" << bits << "|g"
     << group_size << "|" << weight << "|M" << m;
  return os.str();
}

std::string tuning_weight_kind(const LayerSpec& layer) {
  if (layer.encoding == WeightEncoding::Fp8E4M3)
    return "fp8 block " + std::to_string(layer.scale_block_n) + "x" + std::to_string(layer.scale_block_k);
  std::string s = layer.encoding == WeightEncoding::Codebook ? std::string("codebook")
                   : layer.encoding == WeightEncoding::RotatedCodebook
                       ? "rotated codebook p" + std::to_string(layer.codebook_dim) + " hadamard " +
                             std::to_string(layer.hadamard_size)
                       : std::string("int ") + zero_kind_name(layer.zero_kind);
  if (layer.act_order) s += " act-order";
  return s;
}

TuningKey make_tuning_key(const DeviceInfo& device, const Backend& backend, const LayerSpec& layer, int64_t m) {
  TuningKey k;
  k.device = device.cache_key();
  k.backend = backend.name();
  k.kernel_version = backend.kernel_version();
  k.k = layer.in_features;
  k.n = layer.out_features;
  k.bits = layer.bits;
  k.group_size = (layer.group_size <= 0 || layer.group_size >= layer.in_features) ? -1 : layer.group_size;
  k.weight = tuning_weight_kind(layer);
  k.m = m;
  return k;
}

namespace {
TuningEntry entry_from_json(const nlohmann::json& e, const std::string& where) {
  if (!e.is_object()) throw invalid_input(where + ": expected an object");
  auto str = [&](const char* f) {
    if (!e.contains(f) || !e[f].is_string()) throw invalid_input(where + ": field '" + f + "' must be a string");
    return e[f].get<std::string>();
  };
  // Ranges keep every value representable in the key's field (an int field never truncates), so a
  // loaded entry saves and loads back unchanged.
  auto integer = [&](const char* f, int64_t lo, int64_t hi) {
    const bool ok = e.contains(f) && (e[f].is_number_unsigned() ? e[f].get<uint64_t>() <= static_cast<uint64_t>(hi)
                                                                 : e[f].is_number_integer()) &&
                    e[f].get<int64_t>() >= lo && e[f].get<int64_t>() <= hi;
    if (!ok)
      throw invalid_input(where + ": field '" + f + "' must be an integer in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
    return e[f].get<int64_t>();
  };
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
  TuningEntry t;
  t.key.device = str("device");
  t.key.backend = str("backend");
  t.key.kernel_version = static_cast<int>(integer("kernel_version", 0, kIntMax));
  t.key.k = integer("k", 1, kInt64Max);
  t.key.n = integer("n", 1, kInt64Max);
  t.key.bits = static_cast<int>(integer("bits", 1, 32));
  t.key.group_size = static_cast<int>(integer("group_size", -1, kIntMax));
  t.key.weight = str("weight");
  t.key.m = integer("m", 1, kInt64Max);
  if (!e.contains("params")) throw invalid_input(where + ": field 'params' is missing");
  t.params = kernel_params_from_json_value(e["params"], where + ": field 'params'");
  if (e.contains("time_us")) {
    if (!e["time_us"].is_number()) throw invalid_input(where + ": field 'time_us' must be a number");
    t.time_us = e["time_us"].get<double>();
  }
  return t;
}
}  // namespace

TuningCache TuningCache::load(const std::string& path, const DeviceInfo& device, bool ignore_errors,
                              const BackendRegistry* registry) {
  TuningCache cache;
  cache.path_ = path;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return cache;
  try {
    const std::string text = io::read_file_bounded(path, io::kMaxConfigFileBytes, "a tuning cache (JSON)");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw invalid_input(path + ": corrupt tuning cache (malformed JSON: " + io::json_error_text(e) + ")");
    }
    // Types are checked before any get<>(): nlohmann throws its own exceptions on a mismatch.
    if (!j.is_object() || !j.contains("format") || !j["format"].is_string() ||
        j["format"].get<std::string>() != "qrt-tuning-cache")
      throw invalid_input(path + ": corrupt tuning cache (expected {\"format\": \"qrt-tuning-cache\", ...})");
    if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int64_t>() != 1)
      throw invalid_input(path + ": unsupported tuning cache version (expected 1)");
    if (!j.contains("entries") || !j["entries"].is_array())
      throw invalid_input(path + ": corrupt tuning cache (field 'entries' must be a list)");
    size_t i = 0;
    for (const auto& e : j["entries"]) {
      const std::string where = path + ": corrupt tuning cache entry " + std::to_string(i++);
      try {
        TuningEntry t = entry_from_json(e, where);
        cache.entries_[t.key.to_string()] = std::move(t);
      } catch (const nlohmann::json::exception& x) {  // a type the checks above missed: still a clean error
        throw invalid_input(where + ": " + io::json_error_text(x));
      }
    }
  } catch (const Error& e) {
    if (!ignore_errors) throw;
    cache.entries_.clear();
    cache.warnings_.push_back(std::string(e.what()) + "; running on default kernel parameters");
    return cache;
  }
  // One warning per kind of unusable entry, never one per entry.
  const std::string here = device.cache_key();
  size_t foreign = 0, stale = 0;
  std::string stale_example;
  const BackendRegistry& reg = registry ? *registry : BackendRegistry::global();
  for (const auto& [k, t] : cache.entries_) {
    if (t.key.device != here) {
      ++foreign;
      continue;
    }
    const Backend* b = reg.find(t.key.backend);
    if (b && b->kernel_version() != t.key.kernel_version) {
      ++stale;
      if (stale_example.empty())
        stale_example = t.key.backend + " v" + std::to_string(t.key.kernel_version) + " (now v" +
                        std::to_string(b->kernel_version()) + ")";
    }
  }
  if (foreign)
    cache.warnings_.push_back(path + ": " + std::to_string(foreign) + " tuning entr" + (foreign == 1 ? "y" : "ies") +
                              " for other devices ignored (this device: " + here + ")");
  if (stale)
    cache.warnings_.push_back(path + ": " + std::to_string(stale) + " tuning entr" + (stale == 1 ? "y" : "ies") +
                              " for older kernel versions ignored, e.g. " + stale_example + "; rerun qrt tune");
  return cache;
}

void TuningCache::save(const std::string& path) const {
  nlohmann::ordered_json entries = nlohmann::ordered_json::array();
  for (const auto& [k, t] : entries_) {
    nlohmann::ordered_json e;
    e["device"] = t.key.device;
    e["backend"] = t.key.backend;
    e["kernel_version"] = t.key.kernel_version;
    e["k"] = t.key.k;
    e["n"] = t.key.n;
    e["bits"] = t.key.bits;
    e["group_size"] = t.key.group_size;
    e["weight"] = t.key.weight;
    e["m"] = t.key.m;
    e["params"] = nlohmann::ordered_json::parse(t.params.to_json());
    e["time_us"] = t.time_us;
    entries.push_back(std::move(e));
  }
  // The format tag first, so that even a cut-short file says what it is (why_not_replaceable).
  nlohmann::ordered_json j;
  j["format"] = "qrt-tuning-cache";
  j["version"] = 1;
  j["entries"] = std::move(entries);
  std::error_code ec;
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw io_error(tmp + ": cannot write tuning cache");
    out << j.dump(1) << "\n";
    if (!out) throw io_error(tmp + ": write failed");
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw io_error(path + ": cannot replace tuning cache: " + ec.message());
}

std::string TuningCache::why_not_replaceable(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) return "";
  std::string text;
  try {
    text = io::read_file_bounded(path, io::kMaxConfigFileBytes, "a tuning cache (JSON)");
  } catch (const Error& e) {
    return e.what();
  }
  // save() writes the format tag first, so a cache cut short still names itself.
  if (text.find("\"qrt-tuning-cache\"") != std::string::npos) return "";
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return "";   // empty: nothing to lose
  return path + ": not a qrt tuning cache (no \"format\": \"qrt-tuning-cache\" in it); qrt does not overwrite it";
}

void TuningCache::put(const TuningEntry& entry) { entries_[entry.key.to_string()] = entry; }

const TuningEntry* TuningCache::find(const TuningKey& key) const {
  auto it = entries_.find(key.to_string());
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<const TuningEntry*> TuningCache::entries_for(const DeviceInfo& device, const Backend& backend,
                                                         const LayerSpec& layer) const {
  const TuningKey probe = make_tuning_key(device, backend, layer, 1);
  std::vector<const TuningEntry*> out;
  for (const auto& [k, t] : entries_) {
    TuningKey same = t.key;
    same.m = 1;
    if (same.to_string() == probe.to_string()) out.push_back(&t);
  }
  std::sort(out.begin(), out.end(), [](const TuningEntry* a, const TuningEntry* b) { return a->key.m < b->key.m; });
  return out;
}

}  // namespace qrt
