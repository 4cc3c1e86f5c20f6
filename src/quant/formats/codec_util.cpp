// Shared helpers of the format codecs (see codec_util.h).
#include "quant/formats/codec_util.h"

#include <cmath>

#include "qrt/error.h"

namespace qrt::quant {

TensorView EncodedTensor::view(const std::string& prefix) const {
  TensorView v;
  v.name = prefix.empty() ? suffix : prefix + "." + suffix;
  v.dtype = dtype;
  v.shape = shape;
  v.bytes = std::span<const uint8_t>(data.data(), data.size());
  v.file = "<memory>";
  return v;
}

TensorParts parts_of(const std::vector<EncodedTensor>& tensors, const std::string& prefix) {
  TensorParts parts;
  for (const auto& t : tensors) parts[t.suffix] = t.view(prefix);
  return parts;
}

const TensorView* find_part(const TensorParts& parts, const std::string& suffix) {
  auto it = parts.find(suffix);
  return it == parts.end() ? nullptr : &it->second;
}

const TensorView& require_part(const TensorParts& parts, const std::string& layer, const std::string& suffix,
                               const std::string& why) {
  auto it = parts.find(suffix);
  if (it == parts.end())
    throw invalid_input(layer + ": missing tensor " + layer + "." + suffix + " (" + why + ")");
  return it->second;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void expect_shape(const TensorView& t, const std::vector<int64_t>& expected, const std::string& why) {
  if (t.shape != expected)
    throw invalid_input(t.name + ": shape " + shape_str(t.shape) + " does not match the expected " +
                        shape_str(expected) + " (" + why + ")");
}

void expect_dtype(const TensorView& t, std::initializer_list<DType> allowed) {
  std::string names;
  for (DType d : allowed) {
    if (d == t.dtype) return;
    names += (names.empty() ? "" : " or ") + std::string(dtype_name(d));
  }
  throw invalid_input(t.name + ": dtype " + std::string(dtype_name(t.dtype)) + " is not " + names);
}

static int64_t checked_numel(const TensorView& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) {
    if (d < 0 || (d != 0 && n > INT64_MAX / d)) throw invalid_input(t.name + ": invalid shape " + shape_str(t.shape));
    n *= d;
  }
  return n;
}

static void expect_bytes(const TensorView& t, int64_t elem_size) {
  const int64_t n = checked_numel(t);
  if (static_cast<uint64_t>(n) * static_cast<uint64_t>(elem_size) != t.bytes.size())
    throw invalid_input(t.name + ": holds " + std::to_string(t.bytes.size()) + " bytes, shape " +
                        shape_str(t.shape) + " needs " + std::to_string(n * elem_size));
}

std::vector<float> read_float_tensor(const TensorView& t, bool require_finite) {
  expect_dtype(t, {DType::F16, DType::BF16, DType::F32, DType::F64});
  const int64_t elem = dtype_bits(t.dtype) / 8;
  expect_bytes(t, elem);
  const size_t n = t.bytes.size() / static_cast<size_t>(elem);
  std::vector<float> out(n);
  const uint8_t* p = t.bytes.data();
  for (size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::F16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = fp16_to_f32(h); break; }
      case DType::BF16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_f32(h); break; }
      case DType::F32: std::memcpy(&out[i], p + 4 * i, 4); break;
      default: { double d; std::memcpy(&d, p + 8 * i, 8); out[i] = static_cast<float>(d); break; }
    }
    if (require_finite && !std::isfinite(out[i]))
      throw invalid_input(t.name + ": value " + std::to_string(i) + " is " + (std::isnan(out[i]) ? "NaN" : "Inf") +
                          " (scales and biases must be finite)");
  }
  return out;
}

std::span<const uint8_t> u32_tensor_bytes(const TensorView& t) {
  expect_dtype(t, {DType::I32, DType::U32});
  expect_bytes(t, 4);
  return t.bytes;
}

std::vector<uint32_t> read_u32_tensor(const TensorView& t) {
  const std::span<const uint8_t> bytes = u32_tensor_bytes(t);
  std::vector<uint32_t> out(bytes.size() / 4);
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

std::vector<int32_t> read_i32_tensor(const TensorView& t) {
  std::vector<uint32_t> u = read_u32_tensor(t);
  std::vector<int32_t> out(u.size());
  for (size_t i = 0; i < u.size(); ++i) out[i] = static_cast<int32_t>(u[i]);
  return out;
}

EncodedTensor make_u32_tensor(const std::string& suffix, std::vector<int64_t> shape, const std::vector<uint32_t>& v) {
  EncodedTensor t{suffix, DType::I32, std::move(shape), {}};
  t.data.resize(v.size() * 4);
  if (!v.empty()) std::memcpy(t.data.data(), v.data(), t.data.size());
  return t;
}

EncodedTensor make_i32_tensor(const std::string& suffix, std::vector<int64_t> shape, const std::vector<int32_t>& v) {
  EncodedTensor t{suffix, DType::I32, std::move(shape), {}};
  t.data.resize(v.size() * 4);
  if (!v.empty()) std::memcpy(t.data.data(), v.data(), t.data.size());
  return t;
}

EncodedTensor make_float_tensor(const std::string& suffix, DType dtype, std::vector<int64_t> shape,
                                const std::vector<float>& v) {
  EncodedTensor t{suffix, dtype, std::move(shape), {}};
  if (dtype == DType::F32) {
    t.data.resize(v.size() * 4);
    if (!v.empty()) std::memcpy(t.data.data(), v.data(), t.data.size());
  } else if (dtype == DType::F16 || dtype == DType::BF16) {
    t.data.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h = dtype == DType::F16 ? f32_to_fp16(v[i]) : f32_to_bf16(v[i]);
      std::memcpy(t.data.data() + 2 * i, &h, 2);
    }
  } else {
    throw internal_error("make_float_tensor: unsupported dtype " + std::string(dtype_name(dtype)));
  }
  return t;
}

}  // namespace qrt::quant
