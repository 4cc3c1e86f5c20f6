// A small GGUF v3 writer for tests, fixtures and tools.
#include <cstring>

#include "io/json_strict.h"
#include "io/mapped_file.h"
#include "qrt/error.h"
#include "qrt/gguf.h"

namespace qrt {

namespace {
// resize + memcpy rather than insert: GCC 12 warns falsely (-Wstringop-overflow) on small inserts.
void append(std::vector<uint8_t>& out, const void* p, size_t n) {
  if (n == 0) return;
  const size_t at = out.size();
  out.resize(at + n);
  std::memcpy(out.data() + at, p, n);
}
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  append(out, &v, sizeof(T));
}
void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  append(out, s.data(), s.size());
}
template <typename T>
std::vector<uint8_t> scalar(T v) {
  std::vector<uint8_t> out;
  put(out, v);
  return out;
}
}  // namespace

void GgufWriter::add_raw(const std::string& key, GgufType type, std::vector<uint8_t> value_bytes) {
  put_string(kv_bytes_, key);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(type));
  append(kv_bytes_, value_bytes.data(), value_bytes.size());
  ++kv_count_;
}

void GgufWriter::add_u8(const std::string& k, uint8_t v) { add_raw(k, GgufType::UINT8, scalar(v)); }
void GgufWriter::add_i8(const std::string& k, int8_t v) { add_raw(k, GgufType::INT8, scalar(v)); }
void GgufWriter::add_u16(const std::string& k, uint16_t v) { add_raw(k, GgufType::UINT16, scalar(v)); }
void GgufWriter::add_i16(const std::string& k, int16_t v) { add_raw(k, GgufType::INT16, scalar(v)); }
void GgufWriter::add_u32(const std::string& k, uint32_t v) {
  if (k == "general.alignment") alignment_ = v;
  add_raw(k, GgufType::UINT32, scalar(v));
}
void GgufWriter::add_i32(const std::string& k, int32_t v) { add_raw(k, GgufType::INT32, scalar(v)); }
void GgufWriter::add_u64(const std::string& k, uint64_t v) { add_raw(k, GgufType::UINT64, scalar(v)); }
void GgufWriter::add_i64(const std::string& k, int64_t v) { add_raw(k, GgufType::INT64, scalar(v)); }
void GgufWriter::add_f32(const std::string& k, float v) { add_raw(k, GgufType::FLOAT32, scalar(v)); }
void GgufWriter::add_f64(const std::string& k, double v) { add_raw(k, GgufType::FLOAT64, scalar(v)); }
void GgufWriter::add_bool(const std::string& k, bool v) { add_raw(k, GgufType::BOOL, scalar<uint8_t>(v ? 1 : 0)); }
void GgufWriter::add_string(const std::string& k, const std::string& v) {
  std::vector<uint8_t> b;
  put_string(b, v);
  add_raw(k, GgufType::STRING, std::move(b));
}
void GgufWriter::add_string_array(const std::string& k, const std::vector<std::string>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::STRING));
  put<uint64_t>(b, v.size());
  for (const auto& s : v) put_string(b, s);
  add_raw(k, GgufType::ARRAY, std::move(b));
}
void GgufWriter::add_f32_array(const std::string& k, const std::vector<float>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::FLOAT32));
  put<uint64_t>(b, v.size());
  for (float x : v) put(b, x);
  add_raw(k, GgufType::ARRAY, std::move(b));
}
void GgufWriter::add_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::INT32));
  put<uint64_t>(b, v.size());
  for (int32_t x : v) put(b, x);
  add_raw(k, GgufType::ARRAY, std::move(b));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                            std::vector<uint8_t> data) {
  tensors_.push_back(Tensor{name, type, std::move(ne), std::move(data)});
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
    throw invalid_input("GGUF writer: alignment " + std::to_string(alignment_) + " is not a power of two");
  std::vector<uint8_t> out;
  append(out, "GGUF", 4);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_count_);
  append(out, kv_bytes_.data(), kv_bytes_.size());
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<int64_t>(out, d);
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  if (!tensors_.empty()) out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    append(out, tensors_[i].data.data(), tensors_[i].data.size());
    if (i + 1 < tensors_.size()) out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const auto bytes = to_bytes();
  io::write_file_atomically(path, {std::span<const uint8_t>(bytes)});
}

}  // namespace qrt
