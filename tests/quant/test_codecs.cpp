// Codecs: hand-computed tiny cases, encode/decode round trips for every format and bit width,
// and the rejection of bad tensors (wrong shapes, NaN scales, g_idx out of range).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qrt/dtype.h"
#include "qrt/error.h"
#include "quant/formats/codecs.h"
#include "quant/rtn.h"

using namespace qrt;
using namespace qrt::quant;

namespace {

EncodedTensor i32(const std::string& suffix, std::vector<int64_t> shape, std::vector<uint32_t> v) {
  return make_u32_tensor(suffix, std::move(shape), v);
}

// fp16-exact random scale so that round trips through F16 are exact.
float f16_exact(float v) { return fp16_to_f32(f32_to_fp16(v)); }

QuantizedWeight random_int_weight(int bits, int64_t n, int64_t k, int group_size, ZeroKind zk, bool act_order,
                                  uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedWeight w;
  w.spec.name = "layer";
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.bits = bits;
  w.spec.group_size = group_size;
  w.spec.zero_kind = zk;
  const int64_t groups = w.spec.num_groups();
  const int64_t gs = w.spec.effective_group_size();
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  std::uniform_real_distribution<float> sc(0.001f, 0.1f);
  w.codes.resize(n * k);
  for (auto& c : w.codes) c = static_cast<uint8_t>(code(rng));
  w.scales.resize(n * groups);
  for (auto& s : w.scales) s = f16_exact(sc(rng));
  if (zk == ZeroKind::Integer) {
    w.zeros.resize(n * groups);
    for (auto& z : w.zeros) z = static_cast<float>(code(rng));
  }
  if (act_order) {
    std::vector<int32_t> perm(k);
    for (int64_t i = 0; i < k; ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    w.g_idx.resize(k);
    for (int64_t i = 0; i < k; ++i) w.g_idx[perm[i]] = static_cast<int32_t>(i / gs);
    w.spec.act_order = true;
  }
  return w;
}

void expect_same(const QuantizedWeight& a, const QuantizedWeight& b) {
  EXPECT_EQ(a.K(), b.K());
  EXPECT_EQ(a.N(), b.N());
  EXPECT_EQ(a.spec.bits, b.spec.bits);
  EXPECT_EQ(a.spec.zero_kind, b.spec.zero_kind);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.zeros, b.zeros);
  EXPECT_EQ(a.g_idx, b.g_idx);
  EXPECT_EQ(dequantize_reference(a), dequantize_reference(b));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const qrt::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

// ---------------------------------------------------------------- hand-computed cases

TEST(GptqCodec, HandComputed4BitSymmetricV1) {
  // K = 8, N = 8: column 0 holds codes 0..7 in one word (field i = row i); other columns code 8.
  std::vector<uint32_t> qweight(8, 0x88888888u);
  qweight[0] = 0x76543210u;
  std::vector<EncodedTensor> t = {i32("qweight", {1, 8}, qweight), i32("qzeros", {1, 1}, {0x77777777u}),
                                  make_float_tensor("scales", DType::F16, {1, 8}, std::vector<float>(8, 0.5f))};
  GptqConfig cfg;
  cfg.bits = 4;
  cfg.group_size = -1;
  std::vector<std::string> warnings;
  QuantizedWeight w = decode_gptq("m", parts_of(t, "m"), cfg, 8, &warnings);
  EXPECT_TRUE(warnings.empty());
  const auto d = dequantize_reference(w);
  for (int k = 0; k < 8; ++k) EXPECT_FLOAT_EQ(d[0 * 8 + k], (k - 8) * 0.5f) << k;
  for (int k = 0; k < 8; ++k) EXPECT_FLOAT_EQ(d[3 * 8 + k], 0.0f);
}

TEST(GptqCodec, HandComputed4BitAsymmetricV1AndV2) {
  // Stored zero field 2 -> z = 3 in v1, z = 2 in v2. Code 5 * scale 0.25.
  std::vector<EncodedTensor> t = {i32("qweight", {1, 8}, std::vector<uint32_t>(8, 0x55555555u)),
                                  i32("qzeros", {1, 1}, {0x22222222u}),
                                  make_float_tensor("scales", DType::F32, {1, 8}, std::vector<float>(8, 0.25f))};
  GptqConfig cfg;
  cfg.bits = 4;
  cfg.group_size = -1;
  cfg.sym = false;
  auto d1 = dequantize_reference(decode_gptq("m", parts_of(t, "m"), cfg, 8));
  EXPECT_FLOAT_EQ(d1[0], (5 - 3) * 0.25f);
  cfg.checkpoint_format = "gptq_v2";
  auto d2 = dequantize_reference(decode_gptq("m", parts_of(t, "m"), cfg, 8));
  EXPECT_FLOAT_EQ(d2[0], (5 - 2) * 0.25f);
}

TEST(GptqCodec, SymmetricV1ZeroConstantsMatchFormatsDoc) {
  // docs/CHECKPOINTS.md, GPTQ: symmetric v1 files hold these constant qzeros words.
  const std::map<int, std::vector<uint32_t>> expected = {
      {2, {0x55555555u}}, {4, {0x77777777u}}, {8, {0x7F7F7F7Fu}}, {3, {0xDB6DB6DBu, 0xB6DB6DB6u, 0x6DB6DB6Du}}};
  for (auto& [bits, words] : expected) {
    QuantizedWeight w = random_int_weight(bits, 32, 64, 32, ZeroKind::Symmetric, false, 7);
    auto enc = encode_gptq(w, false);
    auto parts = parts_of(enc, "m");
    auto qz = read_u32_tensor(parts.at("qzeros"));
    ASSERT_EQ(parts.at("qzeros").shape, (std::vector<int64_t>{2, 32 * bits / 32}));
    for (size_t i = 0; i < qz.size(); ++i) EXPECT_EQ(qz[i], words[i % words.size()]) << "bits " << bits << " word " << i;
  }
}

TEST(GptqCodec, ThreeBitContinuousLayout) {
  // Column 0 holds value j = j % 8 for rows 0..31: stream bit 3j. Check the boundary values of the
  // three words (docs/CHECKPOINTS.md, GPTQ packing): value 10 straddles words 0/1, value 21 words 1/2.
  std::vector<uint32_t> words(3, 0);
  for (int j = 0; j < 32; ++j) stream_put(words.data(), 1, j, 3, j % 8);
  // value 10 = 2 (0b010): bits 0-1 (0b10) at word0 bits 30-31, bit 2 (0) at word1 bit 0.
  EXPECT_EQ(words[0] >> 30, 2u);
  EXPECT_EQ(words[1] & 1u, 0u);
  // value 11 = 3 at word1 bits 1..3.
  EXPECT_EQ((words[1] >> 1) & 7u, 3u);
  // value 21 = 5 (0b101): bit 0 at word1 bit 31, bits 1-2 (0b10) at word2 bits 0-1.
  EXPECT_EQ(words[1] >> 31, 1u);
  EXPECT_EQ(words[2] & 3u, 2u);
  // value 22 = 6 at word2 bits 2..4; value 31 = 7 at bits 29..31.
  EXPECT_EQ((words[2] >> 2) & 7u, 6u);
  EXPECT_EQ(words[2] >> 29, 7u);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(stream_get(words.data(), 1, j, 3), static_cast<uint32_t>(j % 8));
}

TEST(AwqCodec, HandComputedInterleavedNibbles) {
  // One word 0x76543210: nibble i holds column kOrder[i] = 0,2,4,6,1,3,5,7 -> columns get
  // values 0,4,1,5,2,6,3,7. Zeros all 0, scale 1.
  std::vector<EncodedTensor> t = {i32("qweight", {1, 1}, {0x76543210u}), i32("qzeros", {1, 1}, {0u}),
                                  make_float_tensor("scales", DType::F16, {1, 8}, std::vector<float>(8, 1.0f))};
  AwqConfig cfg;
  cfg.group_size = -1;
  QuantizedWeight w = decode_awq("m", parts_of(t, "m"), cfg, 1);
  const std::vector<float> expected = {0, 4, 1, 5, 2, 6, 3, 7};
  auto d = dequantize_reference(w);   // [N=8][K=1]
  for (int n = 0; n < 8; ++n) EXPECT_FLOAT_EQ(d[n], expected[n]) << n;
}

TEST(Fp8Codec, HandComputedBlockAndPerTensor) {
  // e4m3 0x38 = 1.0, 0x40 = 2.0, 0xC0 = -2.0, 0x01 = 2^-9.
  EncodedTensor weight{"weight", DType::F8_E4M3, {2, 2}, {0x38, 0x40, 0xC0, 0x01}};
  std::vector<EncodedTensor> t = {weight, make_float_tensor("weight_scale", DType::F32, {1}, {0.5f})};
  Fp8Config cfg;
  auto d = dequantize_reference(decode_fp8("m", parts_of(t, "m"), cfg));
  EXPECT_FLOAT_EQ(d[0], 0.5f);
  EXPECT_FLOAT_EQ(d[1], 1.0f);
  EXPECT_FLOAT_EQ(d[2], -1.0f);
  EXPECT_FLOAT_EQ(d[3], 0.5f / 512.0f);
  // Block 1x1 grid: each element its own scale.
  cfg.weight_block_size = std::make_pair(1, 1);
  t[1] = make_float_tensor("weight_scale_inv", DType::F32, {2, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
  d = dequantize_reference(decode_fp8("m", parts_of(t, "m"), cfg));
  EXPECT_FLOAT_EQ(d[0], 1.0f);
  EXPECT_FLOAT_EQ(d[1], 4.0f);
  EXPECT_FLOAT_EQ(d[2], -6.0f);
  // Per-channel [N, 1].
  cfg.weight_block_size.reset();
  t[1] = make_float_tensor("weight_scale", DType::F32, {2, 1}, {1.0f, 10.0f});
  d = dequantize_reference(decode_fp8("m", parts_of(t, "m"), cfg));
  EXPECT_FLOAT_EQ(d[1], 2.0f);
  EXPECT_FLOAT_EQ(d[2], -20.0f);
}

TEST(Int8Codec, HandComputedRowScaled) {
  EncodedTensor weight{"weight", DType::I8, {2, 3}, {0x81, 0x00, 0x7F, 0x01, 0x02, 0xFF}};   // -127 0 127 / 1 2 -1
  std::vector<EncodedTensor> t = {weight, make_float_tensor("SCB", DType::F32, {2}, {254.0f, 127.0f}),
                                  EncodedTensor{"weight_format", DType::U8, {}, {0}}};
  auto d = dequantize_reference(decode_int8("m", parts_of(t, "m")));
  const std::vector<float> expected = {-254, 0, 254, 1, 2, -1};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(d[i], expected[i], 1e-4f) << i;
  t[2].data = {1};
  EXPECT_NE(error_of([&] { decode_int8("m", parts_of(t, "m")); }).find("m.weight_format"), std::string::npos);
}

// ---------------------------------------------------------------- round trips

struct GptqCase {
  int bits;
  int group;
  bool sym;
  bool act_order;
  bool v2;
};

class GptqRoundTrip : public ::testing::TestWithParam<GptqCase> {};

TEST_P(GptqRoundTrip, EncodeDecodeIsIdentity) {
  const GptqCase c = GetParam();
  const int64_t n = 64, k = 128;
  QuantizedWeight w = random_int_weight(c.bits, n, k, c.group, c.sym ? ZeroKind::Symmetric : ZeroKind::Integer,
                                        c.act_order, 1000 + c.bits * 10 + c.group);
  if (!c.sym) w.zeros[0] = 0.0f;                                   // the v1 borrow case
  if (!c.sym) w.zeros[1] = static_cast<float>((1 << c.bits) - 1);  // and the carry case
  w.bias.assign(n, 0.125f);
  w.spec.has_bias = true;
  auto enc = encode_gptq(w, c.v2);
  GptqConfig cfg;
  cfg.bits = c.bits;
  cfg.group_size = c.group;
  cfg.sym = c.sym;
  cfg.desc_act = c.act_order;
  cfg.checkpoint_format = c.v2 ? "gptq_v2" : "gptq";
  std::vector<std::string> warnings;
  QuantizedWeight back = decode_gptq("layer", parts_of(enc, "layer"), cfg, k, &warnings);
  EXPECT_TRUE(warnings.empty());
  expect_same(w, back);
  EXPECT_EQ(back.bias, w.bias);
  EXPECT_EQ(back.spec.act_order, c.act_order);
}

INSTANTIATE_TEST_SUITE_P(AllBits, GptqRoundTrip,
                         ::testing::Values(GptqCase{2, 32, true, false, false}, GptqCase{2, 64, false, false, false},
                                           GptqCase{3, 32, true, true, false}, GptqCase{3, 64, false, false, false},
                                           GptqCase{3, -1, false, false, true}, GptqCase{4, 128, true, false, false},
                                           GptqCase{4, 32, false, true, false}, GptqCase{4, 64, false, false, true},
                                           GptqCase{4, -1, true, false, true}, GptqCase{8, 32, true, true, true},
                                           GptqCase{8, 64, false, false, false}, GptqCase{8, 16, false, true, true}));

TEST(AwqRoundTrip, GemmAndGemv) {
  for (const char* version : {"gemm", "gemv"}) {
    for (int group : {32, 64, 128}) {
      QuantizedWeight w = random_int_weight(4, 48, 256, group, ZeroKind::Integer, false, 77 + group);
      auto enc = encode_awq(w, version);
      AwqConfig cfg;
      cfg.group_size = group;
      cfg.version = version;
      QuantizedWeight back = decode_awq("layer", parts_of(enc, "layer"), cfg, 256);
      expect_same(w, back);
    }
  }
}

TEST(Fp8RoundTrip, AllScaleKinds) {
  const int64_t n = 200, k = 130;   // partial edge blocks with 128 x 128
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> wf(n * k);
  for (auto& v : wf) v = nd(rng);
  struct Kind { int bn, bk; const char* scale_name; std::vector<int64_t> scale_shape; };
  for (const Kind& kind : {Kind{int(n), int(k), "weight_scale", {1}}, Kind{1, int(k), "weight_scale", {n, 1}},
                           Kind{128, 128, "weight_scale_inv", {2, 2}}}) {
    QuantizedWeight w = fp8_quantize("layer", wf.data(), n, k, kind.bn, kind.bk);
    auto enc = encode_fp8(w);
    ASSERT_EQ(enc[1].suffix, kind.scale_name);
    EXPECT_EQ(enc[1].shape, kind.scale_shape);
    Fp8Config cfg;
    if (kind.bn == 128) cfg.weight_block_size = std::make_pair(128, 128);
    QuantizedWeight back = decode_fp8("layer", parts_of(enc, "layer"), cfg, k);
    expect_same(w, back);
    // fp8 keeps 3 mantissa bits: relative error <= 2^-4 of the block max, plus subnormal slack.
    auto d = dequantize_reference(back);
    for (int64_t i = 0; i < n * k; ++i) ASSERT_NEAR(d[i], wf[i], 0.0625f * 0.2f + 1e-3f) << i;
  }
}

TEST(Int8RoundTrip, RowScaled) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 16, k = 40;
  std::vector<float> wf(n * k);
  for (auto& v : wf) v = nd(rng);
  QuantizedWeight w = rtn_quantize("layer", wf.data(), n, k, 8, -1, true);
  for (auto& c : w.codes) c = std::max<uint8_t>(c, 1);   // LLM.int8 range is [-127, 127]
  auto enc = encode_int8(w);
  QuantizedWeight back = decode_int8("layer", parts_of(enc, "layer"), k);
  EXPECT_EQ(back.codes, w.codes);
  auto a = dequantize_reference(w), b = dequantize_reference(back);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5f * std::fabs(a[i]) + 1e-7f);
}

TEST(Rtn, ErrorBoundedByHalfStep) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 8, k = 96;
  std::vector<float> wf(n * k);
  for (auto& v : wf) v = nd(rng);
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {true, false})
      for (RtnStyle style : {RtnStyle::Gptq, RtnStyle::Awq}) {
        QuantizedWeight q = rtn_quantize("l", wf.data(), n, k, bits, 32, sym, style);
        q.validate();
        auto d = dequantize_reference(q);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < k; ++c) {
            const float step = q.scales[r * 3 + c / 32];
            // Symmetric grids are asymmetric by one step at the top (2^(b-1) - 1 positive codes).
            const float bound = sym ? step * 1.0001f : step * 0.5001f;
            ASSERT_LE(std::fabs(d[r * k + c] - wf[r * k + c]), bound) << bits << sym << r << "," << c;
          }
      }
}

// ---------------------------------------------------------------- rejections

TEST(CodecErrors, QweightShapeInconsistentWithConfigNamesTensor) {
  QuantizedWeight w = random_int_weight(4, 64, 128, 64, ZeroKind::Symmetric, false, 3);
  auto enc = encode_gptq(w, false);
  GptqConfig cfg;
  cfg.bits = 8;   // config says 8 bits but the tensors hold 4-bit packing
  cfg.group_size = 64;
  const std::string msg = error_of([&] { decode_gptq("model.layers.0.mlp.up_proj", parts_of(enc, "model.layers.0.mlp.up_proj"), cfg, 128); });
  EXPECT_NE(msg.find("model.layers.0.mlp.up_proj.qweight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not match the expected [32, 64]"), std::string::npos) << msg;
}

TEST(CodecErrors, NanScaleNamesTensor) {
  QuantizedWeight w = random_int_weight(4, 64, 128, 64, ZeroKind::Symmetric, false, 3);
  w.scales[5] = NAN;
  std::vector<EncodedTensor> enc;
  EXPECT_THROW(encode_gptq(w, false), qrt::Error);   // validate() refuses it too
  w.scales[5] = 1.0f;
  enc = encode_gptq(w, false);
  for (auto& t : enc)
    if (t.suffix == "scales") {
      const uint16_t nan16 = 0x7E00;
      std::memcpy(t.data.data() + 2 * 3, &nan16, 2);
    }
  GptqConfig cfg;
  cfg.group_size = 64;
  const std::string msg = error_of([&] { decode_gptq("m", parts_of(enc, "m"), cfg, 128); });
  EXPECT_NE(msg.find("m.scales"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
  // Inf in FP8 scales.
  EncodedTensor weight{"weight", DType::F8_E4M3, {1, 1}, {0x38}};
  std::vector<EncodedTensor> f = {weight, make_float_tensor("weight_scale", DType::F32, {1}, {INFINITY})};
  const std::string m2 = error_of([&] { decode_fp8("x", parts_of(f, "x"), Fp8Config{}); });
  EXPECT_NE(m2.find("x.weight_scale"), std::string::npos) << m2;
  EXPECT_NE(m2.find("Inf"), std::string::npos) << m2;
}

TEST(CodecErrors, GIdxOutOfRangeAndOvercrowdedGroups) {
  QuantizedWeight w = random_int_weight(4, 64, 128, 64, ZeroKind::Symmetric, true, 3);
  auto enc = encode_gptq(w, false);
  GptqConfig cfg;
  cfg.group_size = 64;
  cfg.desc_act = true;
  for (auto& t : enc)
    if (t.suffix == "g_idx") {
      const int32_t bad = 2;
      std::memcpy(t.data.data() + 4 * 7, &bad, 4);
    }
  std::string msg = error_of([&] { decode_gptq("m", parts_of(enc, "m"), cfg, 128); });
  EXPECT_NE(msg.find("m.g_idx: g_idx[7] = 2 is outside [0, 2)"), std::string::npos) << msg;
  for (auto& t : enc)
    if (t.suffix == "g_idx") std::fill(t.data.begin(), t.data.end(), 0);   // all 128 columns in group 0
  msg = error_of([&] { decode_gptq("m", parts_of(enc, "m"), cfg, 128); });
  EXPECT_NE(msg.find("more than group_size 64"), std::string::npos) << msg;
}

TEST(CodecErrors, MissingTensorsAndWrongInFeatures) {
  QuantizedWeight w = random_int_weight(4, 64, 128, 64, ZeroKind::Integer, false, 3);
  auto enc = encode_gptq(w, false);
  auto parts = parts_of(enc, "m");
  parts.erase("qzeros");
  GptqConfig cfg;
  cfg.group_size = 64;
  cfg.sym = false;
  EXPECT_NE(error_of([&] { decode_gptq("m", parts, cfg, 128); }).find("missing tensor m.qzeros"), std::string::npos);
  parts = parts_of(enc, "m");
  std::string msg = error_of([&] { decode_gptq("m", parts, cfg, 256); });
  EXPECT_NE(msg.find("m.g_idx: length 128 does not match in_features 256"), std::string::npos) << msg;
  cfg.group_size = 48;   // does not divide 128
  msg = error_of([&] { decode_gptq("m", parts, cfg, 128); });
  EXPECT_NE(msg.find("group_size 48 does not divide in_features 128"), std::string::npos) << msg;
}

TEST(CodecErrors, AwqRejectsWrongBitsAndShapes) {
  QuantizedWeight w = random_int_weight(4, 16, 64, 32, ZeroKind::Integer, false, 3);
  auto enc = encode_awq(w);
  AwqConfig cfg;
  cfg.group_size = 32;
  cfg.bits = 8;
  EXPECT_NE(error_of([&] { decode_awq("m", parts_of(enc, "m"), cfg); }).find("AWQ bits 8"), std::string::npos);
  cfg.bits = 4;
  cfg.group_size = 16;   // qzeros would need 4 groups
  const std::string msg = error_of([&] { decode_awq("m", parts_of(enc, "m"), cfg); });
  EXPECT_NE(msg.find("m.qzeros: shape [2, 2] does not match the expected [4, 2]"), std::string::npos) << msg;
}

TEST(CodecErrors, Fp8NanCodeAndBadGrid) {
  EncodedTensor weight{"weight", DType::F8_E4M3, {1, 2}, {0x38, 0x7F}};
  std::vector<EncodedTensor> t = {weight, make_float_tensor("weight_scale", DType::F32, {1}, {1.0f})};
  EXPECT_NE(error_of([&] { decode_fp8("m", parts_of(t, "m"), Fp8Config{}); }).find("m.weight: element 1 is an e4m3 NaN"),
            std::string::npos);
  t[0].data[1] = 0x38;
  t[1] = make_float_tensor("weight_scale_inv", DType::F32, {3, 3}, std::vector<float>(9, 1.0f));
  Fp8Config cfg;
  cfg.weight_block_size = std::make_pair(128, 128);
  const std::string msg = error_of([&] { decode_fp8("m", parts_of(t, "m"), cfg); });
  EXPECT_NE(msg.find("m.weight_scale_inv: shape [3, 3] does not match the expected [1, 1]"), std::string::npos) << msg;
}
