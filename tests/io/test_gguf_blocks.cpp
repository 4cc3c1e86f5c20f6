// GGUF block codecs: hand-computed blocks, the values llama.cpp's own Python package (`gguf`)
// dequantizes committed blocks to (tests/data/fixtures/gguf_blocks.gguf, tools/make_gguf_fixtures.py),
// and dequantize_reference(canonical) == direct block dequantization on random blocks of every type.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>

#include "qrt/dtype.h"
#include "qrt/error.h"
#include "quant/formats/gguf_blocks.h"

using qrt::GgmlType;

namespace {

void put_f16(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = qrt::f32_to_fp16(v);
  b[at] = static_cast<uint8_t>(h);
  b[at + 1] = static_cast<uint8_t>(h >> 8);
}

std::vector<float> direct(GgmlType t, const std::vector<uint8_t>& b, size_t n) {
  std::vector<float> y(n);
  qrt::quant::gguf_dequantize(t, b, y);
  return y;
}

// Random blocks with finite fp16 scales at the fp16 fields of each type.
std::vector<uint8_t> random_blocks(GgmlType t, int64_t nblocks, std::mt19937& rng) {
  const int64_t ts = qrt::ggml_type_size(t);
  std::vector<uint8_t> b(static_cast<size_t>(nblocks * ts));
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  for (int64_t k = 0; k < nblocks; ++k) {
    const size_t o = static_cast<size_t>(k * ts);
    switch (t) {
      case GgmlType::Q4_0:
      case GgmlType::Q5_0:
      case GgmlType::Q8_0:
      case GgmlType::IQ4_NL:
      case GgmlType::IQ4_XS: put_f16(b, o, dist(rng)); break;
      case GgmlType::Q4_1:
      case GgmlType::Q5_1:
      case GgmlType::Q4_K:
      case GgmlType::Q5_K:
        put_f16(b, o, dist(rng));
        put_f16(b, o + 2, dist(rng));
        break;
      case GgmlType::Q2_K:
        put_f16(b, o + 80, dist(rng));
        put_f16(b, o + 82, dist(rng));
        break;
      case GgmlType::Q3_K: put_f16(b, o + 108, dist(rng)); break;
      case GgmlType::Q6_K: put_f16(b, o + 208, dist(rng)); break;
      default: ADD_FAILURE() << "random_blocks: no fp16 fields known for " << qrt::ggml_type_name(t);
    }
  }
  return b;
}

const GgmlType kBlockTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                                GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

}  // namespace

TEST(GgufBlocks, EveryBlockTypeHasACanonicalForm) {
  for (GgmlType t : kBlockTypes) {
    EXPECT_TRUE(qrt::quant::gguf_has_canonical_form(t)) << qrt::ggml_type_name(t);
    qrt::LayerSpec s;
    ASSERT_TRUE(qrt::quant::gguf_canonical_spec(t, &s));
    EXPECT_NE(qrt::quant::gguf_supported_types().find(qrt::ggml_type_name(t)), std::string::npos);
  }
  qrt::LayerSpec s;
  EXPECT_FALSE(qrt::quant::gguf_canonical_spec(GgmlType::IQ2_XXS, &s));
  EXPECT_FALSE(qrt::quant::gguf_can_dequantize(GgmlType::IQ2_XXS));
}

// The committed fixture: every value the `gguf` package computes, reproduced bit for bit by the
// direct decoder and by the canonical weight (fp16 scales are decoded exactly; every product and
// difference is the same single float operation in the same order as its numpy code).
TEST(GgufBlocks, MatchesTheGgufPackageOnCommittedBlocks) {
  auto f = qrt::GgufFile::open(std::string(QRT_TEST_DATA) + "/fixtures/gguf_blocks.gguf");
  std::set<std::string> seen;
  for (const auto& info : f.tensors()) {
    if (!qrt::ggml_type_is_quantized(info.type)) continue;
    SCOPED_TRACE(info.name);
    seen.insert(qrt::ggml_type_name(info.type));
    const auto& ref_info = f.tensor(info.name + ".f32");
    const auto expected = qrt::quant::gguf_dequantize_tensor(f, ref_info);
    ASSERT_EQ(expected.size(), static_cast<size_t>(info.numel()));
    const auto direct_values = qrt::quant::gguf_dequantize_tensor(f, info);
    const auto w = qrt::quant::gguf_to_quantized_weight(f, info);
    const auto canonical = qrt::dequantize_reference(w);
    int mismatches = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      if ((direct_values[i] != expected[i] || canonical[i] != expected[i]) && mismatches++ < 3)
        ADD_FAILURE() << "element " << i << ": gguf " << expected[i] << ", direct " << direct_values[i]
                      << ", canonical " << canonical[i];
    }
    EXPECT_EQ(mismatches, 0);
  }
  for (GgmlType t : kBlockTypes) EXPECT_TRUE(seen.count(qrt::ggml_type_name(t))) << qrt::ggml_type_name(t);
}

TEST(GgufBlocks, HandComputedQ4_0Q4_1Q8_0) {
  std::vector<uint8_t> q40(18, 0x88);
  put_f16(q40, 0, 0.5f);
  q40[2] = 0x1F;
  auto y = direct(GgmlType::Q4_0, q40, 32);
  EXPECT_EQ(y[0], 3.5f);    // (15 - 8) * 0.5
  EXPECT_EQ(y[16], -3.5f);  // (1 - 8) * 0.5
  EXPECT_EQ(y[1], 0.0f);

  std::vector<uint8_t> q41(20, 0);
  put_f16(q41, 0, 0.25f);
  put_f16(q41, 2, -1.0f);
  q41[4 + 1] = 0xA3;
  y = direct(GgmlType::Q4_1, q41, 32);
  EXPECT_EQ(y[1], -0.25f);  // 3 * 0.25 - 1
  EXPECT_EQ(y[17], 1.5f);   // 10 * 0.25 - 1
  EXPECT_EQ(y[0], -1.0f);

  std::vector<uint8_t> q80(34, 0);
  put_f16(q80, 0, 2.0f);
  q80[2 + 5] = static_cast<uint8_t>(-7);
  q80[2 + 31] = 127;
  y = direct(GgmlType::Q8_0, q80, 32);
  EXPECT_EQ(y[5], -14.0f);
  EXPECT_EQ(y[31], 254.0f);
  auto w = qrt::quant::gguf_to_quantized_weight(GgmlType::Q8_0, q80, 32, 1, "q80");
  EXPECT_EQ(w.codes[5], 121);  // -7 + 128
  EXPECT_EQ(w.spec.bits, 8);
  EXPECT_EQ(w.spec.zero_kind, qrt::ZeroKind::Symmetric);
}

TEST(GgufBlocks, HandComputedQ4_K) {
  std::vector<uint8_t> b(144, 0);
  put_f16(b, 0, 1.0f);  // d
  put_f16(b, 2, 0.5f);  // dmin
  // Sub-block 5: sc = (scales[9] & 15) | (scales[1] >> 6) << 4 = 2 + 16; mn = (scales[9] >> 4) | (scales[5] >> 6) << 4
  // = 3 + 32
  b[4 + 9] = 0x32;
  b[4 + 1] = 0x40;
  b[4 + 5] = 0x80;
  b[16 + 64 + 3] = 0x70;  // chunk 2, high nibble 7 -> element 128 + 32 + 3
  auto y = direct(GgmlType::Q4_K, b, 256);
  EXPECT_EQ(y[163], 108.5f);  // 1 * 18 * 7 - 0.5 * 35
  EXPECT_EQ(y[160], -17.5f);  // q = 0
  EXPECT_EQ(y[131], 0.0f);    // sub-block 4: scale and min 0
  EXPECT_EQ(y[40], 0.0f);     // sub-block 1: scales[1] & 63 = 0, scales[5] & 63 = 0
  auto w = qrt::quant::gguf_to_quantized_weight(GgmlType::Q4_K, b, 256, 1, "q4k");
  EXPECT_EQ(w.spec.group_size, 32);
  EXPECT_EQ(w.spec.zero_kind, qrt::ZeroKind::Float);
  EXPECT_EQ(w.scales[5], 18.0f);
  EXPECT_EQ(w.zeros[5], -17.5f);
  EXPECT_EQ(w.codes[163], 7);
}

TEST(GgufBlocks, HandComputedQ6_K) {
  std::vector<uint8_t> b(210, 0);
  put_f16(b, 208, 0.5f);
  b[192 + 3] = static_cast<uint8_t>(-2);  // scale of elements 48..63
  b[50] = 0x05;                           // ql[l + 32] low nibble for l = 18
  b[128 + 18] = 0x0C;                     // qh[18] bits 2..3 = 3
  auto y = direct(GgmlType::Q6_K, b, 256);
  EXPECT_EQ(y[50], -21.0f);  // 0.5 * -2 * ((5 | 48) - 32)
  EXPECT_EQ(y[49], 32.0f);   // 0.5 * -2 * (0 - 32)
  EXPECT_EQ(y[0], 0.0f);
  auto w = qrt::quant::gguf_to_quantized_weight(GgmlType::Q6_K, b, 256, 1, "q6k");
  EXPECT_EQ(w.spec.bits, 6);
  EXPECT_EQ(w.spec.group_size, 16);
  EXPECT_EQ(w.codes[50], 53);
  EXPECT_EQ(w.scales[3], -1.0f);
}

TEST(GgufBlocks, CanonicalEqualsDirectOnRandomBlocks) {
  std::mt19937 rng(1234);
  for (GgmlType t : kBlockTypes) {
    const int64_t block = qrt::ggml_block_size(t);
    for (int64_t K : {block, 3 * block}) {
      const int64_t N = 5;
      auto bytes = random_blocks(t, N * K / block, rng);
      auto y = direct(t, bytes, static_cast<size_t>(N * K));
      auto w = qrt::quant::gguf_to_quantized_weight(t, bytes, K, N, "w");
      EXPECT_EQ(w.spec.source_format, "gguf:" + qrt::ggml_type_name(t));
      auto ref = qrt::dequantize_reference(w);
      ASSERT_EQ(ref.size(), y.size());
      int mismatches = 0;
      for (size_t i = 0; i < y.size(); ++i)
        if (ref[i] != y[i] && mismatches++ < 3)
          ADD_FAILURE() << qrt::ggml_type_name(t) << " K=" << K << " element " << i << ": " << ref[i] << " vs " << y[i];
      EXPECT_EQ(mismatches, 0);
    }
  }
}

TEST(GgufBlocks, FloatTypesAndErrors) {
  std::vector<uint8_t> f16(4);
  put_f16(f16, 0, 1.5f);
  put_f16(f16, 2, -0.25f);
  EXPECT_EQ(direct(GgmlType::F16, f16, 2), (std::vector<float>{1.5f, -0.25f}));
  std::vector<uint8_t> bf16 = {0x80, 0x3f, 0x00, 0xc0};
  EXPECT_EQ(direct(GgmlType::BF16, bf16, 2), (std::vector<float>{1.0f, -2.0f}));
  std::vector<uint8_t> f32(4);
  const float v = 3.25f;
  std::memcpy(f32.data(), &v, 4);
  EXPECT_EQ(direct(GgmlType::F32, f32, 1), (std::vector<float>{3.25f}));
  std::vector<float> out(32);
  EXPECT_THROW(qrt::quant::gguf_dequantize(GgmlType::Q4_0, std::vector<uint8_t>(17), out), qrt::Error);
  EXPECT_THROW(qrt::quant::gguf_dequantize(GgmlType::Q5_0, std::vector<uint8_t>(21), out), qrt::Error);
  EXPECT_THROW(qrt::quant::gguf_dequantize(GgmlType::IQ2_XXS, std::vector<uint8_t>(66), std::span<float>(out.data(), 0)),
               qrt::Error);
  EXPECT_THROW(qrt::quant::gguf_to_quantized_weight(GgmlType::F16, std::vector<uint8_t>(64), 32, 1, "x"), qrt::Error);
  EXPECT_THROW(qrt::quant::gguf_to_quantized_weight(GgmlType::Q4_0, std::vector<uint8_t>(18), 32, 2, "x"), qrt::Error);
  // A non-finite fp16 scale is refused by validate(), naming the tensor.
  std::vector<uint8_t> inf(18, 0);
  inf[0] = 0x00;
  inf[1] = 0x7c;
  try {
    qrt::quant::gguf_to_quantized_weight(GgmlType::Q4_0, inf, 32, 1, "blk.0.attn_q.weight");
    FAIL();
  } catch (const qrt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
  }
}

TEST(GgufBlocks, DefaultModelTensorMatchesCanonical) {
  const char* path = std::getenv("QRT_DEFAULT_MODEL");
  if (!path || !std::filesystem::exists(path))
    GTEST_SKIP() << "QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh and export its path)";
  auto f = qrt::GgufFile::open(path);
  const auto& info = f.tensor("blk.0.attn_q.weight");
  auto y = qrt::quant::gguf_dequantize_tensor(f, info);
  auto w = qrt::quant::gguf_to_quantized_weight(f, info);
  EXPECT_EQ(w.K(), 576);
  EXPECT_EQ(w.N(), 576);
  EXPECT_EQ(qrt::dequantize_reference(w), y);
  double sum_sq = 0;
  for (float x : y) sum_sq += static_cast<double>(x) * x;
  EXPECT_GT(sum_sq / y.size(), 1e-6);  // real weights, not zeros
  EXPECT_LT(sum_sq / y.size(), 1.0);
}
