// FP8 e4m3 codec (docs/CHECKPOINTS.md, "FP8 (e4m3)"). The scale is a dequantization multiplier in every
// scheme, also where it is named weight_scale_inv:
//   per-tensor   weight_scale      [] or [1]            -> block N x K
//   per-channel  weight_scale      [N] or [N, 1]        -> block 1 x K
//   block        weight_scale_inv  [ceil(N/bn), ceil(K/bk)] with [bn, bk] = weight_block_size
// Partial edge blocks are allowed (ceil grids).
#include "qrt/error.h"
#include "quant/formats/codecs.h"

namespace qrt::quant {

QuantizedWeight decode_fp8(const std::string& layer, const TensorParts& parts, const Fp8Config& config,
                           int64_t in_features) {
  const TensorView& weight = require_part(parts, layer, "weight", "FP8 weight");
  const TensorView* scale_t = find_part(parts, "weight_scale_inv");
  if (!scale_t) scale_t = find_part(parts, "weight_scale");
  if (!scale_t) require_part(parts, layer, "weight_scale_inv", "FP8 weights need weight_scale_inv or weight_scale");
  if (weight.dtype != DType::F8_E4M3)
    throw unsupported(weight.name + ": FP8 dtype " + std::string(dtype_name(weight.dtype)) +
                      " is not supported (F8_E4M3 only)");
  if (weight.shape.size() != 2) throw invalid_input(weight.name + ": expected [out_features, in_features], got " + shape_str(weight.shape));
  const int64_t n = weight.shape[0], k = weight.shape[1];
  if (n <= 0 || k <= 0) throw invalid_input(weight.name + ": empty weight " + shape_str(weight.shape));
  if (in_features > 0 && k != in_features)
    throw invalid_input(weight.name + ": in_features " + std::to_string(k) + " does not match the model config's " +
                        std::to_string(in_features));
  if (weight.bytes.size() != static_cast<size_t>(n * k))
    throw invalid_input(weight.name + ": holds " + std::to_string(weight.bytes.size()) + " bytes, expected " +
                        std::to_string(n * k));
  const std::vector<float> scale = read_float_tensor(*scale_t);
  int64_t bn, bk;
  const auto& ss = scale_t->shape;
  // A one-element scale is per-tensor and an [N] / [N, 1] scale per-channel whatever the block config
  // says: a block grid of that shape dequantizes identically.
  if (scale.size() == 1) {
    bn = n;
    bk = k;
  } else if (ss == std::vector<int64_t>{n} || ss == std::vector<int64_t>{n, 1}) {
    bn = 1;
    bk = k;
  } else if (config.weight_block_size) {
    bn = config.weight_block_size->first;
    bk = config.weight_block_size->second;
    expect_shape(*scale_t, {(n + bn - 1) / bn, (k + bk - 1) / bk},
                 "weight_block_size [" + std::to_string(bn) + ", " + std::to_string(bk) + "] over " + shape_str({n, k}));
  } else {
    throw invalid_input(scale_t->name + ": shape " + shape_str(ss) + " is neither per-tensor ([] or [1]) nor per-channel ([" +
                        std::to_string(n) + "] or [" + std::to_string(n) + ", 1]), and the config has no weight_block_size");
  }
  QuantizedWeight w;
  w.spec.name = layer;
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::Fp8E4M3;
  w.spec.bits = 8;
  w.spec.group_size = -1;
  w.spec.scale_block_n = static_cast<int>(bn);
  w.spec.scale_block_k = static_cast<int>(bk);
  w.spec.source_format = "fp8";
  w.codes.assign(weight.bytes.begin(), weight.bytes.end());
  for (size_t i = 0; i < w.codes.size(); ++i)
    if ((w.codes[i] & 0x7F) == 0x7F)
      throw invalid_input(weight.name + ": element " + std::to_string(i) + " is an e4m3 NaN (0x7F/0xFF)");
  w.scales = scale;
  if (const TensorView* bias_t = find_part(parts, "bias")) {
    expect_shape(*bias_t, {n}, "bias of out_features");
    w.bias = read_float_tensor(*bias_t);
    w.spec.has_bias = true;
  }
  w.validate();
  return w;
}

std::vector<EncodedTensor> encode_fp8(const QuantizedWeight& w) {
  const auto& s = w.spec;
  if (s.encoding != WeightEncoding::Fp8E4M3) throw unsupported(s.name + ": not an FP8 weight (" + s.describe() + ")");
  w.validate();
  const int64_t n = s.out_features, k = s.in_features;
  std::vector<EncodedTensor> out;
  EncodedTensor weight{"weight", DType::F8_E4M3, {n, k}, w.codes};
  out.push_back(std::move(weight));
  if (s.scale_block_n >= n && s.scale_block_k >= k) {
    out.push_back(make_float_tensor("weight_scale", DType::F32, {1}, w.scales));
  } else if (s.scale_block_n == 1 && s.scale_block_k >= k) {
    out.push_back(make_float_tensor("weight_scale", DType::F32, {n, 1}, w.scales));
  } else {
    out.push_back(make_float_tensor("weight_scale_inv", DType::F32,
                                    {(n + s.scale_block_n - 1) / s.scale_block_n, (k + s.scale_block_k - 1) / s.scale_block_k},
                                    w.scales));
  }
  if (!w.bias.empty()) out.push_back(make_float_tensor("bias", DType::BF16, {n}, w.bias));
  return out;
}

}  // namespace qrt::quant
