// GPTQ codec (docs/CHECKPOINTS.md, GPTQ): qweight packed along K as an LSB-first bit stream per output column
// (this one rule covers 2/4/8-bit fields and the 3-bit "continuous" layout), qzeros packed along N
// the same way, scales [G, N], optional act-order g_idx [K].
//
// Zero points: checkpoint_format "gptq" (v1) stores z - 1; "gptq_v2" stores z. Symmetric layers
// ignore qzeros (z = 2^(b-1), as vLLM does) and only warn when the stored constant is unexpected.
// v1 asymmetric zeros are decoded by adding the per-field-one constant to the whole 32-bit word for
// 2/4/8 bits (exact inverse of GPTQModel's exporter, equals per-field +1 when no field is maxq) and
// per field, masked, for 3 bits.
#include <algorithm>
#include <cmath>

#include "qrt/error.h"
#include "quant/formats/codecs.h"

namespace qrt::quant {

namespace {

// 0x11111111 for 4 bits: one in every field of a 32-bit word.
uint32_t per_field_one(int bits) {
  uint32_t c = 0;
  for (int s = 0; s < 32; s += bits) c |= 1u << s;
  return c;
}

void check_bits(int bits, const std::string& layer) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw invalid_input(layer + ": GPTQ bits " + std::to_string(bits) + " is not one of 2, 3, 4, 8");
}

}  // namespace

QuantizedWeight decode_gptq(const std::string& layer, const TensorParts& parts, const GptqConfig& config,
                            int64_t in_features, std::vector<std::string>* warnings) {
  const int b = config.bits;
  check_bits(b, layer);
  const TensorView& qweight = require_part(parts, layer, "qweight", "GPTQ packed weight");
  const TensorView& scales_t = require_part(parts, layer, "scales", "GPTQ scales");
  const TensorView* qzeros_t = find_part(parts, "qzeros");
  const TensorView* g_idx_t = find_part(parts, "g_idx");
  const TensorView* bias_t = find_part(parts, "bias");
  expect_dtype(qweight, {DType::I32, DType::U32});
  if (qweight.shape.size() != 2)
    throw invalid_input(qweight.name + ": expected 2 dimensions [in_features*bits/32, out_features], got " +
                        shape_str(qweight.shape));
  if (scales_t.shape.size() != 2)
    throw invalid_input(scales_t.name + ": expected 2 dimensions [groups, out_features], got " +
                        shape_str(scales_t.shape));
  const int64_t n = scales_t.shape[1];
  int64_t k = in_features;
  if (g_idx_t) {
    if (g_idx_t->shape.size() != 1)
      throw invalid_input(g_idx_t->name + ": expected 1 dimension [in_features], got " + shape_str(g_idx_t->shape));
    if (k > 0 && g_idx_t->shape[0] != k)
      throw invalid_input(g_idx_t->name + ": length " + std::to_string(g_idx_t->shape[0]) +
                          " does not match in_features " + std::to_string(k));
    k = g_idx_t->shape[0];
  }
  if (k <= 0) {
    if ((qweight.shape[0] * 32) % b != 0)
      throw invalid_input(qweight.name + ": " + std::to_string(qweight.shape[0]) + " rows cannot hold " +
                          std::to_string(b) + "-bit values");
    k = qweight.shape[0] * 32 / b;
  }
  if (n <= 0 || k <= 0) throw invalid_input(layer + ": empty GPTQ layer " + shape_str({k, n}));
  const std::string dims = "bits=" + std::to_string(b) + ", in_features=" + std::to_string(k) +
                           ", out_features=" + std::to_string(n);
  if ((k * b) % 32 != 0 || (b == 3 && k % 32 != 0))
    throw invalid_input(qweight.name + ": in_features " + std::to_string(k) + " is not a multiple of " +
                        std::to_string(b == 3 ? 32 : 32 / b) + " as " + std::to_string(b) + "-bit GPTQ packing needs");
  expect_shape(qweight, {k * b / 32, n}, dims);
  config.check_layer(k, layer);
  const int64_t gs = config.group_size <= 0 ? k : config.group_size;
  const int64_t groups = (k + gs - 1) / gs;
  expect_shape(scales_t, {groups, n}, dims + ", group_size=" + std::to_string(config.group_size));

  QuantizedWeight w;
  w.spec.name = layer;
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.bits = b;
  w.spec.group_size = config.group_size <= 0 ? -1 : config.group_size;
  w.spec.zero_kind = config.sym ? ZeroKind::Symmetric : ZeroKind::Integer;
  w.spec.source_format = config.is_v2() ? "gptq_v2" : "gptq";

  w.codes.resize(static_cast<size_t>(n * k));
  if (32 % b == 0) {
    // 2, 4 and 8 bits: whole fields per word, a word's fields written in one go (the bit stream
    // below is ~4 x slower; a 7B model has 6.5 G codes), the words read where they are mapped.
    const uint8_t* qw = u32_tensor_bytes(qweight).data();
    const int per = 32 / b;
    const uint32_t mask = (1u << b) - 1u;
    for (int64_t c = 0; c < n; ++c) {
      uint8_t* out = w.codes.data() + c * k;
      for (int64_t wr = 0; wr < k / per; ++wr) {
        const uint32_t word = load_u32(qw + 4 * static_cast<size_t>(wr * n + c));
        for (int j = 0; j < per; ++j) out[wr * per + j] = static_cast<uint8_t>((word >> (j * b)) & mask);
      }
    }
  } else {
    const std::vector<uint32_t> qw = read_u32_tensor(qweight);
    for (int64_t c = 0; c < n; ++c)
      for (int64_t r = 0; r < k; ++r)
        w.codes[c * k + r] = static_cast<uint8_t>(stream_get(qw.data() + c, n, r, b));
  }

  const std::vector<float> sc = read_float_tensor(scales_t);
  w.scales.resize(static_cast<size_t>(n * groups));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < n; ++c) w.scales[c * groups + g] = sc[g * n + c];

  const uint32_t maxq = (1u << b) - 1u;
  if (qzeros_t) {
    expect_dtype(*qzeros_t, {DType::I32, DType::U32});
    if ((n * b) % 32 != 0 || (b == 3 && n % 32 != 0))
      throw invalid_input(qzeros_t->name + ": out_features " + std::to_string(n) +
                          " cannot be packed in whole 32-bit words at " + std::to_string(b) + " bits");
    expect_shape(*qzeros_t, {groups, n * b / 32}, dims + ", group_size=" + std::to_string(config.group_size));
    std::vector<uint32_t> qz = read_u32_tensor(*qzeros_t);
    const int64_t words_per_row = n * b / 32;
    if (config.sym) {
      const uint32_t expect = config.is_v2() ? (1u << (b - 1)) : (1u << (b - 1)) - 1u;
      int64_t odd = 0;
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t c = 0; c < n; ++c)
          if (stream_get(qz.data() + g * words_per_row, 1, c, b) != expect) ++odd;
      if (odd && warnings)
        warnings->push_back(qzeros_t->name + ": " + std::to_string(odd) +
                            " stored zero points differ from the symmetric constant " + std::to_string(expect) +
                            "; ignored because the config says sym = true");
    } else {
      if (!config.is_v2() && b != 3) {
        const uint32_t one = per_field_one(b);
        for (uint32_t& word : qz) word += one;   // word-level carry, mod 2^32
      }
      w.zeros.resize(static_cast<size_t>(n * groups));
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t c = 0; c < n; ++c) {
          uint32_t z = stream_get(qz.data() + g * words_per_row, 1, c, b);
          if (!config.is_v2() && b == 3) z = (z + 1) & maxq;
          w.zeros[c * groups + g] = static_cast<float>(z);
        }
    }
  } else if (!config.sym) {
    require_part(parts, layer, "qzeros", "asymmetric GPTQ (sym = false) needs zero points");
  }

  if (g_idx_t) {
    std::vector<int32_t> gi = read_i32_tensor(*g_idx_t);
    std::vector<int64_t> count(static_cast<size_t>(groups), 0);
    bool trivial = true;
    for (int64_t r = 0; r < k; ++r) {
      if (gi[r] < 0 || gi[r] >= groups)
        throw invalid_input(g_idx_t->name + ": g_idx[" + std::to_string(r) + "] = " + std::to_string(gi[r]) +
                            " is outside [0, " + std::to_string(groups) + ")");
      if (++count[gi[r]] > gs)
        throw invalid_input(g_idx_t->name + ": group " + std::to_string(gi[r]) + " has more than group_size " +
                            std::to_string(gs) + " columns");
      if (gi[r] != r / gs) trivial = false;
    }
    if (!trivial) {
      w.g_idx = std::move(gi);
      w.spec.act_order = true;
    }
  }
  if (bias_t) {
    if (bias_t->shape != std::vector<int64_t>{n}) expect_shape(*bias_t, {n}, "bias of out_features");
    w.bias = read_float_tensor(*bias_t);
    w.spec.has_bias = true;
  }
  w.validate();
  return w;
}

std::vector<EncodedTensor> encode_gptq(const QuantizedWeight& w, bool v2, DType scale_dtype) {
  const auto& s = w.spec;
  const int b = s.bits;
  if (s.encoding != WeightEncoding::IntAffine)
    throw unsupported(s.name + ": GPTQ can only encode integer weights, not " + weight_encoding_name(s.encoding));
  check_bits(b, s.name);
  if (s.zero_kind == ZeroKind::Float)
    throw unsupported(s.name + ": GPTQ cannot store float zero points (GGUF-style min); dequantize and requantize");
  const int64_t n = s.out_features, k = s.in_features;
  if ((k * b) % 32 != 0 || (b == 3 && k % 32 != 0))
    throw invalid_input(s.name + ": in_features " + std::to_string(k) + " cannot be packed at " +
                        std::to_string(b) + " bits (GPTQ needs whole 32-bit words along in_features)");
  if ((n * b) % 32 != 0 || (b == 3 && n % 32 != 0))
    throw invalid_input(s.name + ": out_features " + std::to_string(n) + " cannot be packed at " +
                        std::to_string(b) + " bits (GPTQ qzeros need whole 32-bit words)");
  w.validate();
  const int64_t groups = s.num_groups();
  const int64_t gs = s.effective_group_size();
  const uint32_t maxq = (1u << b) - 1u;

  std::vector<uint32_t> qweight(static_cast<size_t>(k * b / 32 * n), 0);
  for (int64_t c = 0; c < n; ++c)
    for (int64_t r = 0; r < k; ++r) stream_put(qweight.data() + c, n, r, b, w.codes[c * k + r]);

  const int64_t zwords = n * b / 32;
  std::vector<uint32_t> qzeros(static_cast<size_t>(groups * zwords), 0);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < n; ++c) {
      uint32_t z = 1u << (b - 1);
      if (s.zero_kind == ZeroKind::Integer) {
        const float zf = w.zeros[c * groups + g];
        if (zf != std::nearbyint(zf) || zf < 0 || zf > static_cast<float>(maxq))
          throw invalid_input(s.name + ": zero point " + std::to_string(zf) + " of row " + std::to_string(c) +
                              " is not an integer in [0, " + std::to_string(maxq) + "]");
        z = static_cast<uint32_t>(zf);
      }
      if (!v2 && b == 3) z = (z - 1) & maxq;
      stream_put(qzeros.data() + g * zwords, 1, c, b, z);
    }
  if (!v2 && b != 3) {
    const uint32_t one = per_field_one(b);
    for (uint32_t& word : qzeros) word -= one;   // word-level borrow, as GPTQModel's v2 -> v1 export
  }

  std::vector<float> scales(static_cast<size_t>(groups * n));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < n; ++c) scales[g * n + c] = w.scales[c * groups + g];
  std::vector<int32_t> g_idx(static_cast<size_t>(k));
  for (int64_t r = 0; r < k; ++r) g_idx[r] = w.g_idx.empty() ? static_cast<int32_t>(r / gs) : w.g_idx[r];

  std::vector<EncodedTensor> out;
  out.push_back(make_u32_tensor("qweight", {k * b / 32, n}, qweight));
  out.push_back(make_u32_tensor("qzeros", {groups, zwords}, qzeros));
  out.push_back(make_float_tensor("scales", scale_dtype, {groups, n}, scales));
  out.push_back(make_i32_tensor("g_idx", {k}, g_idx));
  if (!w.bias.empty()) out.push_back(make_float_tensor("bias", scale_dtype, {n}, w.bias));
  return out;
}

}  // namespace qrt::quant
