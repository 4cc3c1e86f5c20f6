// safetensors writer: header padded to 8 bytes, tensors back to back in the order added, written
// under a temporary name and renamed into place.
#include <cstring>
#include <nlohmann/json.hpp>

#include "io/json_strict.h"
#include "io/mapped_file.h"
#include "qrt/error.h"
#include "qrt/safetensors.h"

namespace qrt {

namespace {
void store_le16(std::vector<uint8_t>& out, size_t i, uint16_t v) {
  out[2 * i] = static_cast<uint8_t>(v);
  out[2 * i + 1] = static_cast<uint8_t>(v >> 8);
}
}  // namespace

void SafetensorsWriter::add_entry(Entry e) {
  auto fail = [&](const std::string& what) {
    return invalid_input(path_ + ": tensor " + io::quote_name(e.name) + ": " + what);
  };
  if (e.name == "__metadata__") throw fail("the name __metadata__ is reserved");
  if (names_.count(e.name)) throw fail("added twice");
  if (e.dtype == DType::Unknown || dtype_bits(e.dtype) == 0) throw fail("unknown dtype");
  uint64_t n = 1, nbits = 0;
  for (int64_t d : e.shape)
    if (d < 0 || !io::checked_mul(n, static_cast<uint64_t>(d), &n)) throw fail("invalid shape");
  if (!io::checked_mul(n, static_cast<uint64_t>(dtype_bits(e.dtype)), &nbits) || nbits % 8 != 0)
    throw fail("shape does not fill a whole number of bytes");
  if (nbits / 8 != e.bytes.size())
    throw fail("got " + std::to_string(e.bytes.size()) + " bytes, dtype x shape needs " + std::to_string(nbits / 8));
  names_.emplace(e.name, entries_.size());
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::vector<uint8_t> bytes) {
  Entry e{name, dtype, std::move(shape), std::move(bytes), {}};
  e.bytes = std::span<const uint8_t>(e.owned);
  add_entry(std::move(e));  // moving a vector keeps its buffer, so the span stays valid
}

void SafetensorsWriter::add_borrowed(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                     std::span<const uint8_t> bytes) {
  add_entry(Entry{name, dtype, std::move(shape), {}, bytes});
}

void SafetensorsWriter::add_float(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                  std::span<const float> values) {
  std::vector<uint8_t> out;
  const size_t n = values.size();
  switch (dtype) {
    case DType::F32:
      out.resize(n * 4);
      if (n) std::memcpy(out.data(), values.data(), n * 4);
      break;
    case DType::F16:
      out.resize(n * 2);
      for (size_t i = 0; i < n; ++i) store_le16(out, i, f32_to_fp16(values[i]));
      break;
    case DType::BF16:
      out.resize(n * 2);
      for (size_t i = 0; i < n; ++i) store_le16(out, i, f32_to_bf16(values[i]));
      break;
    case DType::F8_E4M3:
      out.resize(n);
      for (size_t i = 0; i < n; ++i) out[i] = f32_to_fp8_e4m3(values[i]);
      break;
    case DType::F8_E5M2:
      out.resize(n);
      for (size_t i = 0; i < n; ++i) out[i] = f32_to_fp8_e5m2(values[i]);
      break;
    default:
      throw unsupported(path_ + ": tensor " + io::quote_name(name) + ": cannot write floats as " +
                        std::string(dtype_name(dtype)));
  }
  add(name, dtype, std::move(shape), std::move(out));
}

void SafetensorsWriter::add_i32(const std::string& name, std::vector<int64_t> shape, std::span<const int32_t> values) {
  std::vector<uint8_t> out(values.size() * 4);
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  add(name, DType::I32, std::move(shape), std::move(out));
}

uint64_t SafetensorsWriter::total_tensor_bytes() const {
  uint64_t s = 0;
  for (const auto& e : entries_) s += e.bytes.size();
  return s;
}

std::string SafetensorsWriter::header_json() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) md[k] = v;
    h["__metadata__"] = std::move(md);
  }
  uint64_t offset = 0;
  for (const auto& e : entries_) {
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    t["dtype"] = std::string(dtype_name(e.dtype));
    t["shape"] = e.shape;
    t["data_offsets"] = {offset, offset + e.bytes.size()};
    offset += e.bytes.size();
    h[e.name] = std::move(t);
  }
  std::string s = h.dump();
  while (s.size() % 8 != 0) s.push_back(' ');  // data section starts 8-byte aligned
  return s;
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
  const std::string header = header_json();
  std::vector<uint8_t> out(8 + header.size() + total_tensor_bytes());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  size_t pos = 8 + header.size();
  for (const auto& e : entries_) {
    if (!e.bytes.empty()) std::memcpy(out.data() + pos, e.bytes.data(), e.bytes.size());
    pos += e.bytes.size();
  }
  return out;
}

void SafetensorsWriter::write() {
  const std::string header = header_json();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  std::vector<std::span<const uint8_t>> chunks;
  chunks.emplace_back(len, 8);
  chunks.emplace_back(reinterpret_cast<const uint8_t*>(header.data()), header.size());
  for (const auto& e : entries_) chunks.push_back(e.bytes);
  io::write_file_atomically(path_, chunks);
}

void write_safetensors_index(const std::string& folder, const std::map<std::string, std::string>& weight_map,
                             uint64_t total_bytes) {
  nlohmann::ordered_json j;
  j["metadata"] = {{"total_size", total_bytes}};
  j["weight_map"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : weight_map) j["weight_map"][k] = v;
  const std::string text = j.dump(2) + "\n";
  io::write_file_atomically(folder + "/model.safetensors.index.json",
                            {std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size())});
}

}  // namespace qrt
