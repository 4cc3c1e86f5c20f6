// AWQ codec (docs/CHECKPOINTS.md, "AWQ"): 4-bit with zero points, the only variant the format's
// checkpoints hold.
//   GEMM: qweight [K, N/8] packed along N with the interleaved nibble order: nibble i of word
//         [k][c] holds column 8c + kOrder[i] (kOrder = 0,2,4,6,1,3,5,7); qzeros [G, N/8] the same;
//         scales [G, N]; zeros stored as is (no -1).
//   GEMV: qweight [N, K/8] packed along K sequentially; qzeros [N, Zw] (group 8c+i in nibble i);
//         scales [N, 8*Zw] with the first G columns valid and the rest zero padding.
// `version: exllama` and `ipex` are GEMM on disk.
#include <algorithm>

#include "qrt/error.h"
#include "quant/formats/codecs.h"

namespace qrt::quant {

namespace {
constexpr int kReverse[8] = {0, 4, 1, 5, 2, 6, 3, 7};   // nibble holding column 8c + j

bool is_gemm_layout(const std::string& v) { return v == "gemm" || v == "exllama" || v == "ipex"; }

}  // namespace

void check_awq_layout(const AwqConfig& c, const std::string& where) {
  if (c.bits != 4)
    throw unsupported(where + ": AWQ bits " + std::to_string(c.bits) + " is not supported (AWQ kernels implement 4 only)");
  if (!c.zero_point)
    throw unsupported(where + ": AWQ with zero_point = false is not supported by the " + c.version + " layout");
  if (!is_gemm_layout(c.version) && c.version != "gemv")
    throw unsupported(where + ": AWQ version '" + c.version + "' is not supported (gemm, gemv, exllama, ipex)");
}

int64_t awq_gemv_zeros_width(int64_t in_features, int64_t group_size) {
  int64_t mult;
  if (group_size >= 128) mult = 1;
  else if (group_size == 64) mult = 2;
  else if (group_size == 32) mult = 4;
  else throw unsupported("AWQ GEMV group_size " + std::to_string(group_size) + " is not supported (32, 64 or >= 128)");
  const int64_t base = ((in_features / group_size) + 7) / 8;
  return (base + mult - 1) / mult * mult;
}

QuantizedWeight decode_awq(const std::string& layer, const TensorParts& parts, const AwqConfig& config,
                           int64_t in_features) {
  check_awq_layout(config, layer);
  const bool gemm = is_gemm_layout(config.version);
  const TensorView& qweight = require_part(parts, layer, "qweight", "AWQ packed weight");
  const TensorView& qzeros_t = require_part(parts, layer, "qzeros", "AWQ zero points");
  const TensorView& scales_t = require_part(parts, layer, "scales", "AWQ scales");
  const TensorView* bias_t = find_part(parts, "bias");
  expect_dtype(qweight, {DType::I32, DType::U32});
  if (qweight.shape.size() != 2 || scales_t.shape.size() != 2)
    throw invalid_input(qweight.name + ": AWQ qweight and scales must have 2 dimensions, got " +
                        shape_str(qweight.shape) + " and " + shape_str(scales_t.shape));
  int64_t n, k;
  if (gemm) {
    n = scales_t.shape[1];
    k = qweight.shape[0];
  } else {
    n = qweight.shape[0];
    k = qweight.shape[1] * 8;
  }
  if (in_features > 0 && in_features != k)
    throw invalid_input(qweight.name + ": shape " + shape_str(qweight.shape) + " implies in_features " +
                        std::to_string(k) + " but the model config says " + std::to_string(in_features));
  if (n <= 0 || k <= 0) throw invalid_input(layer + ": empty AWQ layer");
  config.check_layer(k, layer);
  const int64_t gs = config.group_size <= 0 ? k : config.group_size;
  const int64_t groups = k / gs;
  const std::string dims = "AWQ " + config.version + ", in_features=" + std::to_string(k) +
                           ", out_features=" + std::to_string(n) + ", group_size=" + std::to_string(config.group_size);

  QuantizedWeight w;
  w.spec.name = layer;
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.bits = 4;
  w.spec.group_size = config.group_size <= 0 ? -1 : config.group_size;
  w.spec.zero_kind = ZeroKind::Integer;
  w.spec.source_format = gemm ? "awq_gemm" : "awq_gemv";
  w.codes.resize(static_cast<size_t>(n * k));
  w.scales.resize(static_cast<size_t>(n * groups));
  w.zeros.resize(static_cast<size_t>(n * groups));

  if (gemm) {
    if (n % 8 != 0) throw invalid_input(scales_t.name + ": out_features " + std::to_string(n) + " is not a multiple of 8 (AWQ GEMM)");
    expect_shape(qweight, {k, n / 8}, dims);
    expect_shape(qzeros_t, {groups, n / 8}, dims);
    expect_shape(scales_t, {groups, n}, dims);
    const uint8_t* qw = u32_tensor_bytes(qweight).data();   // read where it is mapped
    const std::vector<uint32_t> qz = read_u32_tensor(qzeros_t);
    const std::vector<float> sc = read_float_tensor(scales_t);
    // A transpose ([K][N/8] words to [N][K] codes) in 64 x 64 tiles: each column's 64 codes are
    // written together instead of one byte per column per K row (a 7B layer has 45 M codes).
    constexpr int64_t kTile = 64;
    for (int64_t c0 = 0; c0 < n; c0 += kTile)
      for (int64_t r0 = 0; r0 < k; r0 += kTile)
        for (int64_t c = c0; c < std::min(n, c0 + kTile); ++c) {
          const int shift = 4 * kReverse[c % 8];
          uint8_t* out = w.codes.data() + c * k;
          for (int64_t r = r0; r < std::min(k, r0 + kTile); ++r)
            out[r] = static_cast<uint8_t>((load_u32(qw + 4 * static_cast<size_t>(r * (n / 8) + c / 8)) >> shift) & 15u);
        }
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t c = 0; c < n; ++c) {
        w.zeros[c * groups + g] = static_cast<float>((qz[g * (n / 8) + c / 8] >> (4 * kReverse[c % 8])) & 15u);
        w.scales[c * groups + g] = sc[g * n + c];
      }
  } else {
    const int64_t zw = awq_gemv_zeros_width(k, gs);
    expect_shape(qweight, {n, k / 8}, dims);
    expect_shape(qzeros_t, {n, zw}, dims);
    expect_shape(scales_t, {n, 8 * zw}, dims);
    const uint8_t* qw = u32_tensor_bytes(qweight).data();   // read where it is mapped
    const std::vector<uint32_t> qz = read_u32_tensor(qzeros_t);
    const std::vector<float> sc = read_float_tensor(scales_t);
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t r = 0; r < k; ++r)
        w.codes[c * k + r] =
            static_cast<uint8_t>((load_u32(qw + 4 * static_cast<size_t>(c * (k / 8) + r / 8)) >> (4 * (r % 8))) & 15u);
      for (int64_t g = 0; g < groups; ++g) {
        w.zeros[c * groups + g] = static_cast<float>((qz[c * zw + g / 8] >> (4 * (g % 8))) & 15u);
        w.scales[c * groups + g] = sc[c * 8 * zw + g];
      }
    }
  }
  if (bias_t) {
    expect_shape(*bias_t, {n}, "bias of out_features");
    w.bias = read_float_tensor(*bias_t);
    w.spec.has_bias = true;
  }
  w.validate();
  return w;
}

std::vector<EncodedTensor> encode_awq(const QuantizedWeight& w, const std::string& version, DType scale_dtype) {
  const auto& s = w.spec;
  if (s.encoding != WeightEncoding::IntAffine || s.bits != 4)
    throw unsupported(s.name + ": AWQ encodes 4-bit integer weights only (got " + s.describe() + ")");
  if (s.zero_kind == ZeroKind::Float) throw unsupported(s.name + ": AWQ cannot store float zero points");
  if (!w.g_idx.empty()) throw unsupported(s.name + ": AWQ has no act-order (g_idx); use GPTQ");
  const int64_t n = s.out_features, k = s.in_features;
  const int64_t gs = s.effective_group_size();
  if (k % gs != 0)
    throw invalid_input(s.name + ": group_size " + std::to_string(gs) + " does not divide in_features " + std::to_string(k));
  w.validate();
  const int64_t groups = k / gs;
  auto zero_of = [&](int64_t c, int64_t g) -> uint32_t {
    if (s.zero_kind == ZeroKind::Symmetric) return 8u;
    const float z = w.zeros[c * groups + g];
    if (z < 0 || z > 15 || z != static_cast<float>(static_cast<int>(z)))
      throw invalid_input(s.name + ": zero point " + std::to_string(z) + " is not an integer in [0, 15]");
    return static_cast<uint32_t>(z);
  };
  std::vector<EncodedTensor> out;
  if (is_gemm_layout(version)) {
    if (n % 8 != 0) throw invalid_input(s.name + ": out_features " + std::to_string(n) + " is not a multiple of 8 (AWQ GEMM)");
    std::vector<uint32_t> qw(static_cast<size_t>(k * n / 8), 0), qz(static_cast<size_t>(groups * n / 8), 0);
    std::vector<float> sc(static_cast<size_t>(groups * n));
    for (int64_t r = 0; r < k; ++r)
      for (int64_t c = 0; c < n; ++c)
        qw[r * (n / 8) + c / 8] |= static_cast<uint32_t>(w.codes[c * k + r]) << (4 * kReverse[c % 8]);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t c = 0; c < n; ++c) {
        qz[g * (n / 8) + c / 8] |= zero_of(c, g) << (4 * kReverse[c % 8]);
        sc[g * n + c] = w.scales[c * groups + g];
      }
    out.push_back(make_u32_tensor("qweight", {k, n / 8}, qw));
    out.push_back(make_u32_tensor("qzeros", {groups, n / 8}, qz));
    out.push_back(make_float_tensor("scales", scale_dtype, {groups, n}, sc));
  } else if (version == "gemv") {
    if (k % 8 != 0) throw invalid_input(s.name + ": in_features is not a multiple of 8 (AWQ GEMV)");
    const int64_t zw = awq_gemv_zeros_width(k, gs);
    std::vector<uint32_t> qw(static_cast<size_t>(n * k / 8), 0), qz(static_cast<size_t>(n * zw), 0);
    std::vector<float> sc(static_cast<size_t>(n * 8 * zw), 0.0f);
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t r = 0; r < k; ++r)
        qw[c * (k / 8) + r / 8] |= static_cast<uint32_t>(w.codes[c * k + r]) << (4 * (r % 8));
      for (int64_t g = 0; g < groups; ++g) {
        qz[c * zw + g / 8] |= zero_of(c, g) << (4 * (g % 8));
        sc[c * 8 * zw + g] = w.scales[c * groups + g];
      }
    }
    out.push_back(make_u32_tensor("qweight", {n, k / 8}, qw));
    out.push_back(make_u32_tensor("qzeros", {n, zw}, qz));
    out.push_back(make_float_tensor("scales", scale_dtype, {n, 8 * zw}, sc));
  } else {
    throw unsupported(s.name + ": cannot encode AWQ version '" + version + "' (gemm or gemv)");
  }
  if (!w.bias.empty()) out.push_back(make_float_tensor("bias", scale_dtype, {n}, w.bias));
  return out;
}

}  // namespace qrt::quant
