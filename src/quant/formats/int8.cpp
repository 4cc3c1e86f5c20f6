// bitsandbytes LLM.int8 codec (docs/CHECKPOINTS.md, "LLM.int8 (bitsandbytes)"): weight I8 [N, K]
// row-quantized, SCB F32 [N] per-row absmax, weight_format U8 scalar (0 = "row", the only layout
// a checkpoint may hold; missing = row).
// W[n][k] = CB[n][k] * SCB[n] / 127. Canonical form: 8-bit symmetric, one group per row,
// code = CB + 128, scale = SCB / 127.
#include "qrt/error.h"
#include "quant/formats/codecs.h"

namespace qrt::quant {

QuantizedWeight decode_int8(const std::string& layer, const TensorParts& parts, int64_t in_features) {
  const TensorView& weight = require_part(parts, layer, "weight", "LLM.int8 weight");
  const TensorView& scb_t = require_part(parts, layer, "SCB", "LLM.int8 per-row absmax");
  expect_dtype(weight, {DType::I8});
  if (weight.shape.size() != 2) throw invalid_input(weight.name + ": expected [out_features, in_features], got " + shape_str(weight.shape));
  const int64_t n = weight.shape[0], k = weight.shape[1];
  if (n <= 0 || k <= 0) throw invalid_input(weight.name + ": empty weight");
  if (in_features > 0 && k != in_features)
    throw invalid_input(weight.name + ": in_features " + std::to_string(k) + " does not match the model config's " +
                        std::to_string(in_features));
  if (weight.bytes.size() != static_cast<size_t>(n * k)) throw invalid_input(weight.name + ": byte size does not match its shape");
  if (scb_t.shape != std::vector<int64_t>{n} && scb_t.shape != std::vector<int64_t>{n, 1})
    expect_shape(scb_t, {n}, "one absmax per output row");
  if (const TensorView* fmt = find_part(parts, "weight_format")) {
    if (fmt->bytes.size() != 1 || (fmt->dtype != DType::U8 && fmt->dtype != DType::I8))
      throw invalid_input(fmt->name + ": expected a U8 scalar");
    if (fmt->bytes[0] != 0)
      throw unsupported(fmt->name + ": layout code " + std::to_string(fmt->bytes[0]) +
                        " is not supported (only 0 = row; col32/col_turing/col_ampere are GPU-internal)");
  }
  const std::vector<float> scb = read_float_tensor(scb_t);
  QuantizedWeight w;
  w.spec.name = layer;
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.bits = 8;
  w.spec.group_size = -1;
  w.spec.zero_kind = ZeroKind::Symmetric;
  w.spec.source_format = "int8";
  w.codes.resize(static_cast<size_t>(n * k));
  for (size_t i = 0; i < w.codes.size(); ++i)
    w.codes[i] = static_cast<uint8_t>(static_cast<int>(static_cast<int8_t>(weight.bytes[i])) + 128);
  w.scales.resize(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) w.scales[r] = scb[r] * (1.0f / 127.0f);
  if (const TensorView* bias_t = find_part(parts, "bias")) {
    expect_shape(*bias_t, {n}, "bias of out_features");
    w.bias = read_float_tensor(*bias_t);
    w.spec.has_bias = true;
  }
  w.validate();
  return w;
}

std::vector<EncodedTensor> encode_int8(const QuantizedWeight& w) {
  const auto& s = w.spec;
  if (s.encoding != WeightEncoding::IntAffine || s.bits != 8 || s.zero_kind != ZeroKind::Symmetric ||
      s.num_groups() != 1 || !w.g_idx.empty())
    throw unsupported(s.name + ": LLM.int8 stores 8-bit symmetric per-row weights only (got " + s.describe() + ")");
  w.validate();
  const int64_t n = s.out_features, k = s.in_features;
  EncodedTensor weight{"weight", DType::I8, {n, k}, {}};
  weight.data.resize(static_cast<size_t>(n * k));
  for (size_t i = 0; i < weight.data.size(); ++i) {
    const int v = static_cast<int>(w.codes[i]) - 128;
    if (v < -127) throw invalid_input(s.name + ": code 0 (-128) is outside LLM.int8's [-127, 127]");
    weight.data[i] = static_cast<uint8_t>(static_cast<int8_t>(v));
  }
  std::vector<float> scb(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) scb[r] = w.scales[r] * 127.0f;
  std::vector<EncodedTensor> out;
  out.push_back(std::move(weight));
  out.push_back(make_float_tensor("SCB", DType::F32, {n}, scb));
  out.push_back(EncodedTensor{"weight_format", DType::U8, {}, {0}});
  if (!w.bias.empty()) out.push_back(make_float_tensor("bias", DType::F16, {n}, w.bias));
  return out;
}

}  // namespace qrt::quant
