// safetensors reader: header parsing and every check of docs/CHECKPOINTS.md, safetensors.
#include "qrt/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "io/json_strict.h"
#include "io/mapped_file.h"
#include "qrt/error.h"

namespace qrt {

namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // MAX_HEADER_SIZE of the reference reader

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Element count with checked multiplication; false on a negative dimension or when the product of
// the non-zero dimensions passes INT64_MAX. A zero dimension makes the count 0, but callers still form
// partial products of the others (rows = shape[0] * shape[1]), so those must fit as well.
bool checked_numel(const std::vector<int64_t>& shape, uint64_t* out) {
  uint64_t nonzero_product = 1;
  bool has_zero = false;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) has_zero = true;
    else if (!io::checked_mul(nonzero_product, static_cast<uint64_t>(d), &nonzero_product)) return false;
  }
  if (nonzero_product > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = has_zero ? 0 : nonzero_product;
  return true;
}

std::string qname(std::string_view s) { return io::quote_name(s); }

// A number as written, or the JSON type name for anything else (messages stay short).
std::string json_text(const nlohmann::json& j) {
  return j.is_number() ? j.dump() : std::string("a JSON ") + j.type_name();
}

}  // namespace

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto storage = io::MappedFile::open(path);
  SafetensorsFile f = parse(storage->bytes(), path);
  f.storage_ = std::move(storage);
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, const std::string& name) {
  auto storage = io::MappedFile::own(std::move(bytes));
  SafetensorsFile f = parse(storage->bytes(), name);
  f.storage_ = std::move(storage);
  return f;
}

uint64_t SafetensorsFile::file_size() const { return bytes_.size(); }

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  SafetensorsFile f;
  f.path_ = name;
  f.bytes_ = bytes;
  auto fail = [&](const std::string& what) -> Error { return invalid_input(name + ": " + what); };
  auto fail_tensor = [&](std::string_view tensor, const std::string& what) -> Error {
    return invalid_input(name + ": tensor " + qname(tensor) + ": " + what);
  };
  const uint64_t file_len = bytes.size();
  // V1
  if (file_len < 8)
    throw fail("not a safetensors file: " + std::to_string(file_len) + " bytes, shorter than the 8-byte header length");
  const uint64_t n = read_u64_le(bytes.data());
  // V2
  if (n > kMaxHeaderSize)
    throw fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderSize) +
               " bytes");
  // V3 (n <= 1e8 so 8 + n cannot overflow)
  if (8 + n > file_len)
    throw fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(file_len) +
               " bytes)");
  f.header_size_ = n;
  const uint64_t data_len = file_len - 8 - n;

  // V4: UTF-8 JSON of the schema, no duplicate keys at any level.
  const char* begin = reinterpret_cast<const char*>(bytes.data() + 8);
  nlohmann::json header = io::parse_json_strict(begin, begin + n, name + ": header");
  if (!header.is_object()) throw fail("header is not a JSON object");

  std::vector<SafetensorsTensorInfo> tensors;
  tensors.reserve(header.size());
  for (auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw fail("__metadata__ must be an object of strings");
      for (auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw fail("__metadata__ value of " + qname(mk) + " must be a string, got " + std::string(mv.type_name()));
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) throw fail_tensor(key, "entry must be an object with dtype, shape and data_offsets");
    for (auto& [field, unused] : value.items())
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        throw fail_tensor(key, "unknown field " + qname(field) + " (expected dtype, shape, data_offsets)");
    SafetensorsTensorInfo info;
    info.name = key;
    auto dt = value.find("dtype");
    if (dt == value.end() || !dt->is_string()) throw fail_tensor(key, "missing or non-string \"dtype\"");
    const auto parsed = parse_dtype(dt->get_ref<const std::string&>());
    if (!parsed || *parsed == DType::Unknown)
      throw fail_tensor(key, "unknown dtype " + qname(dt->get_ref<const std::string&>()));
    info.dtype = *parsed;
    auto sh = value.find("shape");
    if (sh == value.end() || !sh->is_array()) throw fail_tensor(key, "missing or non-array \"shape\"");
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        throw fail_tensor(key, "shape entries must be non-negative integers, got " + json_text(d));
      const uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(INT64_MAX))
        throw fail_tensor(key, "shape entry " + std::to_string(v) + " is too large");
      info.shape.push_back(static_cast<int64_t>(v));
    }
    auto off = value.find("data_offsets");
    if (off == value.end() || !off->is_array() || off->size() != 2)
      throw fail_tensor(key, "\"data_offsets\" must be an array of two integers");
    for (const auto& o : *off)
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
        throw fail_tensor(key, "data_offsets must be non-negative integers, got " + json_text(o));
    info.begin = (*off)[0].get<uint64_t>();
    info.end = (*off)[1].get<uint64_t>();
    tensors.push_back(std::move(info));
  }

  // V5..V8, walking tensors in offset order.
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : (a.end != b.end ? a.end < b.end : a.name < b.name);
  });
  uint64_t prev_end = 0;
  const SafetensorsTensorInfo* prev = nullptr;
  for (const auto& t : tensors) {
    const std::string offs = "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
    if (t.end < t.begin) throw fail_tensor(t.name, offs + " end before they begin");
    if (t.end > data_len)
      throw fail_tensor(t.name,
                        offs + " are out of range: the data section holds " + std::to_string(data_len) + " bytes");
    if (t.begin != prev_end) {
      if (t.begin < prev_end)
        throw fail_tensor(t.name, offs + " overlap tensor " + qname(prev ? prev->name : "") + " (which ends at " +
                                      std::to_string(prev_end) + ")");
      throw fail_tensor(t.name, offs + " leave a gap: expected the tensor to start at " + std::to_string(prev_end));
    }
    uint64_t numel = 0, nbits = 0;
    if (!checked_numel(t.shape, &numel) ||
        !io::checked_mul(numel, static_cast<uint64_t>(dtype_bits(t.dtype)), &nbits) ||
        numel > static_cast<uint64_t>(INT64_MAX))
      throw fail_tensor(t.name, "the product of the shape dimensions overflows");
    if (nbits % 8 != 0)
      throw fail_tensor(t.name, std::to_string(numel) + " elements of " + std::string(dtype_name(t.dtype)) +
                                    " do not fill a whole number of bytes");
    if (t.end - t.begin != nbits / 8)
      throw fail_tensor(t.name, offs + " hold " + std::to_string(t.end - t.begin) + " bytes, but dtype " +
                                    std::string(dtype_name(t.dtype)) + " x shape needs " + std::to_string(nbits / 8));
    prev_end = t.end;
    prev = &t;
  }
  // V9: the data section must be exactly covered.
  if (prev_end != data_len)
    throw fail("tensors cover " + std::to_string(prev_end) + " bytes of data but the data section holds " +
               std::to_string(data_len) + " bytes (trailing or missing bytes)");

  f.tensors_ = std::move(tensors);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

TensorView SafetensorsFile::view(const SafetensorsTensorInfo& info) const {
  const uint64_t start = 8 + header_size_ + info.begin;
  return TensorView{info.name, info.dtype, info.shape, bytes_.subspan(start, info.nbytes()), path_};
}

TensorView SafetensorsFile::tensor(std::string_view name) const {
  const auto* info = find(name);
  if (!info) throw invalid_input(path_ + ": no tensor named " + qname(name));
  return view(*info);
}

}  // namespace qrt
