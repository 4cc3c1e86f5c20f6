// compressed-tensors codecs (the format llm-compressor writes), docs/COMPRESSED_TENSORS.md:
//   pack-quantized:  weight_packed int32 [N, ceil(K * b / 32)]: row n is an LSB-first stream of
//                    b-bit values (q + 2^(b-1)), value k at bit k * b; weight_scale [N, G] (group)
//                    or [N, 1] (channel); weight_shape [2] = (N, K); when asymmetric,
//                    weight_zero_point int32 [ceil(N * b / 32), G]: column g is a stream over the
//                    rows of (zero point + 2^(b-1)). Value = (q - zero_point) * scale.
//   naive-quantized: weight int8 [N, K], weight_scale [N, 1] or [1]: value = q * scale.
//   float-quantized: the FP8 codec (weight e4m3 [N, K], weight_scale per channel or tensor).
#include <cstring>

#include "qrt/error.h"
#include "quant/formats/codecs.h"

namespace qrt::quant {

namespace {

// weight_shape holds (N, K) as int32 or int64.
std::pair<int64_t, int64_t> read_weight_shape(const TensorView& t) {
  expect_dtype(t, {DType::I32, DType::I64});
  if (t.numel() != 2) throw invalid_input(t.name + ": weight_shape must hold 2 values (out, in)");
  int64_t v[2];
  for (int i = 0; i < 2; ++i) {
    if (t.dtype == DType::I64) {
      std::memcpy(&v[i], t.bytes.data() + 8 * i, 8);
    } else {
      int32_t x;
      std::memcpy(&x, t.bytes.data() + 4 * i, 4);
      v[i] = x;
    }
    if (v[i] <= 0 || v[i] > (int64_t{1} << 31)) throw invalid_input(t.name + ": weight_shape values must be in 1..2^31");
  }
  return {v[0], v[1]};
}

}  // namespace

QuantizedWeight decode_compressed_tensors(const std::string& layer, const TensorParts& parts,
                                          const CompressedTensorsConfig& c, int64_t in_features) {
  if (c.format == "float-quantized") {
    QuantizedWeight w = decode_fp8(layer, parts, Fp8Config{}, in_features);
    w.spec.source_format = "compressed-tensors fp8";
    return w;
  }
  QuantizedWeight w;
  w.spec.name = layer;
  w.spec.encoding = WeightEncoding::IntAffine;
  w.spec.bits = c.num_bits;
  const TensorView& scale_t = require_part(parts, layer, "weight_scale", "scales");
  std::vector<float> scales = read_float_tensor(scale_t);
  int64_t n = 0, k = 0;
  if (c.format == "naive-quantized") {
    const TensorView& q = require_part(parts, layer, "weight", "int8 weight");
    expect_dtype(q, {DType::I8});
    if (q.shape.size() != 2) throw invalid_input(q.name + ": expected 2 dimensions, got " + shape_str(q.shape));
    n = q.shape[0];
    k = q.shape[1];
    if (in_features > 0 && k != in_features)
      throw invalid_input(q.name + ": in_features " + std::to_string(k) + ", the model config says " +
                          std::to_string(in_features));
    w.codes.resize(static_cast<size_t>(n * k));
    for (int64_t i = 0; i < n * k; ++i) w.codes[i] = static_cast<uint8_t>(static_cast<int8_t>(q.bytes[i]) + 128);
    w.spec.source_format = "compressed-tensors int8";
  } else {
    const auto [sn, sk] = read_weight_shape(require_part(parts, layer, "weight_shape", "original shape"));
    n = sn;
    k = sk;
    if (in_features > 0 && k != in_features)
      throw invalid_input(layer + ".weight_shape: in_features " + std::to_string(k) + ", the model config says " +
                          std::to_string(in_features));
    const int b = c.num_bits;
    const int64_t words = (k * b + 31) / 32;
    const TensorView& packed = require_part(parts, layer, "weight_packed", "packed int weights");
    expect_dtype(packed, {DType::I32});
    expect_shape(packed, {n, words}, "weight_shape " + std::to_string(n) + " x " + std::to_string(k) + " at " +
                                         std::to_string(b) + " bits");
    const std::vector<uint32_t> pw = read_u32_tensor(packed);
    w.codes.resize(static_cast<size_t>(n * k));
    for (int64_t r = 0; r < n; ++r)
      for (int64_t col = 0; col < k; ++col)
        w.codes[r * k + col] = static_cast<uint8_t>(stream_get(pw.data() + r * words, 1, col, b));
    w.spec.source_format = "compressed-tensors int" + std::to_string(b);
  }
  w.spec.in_features = k;
  w.spec.out_features = n;
  const int64_t gs = c.strategy == "group" ? c.group_size : -1;
  w.spec.group_size = gs > 0 && gs < k ? static_cast<int>(gs) : -1;
  const int64_t groups = w.spec.num_groups();
  if (c.strategy == "tensor") {
    if (scales.size() != 1) throw invalid_input(scale_t.name + ": a tensor-wise scale must hold 1 value");
    scales.assign(static_cast<size_t>(n), scales[0]);
  }
  if (static_cast<int64_t>(scales.size()) != n * groups)
    throw invalid_input(scale_t.name + ": shape " + shape_str(scale_t.shape) + " does not hold " + std::to_string(n) +
                        " x " + std::to_string(groups) + " scales");
  w.scales = std::move(scales);
  if (c.symmetric) {
    w.spec.zero_kind = ZeroKind::Symmetric;
  } else {
    w.spec.zero_kind = ZeroKind::Integer;
    const TensorView& zp = require_part(parts, layer, "weight_zero_point", "packed zero points");
    expect_dtype(zp, {DType::I32});
    const int b = c.num_bits;
    const int64_t zwords = (n * b + 31) / 32;
    expect_shape(zp, {zwords, groups}, "zero points packed along the rows");
    const std::vector<uint32_t> zw = read_u32_tensor(zp);
    w.zeros.resize(static_cast<size_t>(n * groups));
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t r = 0; r < n; ++r)
        w.zeros[r * groups + g] = static_cast<float>(stream_get(zw.data() + g, groups, r, b));
  }
  if (const TensorView* bias = find_part(parts, "bias")) {
    w.bias = read_float_tensor(*bias);
    if (static_cast<int64_t>(w.bias.size()) != n)
      throw invalid_input(bias->name + ": bias has " + std::to_string(w.bias.size()) + " values, expected " + std::to_string(n));
    w.spec.has_bias = true;
  }
  w.validate();
  return w;
}

}  // namespace qrt::quant
