// bitsandbytes 4-bit (NF4 / FP4, with or without double quantization) as transformers saves it.
// The weight [N, K] is flattened row-major and cut into blocks of `blocksize` values; each value is
// a 4-bit index into a 16-entry code book (quant_map) and each block has one absmax scale:
//   value = quant_map[code] * absmax[block]
// Two codes share a byte, the even element in the high nibble. With double quantization the
// absmax values are themselves 8-bit codes into a 256-entry code book with one float scale per
// `nested_blocksize` absmax values, plus a common offset:
//   absmax[b] = nested_quant_map[code_b] * nested_absmax[b / nested_blocksize] + nested_offset
// The layer's parameters (quant_type, blocksize, shape, nested_*) are a JSON object stored as the
// bytes of the uint8 tensor "weight.quant_state.bitsandbytes__<quant_type>".
// Canonical form: WeightEncoding::Codebook, 4 bits, groups of `blocksize` along K (a block must not
// straddle two rows), the code book as given and the absmax values as scales.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

#include "qrt/error.h"
#include "quant/formats/codecs.h"

namespace qrt::quant {

namespace {

using nlohmann::json;

std::vector<float> read_floats(const TensorView& t, int64_t expected, const std::string& what) {
  expect_dtype(t, {DType::F32});
  if (t.numel() != expected)
    throw invalid_input(t.name + ": " + what + " holds " + std::to_string(t.numel()) + " values, expected " +
                        std::to_string(expected));
  std::vector<float> v(static_cast<size_t>(expected));
  if (expected) std::memcpy(v.data(), t.bytes.data(), v.size() * 4);
  return v;
}

const TensorView* quant_state_part(const TensorParts& parts, std::string* quant_type) {
  for (const char* qt : {"nf4", "fp4"}) {
    const TensorView* t = find_part(parts, std::string("weight.quant_state.bitsandbytes__") + qt);
    if (t) {
      *quant_type = qt;
      return t;
    }
  }
  return nullptr;
}

int64_t positive_int(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() <= 0 ||
      j[key].get<int64_t>() > (int64_t{1} << 24))
    throw invalid_input(where + ": quant_state." + key + " must be a positive integer <= 2^24");
  return j[key].get<int64_t>();
}

}  // namespace

Bnb4State read_bnb4_state(const std::string& layer, const TensorParts& parts) {
  Bnb4State s;
  const TensorView* t = quant_state_part(parts, &s.quant_type);
  if (!t)
    throw invalid_input(layer + ": bitsandbytes 4-bit tensor weight.quant_state.bitsandbytes__nf4 (or __fp4) is missing");
  expect_dtype(*t, {DType::U8, DType::I8});
  json j;
  try {
    j = json::parse(t->bytes.begin(), t->bytes.end());
  } catch (const json::exception& e) {
    throw invalid_input(t->name + ": quant_state is not JSON: " + e.what());
  }
  if (!j.is_object()) throw invalid_input(t->name + ": quant_state is not a JSON object");
  if (j.contains("quant_type") && (!j["quant_type"].is_string() || j["quant_type"].get<std::string>() != s.quant_type))
    throw invalid_input(t->name + ": quant_state.quant_type disagrees with the tensor name");
  s.blocksize = positive_int(j, "blocksize", t->name);
  if (!j.contains("shape") || !j["shape"].is_array() || j["shape"].size() != 2 || !j["shape"][0].is_number_integer() ||
      !j["shape"][1].is_number_integer() || j["shape"][0].get<int64_t>() <= 0 || j["shape"][1].get<int64_t>() <= 0 ||
      j["shape"][0].get<int64_t>() > (int64_t{1} << 31) || j["shape"][1].get<int64_t>() > (int64_t{1} << 31))
    throw invalid_input(t->name + ": quant_state.shape must be [out_features, in_features]");
  s.out_features = j["shape"][0].get<int64_t>();
  s.in_features = j["shape"][1].get<int64_t>();
  s.nested = j.contains("nested_blocksize");
  if (s.nested) {
    s.nested_blocksize = positive_int(j, "nested_blocksize", t->name);
    if (!j.contains("nested_offset") || !j["nested_offset"].is_number())
      throw invalid_input(t->name + ": quant_state.nested_offset must be a number");
    s.nested_offset = j["nested_offset"].get<float>();
    if (!std::isfinite(s.nested_offset)) throw invalid_input(t->name + ": quant_state.nested_offset is not finite");
  }
  return s;
}

QuantizedWeight decode_bnb4(const std::string& layer, const TensorParts& parts, int64_t in_features) {
  const Bnb4State st = read_bnb4_state(layer, parts);
  const int64_t n = st.out_features, k = st.in_features;
  if (in_features > 0 && k != in_features)
    throw invalid_input(layer + ": quant_state.shape says in_features " + std::to_string(k) + ", the model config " +
                        std::to_string(in_features));
  if (k % st.blocksize != 0)
    throw unsupported(layer + ": bitsandbytes blocksize " + std::to_string(st.blocksize) + " does not divide in_features " +
                      std::to_string(k) + " (blocks would straddle rows)");
  const TensorView& packed = require_part(parts, layer, "weight", "bitsandbytes 4-bit codes");
  expect_dtype(packed, {DType::U8});
  if (packed.numel() * 2 != n * k)
    throw invalid_input(packed.name + ": " + std::to_string(packed.numel()) + " bytes do not hold " + std::to_string(n) +
                        " x " + std::to_string(k) + " 4-bit codes");
  const int64_t blocks = n * k / st.blocksize;
  std::vector<float> quant_map =
      read_floats(require_part(parts, layer, "weight.quant_map", "4-bit code book"), 16, "quant_map");
  const TensorView& absmax_t = require_part(parts, layer, "weight.absmax", "block scales");
  std::vector<float> absmax;
  if (!st.nested) {
    absmax = read_floats(absmax_t, blocks, "absmax");
  } else {
    expect_dtype(absmax_t, {DType::U8});
    if (absmax_t.numel() != blocks)
      throw invalid_input(absmax_t.name + ": holds " + std::to_string(absmax_t.numel()) + " codes, expected " +
                          std::to_string(blocks));
    const int64_t nested_blocks = (blocks + st.nested_blocksize - 1) / st.nested_blocksize;
    const std::vector<float> code2 = read_floats(
        require_part(parts, layer, "weight.nested_quant_map", "8-bit code book of the scales"), 256, "nested_quant_map");
    const std::vector<float> absmax2 = read_floats(
        require_part(parts, layer, "weight.nested_absmax", "scales of the scales"), nested_blocks, "nested_absmax");
    absmax.resize(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; ++b)
      absmax[b] = code2[absmax_t.bytes[b]] * absmax2[b / st.nested_blocksize] + st.nested_offset;
  }
  QuantizedWeight w;
  w.spec.name = layer;
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::Codebook;
  w.spec.bits = 4;
  w.spec.group_size = static_cast<int>(st.blocksize);
  w.spec.zero_kind = ZeroKind::Symmetric;
  w.spec.codebook = std::move(quant_map);
  w.spec.source_format = "bnb_" + st.quant_type + (st.nested ? " double-quant" : "");
  w.codes.resize(static_cast<size_t>(n * k));
  const uint8_t* p = packed.bytes.data();
  for (int64_t i = 0; i < n * k / 2; ++i) {
    w.codes[2 * i] = p[i] >> 4;
    w.codes[2 * i + 1] = p[i] & 0xF;
  }
  w.scales = std::move(absmax);   // [N][K / blocksize]: blocks run along each row in order
  if (const TensorView* b = find_part(parts, "bias")) {
    w.bias = read_float_tensor(*b);
    if (static_cast<int64_t>(w.bias.size()) != n)
      throw invalid_input(b->name + ": bias has " + std::to_string(w.bias.size()) + " values, expected " + std::to_string(n));
    w.spec.has_bias = true;
  }
  w.validate();
  return w;
}

}  // namespace qrt::quant
