// TensorStore (single file, sharded folder through model.safetensors.index.json, or a folder of
// shards) and conversion of tensors to float32.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/bounded_read.h"
#include "io/json_strict.h"
#include "io/mapped_file.h"
#include "qrt/error.h"
#include "qrt/safetensors.h"

namespace qrt {

namespace fs = std::filesystem;

namespace {

bool plain_file_name(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (c == '/' || c == '\\' || c == '\0') return false;
  return true;
}

}  // namespace

TensorStore TensorStore::open(const std::string& path) {
  TensorStore store;
  store.path_ = path;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw no_such_path(path);

  auto add_file = [&](SafetensorsFile file) {
    const size_t idx = store.files_.size();
    for (const auto& t : file.tensors()) {
      auto [it, inserted] = store.where_.emplace(t.name, idx);
      if (!inserted)
        throw invalid_input(path + ": tensor " + io::quote_name(t.name) + " appears in both " +
                            store.files_[it->second].path() + " and " + file.path());
    }
    if (store.files_.empty()) store.metadata_ = file.metadata();
    store.files_.push_back(std::move(file));
  };

  if (!fs::is_directory(status)) {
    add_file(SafetensorsFile::open(path));
    return store;
  }

  const fs::path dir(path);
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    const std::string ip = index_path.string();
    const std::string text = io::read_file_bounded(ip, io::kMaxConfigFileBytes, "a safetensors index (JSON)");
    nlohmann::json index = io::parse_json_strict(text.data(), text.data() + text.size(), ip);
    if (!index.is_object()) throw invalid_input(ip + ": not a JSON object");
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) throw invalid_input(ip + ": missing \"weight_map\" object");
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto& [tensor, shard] : wm->items()) {
      if (!shard.is_string())
        throw invalid_input(ip + ": weight_map entry " + io::quote_name(tensor) + " is not a file name string");
      const auto& s = shard.get_ref<const std::string&>();
      if (!plain_file_name(s))
        throw invalid_input(ip + ": weight_map entry " + io::quote_name(tensor) + " names " + io::quote_name(s) +
                            ", which is not a plain file name in the folder");
      by_shard[s].push_back(tensor);
    }
    for (auto& [shard, names] : by_shard) {
      SafetensorsFile file = SafetensorsFile::open((dir / shard).string());
      for (const auto& n : names)
        if (!file.contains(n))
          throw invalid_input(ip + ": tensor " + io::quote_name(n) + " is mapped to " + shard +
                              ", which does not hold it");
      if (file.tensors().size() != names.size()) {
        for (const auto& t : file.tensors())
          if (std::find(names.begin(), names.end(), t.name) == names.end())
            throw invalid_input(file.path() + ": tensor " + io::quote_name(t.name) + " is not listed in " + ip);
      }
      add_file(std::move(file));
    }
    if (auto md = index.find("metadata"); md != index.end() && md->is_object()) {
      for (auto& [k, v] : md->items()) store.metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
    return store;
  }

  const fs::path single = dir / "model.safetensors";
  if (fs::exists(single)) {
    add_file(SafetensorsFile::open(single.string()));
    return store;
  }
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") found.push_back(e.path().string());
  if (found.empty()) throw invalid_input(path + ": folder holds no .safetensors files");
  std::sort(found.begin(), found.end());
  for (const auto& f : found) add_file(SafetensorsFile::open(f));
  return store;
}

bool TensorStore::contains(std::string_view name) const { return where_.find(name) != where_.end(); }

const SafetensorsTensorInfo* TensorStore::info(std::string_view name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second].find(name);
}

TensorView TensorStore::get(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw invalid_input(path_ + ": no tensor named " + io::quote_name(name));
  return files_[it->second].tensor(name);
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> r;
  r.reserve(where_.size());
  for (const auto& [n, i] : where_) r.push_back(n);
  return r;
}

uint64_t TensorStore::total_tensor_bytes() const {
  uint64_t s = 0;
  for (const auto& f : files_)
    for (const auto& t : f.tensors()) s += t.nbytes();
  return s;
}

namespace {
template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

float e8m0_to_f32(uint8_t v) {
  if (v == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  // 2^(v - 127): v == 0 is 2^-127, a float32 subnormal.
  uint32_t bits = v == 0 ? 0x00400000u : static_cast<uint32_t>(v) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
}  // namespace

std::vector<float> tensor_to_float(const TensorView& t) {
  const uint64_t bits = static_cast<uint64_t>(dtype_bits(t.dtype));
  if (t.dtype == DType::F4 || t.dtype == DType::F6_E2M3 || t.dtype == DType::F6_E3M2 || bits == 0)
    throw unsupported(t.file + ": tensor " + io::quote_name(t.name) + ": dtype " + std::string(dtype_name(t.dtype)) +
                      " cannot be converted to float");
  const size_t esize = bits / 8;
  const size_t n = t.bytes.size() / esize;
  if (n * esize != t.bytes.size() || static_cast<int64_t>(n) != t.numel())
    throw invalid_input(t.file + ": tensor " + io::quote_name(t.name) + ": byte size does not match dtype and shape");
  std::vector<float> out(n);
  const uint8_t* p = t.bytes.data();
  for (size_t i = 0; i < n; ++i, p += esize) {
    float v = 0;
    switch (t.dtype) {
      case DType::F32: v = load<float>(p); break;
      case DType::F16: v = fp16_to_f32(load<uint16_t>(p)); break;
      case DType::BF16: v = bf16_to_f32(load<uint16_t>(p)); break;
      case DType::F64: v = static_cast<float>(load<double>(p)); break;
      case DType::F8_E4M3: v = fp8_e4m3_to_f32(*p); break;
      case DType::F8_E5M2: v = fp8_e5m2_to_f32(*p); break;
      case DType::F8_E8M0: v = e8m0_to_f32(*p); break;
      case DType::BOOL: v = *p ? 1.0f : 0.0f; break;
      case DType::U8: v = *p; break;
      case DType::I8: v = static_cast<int8_t>(*p); break;
      case DType::U16: v = load<uint16_t>(p); break;
      case DType::I16: v = load<int16_t>(p); break;
      case DType::U32: v = static_cast<float>(load<uint32_t>(p)); break;
      case DType::I32: v = static_cast<float>(load<int32_t>(p)); break;
      case DType::U64: v = static_cast<float>(load<uint64_t>(p)); break;
      case DType::I64: v = static_cast<float>(load<int64_t>(p)); break;
      default: break;
    }
    out[i] = v;
  }
  return out;
}

}  // namespace qrt
