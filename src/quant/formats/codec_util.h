// Shared helpers of the format codecs: reading typed tensor views with checks that name the
// tensor, packing/unpacking LSB-first bit streams, and owned encoded tensors (what encoders emit).
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "qrt/dtype.h"
#include "qrt/safetensors.h"

namespace qrt::quant {

// A tensor produced by an encoder: `suffix` is the part of the name after the module path
// ("qweight", "scales", "weight_scale_inv", ...).
struct EncodedTensor {
  std::string suffix;
  DType dtype = DType::Unknown;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
  // A view of the bytes named "<prefix>.<suffix>" (valid while this object lives).
  TensorView view(const std::string& prefix) const;
};

// Tensors of one module by suffix ("qweight" -> view).
using TensorParts = std::map<std::string, TensorView>;

// Views of encoded tensors, keyed by suffix (for round trips in tests and tools).
TensorParts parts_of(const std::vector<EncodedTensor>& tensors, const std::string& prefix);

// Returns parts.at(suffix) or throws "<layer>: missing tensor <layer>.<suffix> (<why>)".
const TensorView& require_part(const TensorParts& parts, const std::string& layer, const std::string& suffix,
                               const std::string& why);
const TensorView* find_part(const TensorParts& parts, const std::string& suffix);

std::string shape_str(const std::vector<int64_t>& shape);
// Throws "<tensor>: shape [a, b] does not match the expected [c, d] (<why>)".
void expect_shape(const TensorView& t, const std::vector<int64_t>& expected, const std::string& why);
void expect_dtype(const TensorView& t, std::initializer_list<DType> allowed);

// F16/BF16/F32/F64 -> float; every value must be finite ("<tensor>[i] is NaN").
std::vector<float> read_float_tensor(const TensorView& t, bool require_finite = true);
// I32/U32 -> uint32 words (bit patterns).
std::vector<uint32_t> read_u32_tensor(const TensorView& t);
// The same checks, no copy: the tensor's bytes where they are (mmapped), read with load_u32. A 7B
// GPTQ checkpoint's qweights are 3.5 GB that a copy would first have to fault in.
std::span<const uint8_t> u32_tensor_bytes(const TensorView& t);
inline uint32_t load_u32(const uint8_t* p) {   // little-endian, any alignment
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
std::vector<int32_t> read_i32_tensor(const TensorView& t);

// Value j (width `bits`) of an LSB-first bit stream whose 32-bit words are words[0], words[stride],
// words[2 * stride], ... (GPTQ layout for 2/3/4/8 bits: stream bits 0..31 = first word).
inline uint32_t stream_get(const uint32_t* words, int64_t stride, int64_t j, int bits) {
  const int64_t bit = j * bits;
  const int64_t w = bit >> 5;
  const int off = static_cast<int>(bit & 31);
  uint64_t v = words[w * stride] >> off;
  if (off + bits > 32) v |= static_cast<uint64_t>(words[(w + 1) * stride]) << (32 - off);
  return static_cast<uint32_t>(v) & ((1u << bits) - 1u);
}
inline void stream_put(uint32_t* words, int64_t stride, int64_t j, int bits, uint32_t value) {
  const int64_t bit = j * bits;
  const int64_t w = bit >> 5;
  const int off = static_cast<int>(bit & 31);
  const uint32_t mask = (1u << bits) - 1u;
  value &= mask;
  words[w * stride] = (words[w * stride] & ~(mask << off)) | (value << off);
  if (off + bits > 32) {
    const int spill = 32 - off;
    const uint32_t hi_mask = mask >> spill;
    words[(w + 1) * stride] = (words[(w + 1) * stride] & ~hi_mask) | (value >> spill);
  }
}

EncodedTensor make_u32_tensor(const std::string& suffix, std::vector<int64_t> shape, const std::vector<uint32_t>& v);
EncodedTensor make_i32_tensor(const std::string& suffix, std::vector<int64_t> shape, const std::vector<int32_t>& v);
// float values stored as `dtype` (F16, BF16 or F32).
EncodedTensor make_float_tensor(const std::string& suffix, DType dtype, std::vector<int64_t> shape,
                                const std::vector<float>& v);

}  // namespace qrt::quant
