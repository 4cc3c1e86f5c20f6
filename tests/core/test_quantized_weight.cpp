// Canonical weight invariants and the reference dequantizer on hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "qrt/error.h"
#include "qrt/quantized_weight.h"

using namespace qrt;

static QuantizedWeight tiny(ZeroKind z) {
  QuantizedWeight w;
  w.spec.name = "layer";
  w.spec.in_features = 4;
  w.spec.out_features = 2;
  w.spec.bits = 4;
  w.spec.group_size = 2;
  w.spec.zero_kind = z;
  w.codes = {0, 8, 15, 1, 7, 9, 3, 4};
  w.scales = {0.5f, 2.0f, 1.0f, 0.25f};
  if (z != ZeroKind::Symmetric) w.zeros = {8, 1, 7, 2};
  return w;
}

TEST(QuantizedWeight, DequantSymmetric) {
  auto w = tiny(ZeroKind::Symmetric);
  w.validate();
  auto d = dequantize_reference(w);
  EXPECT_FLOAT_EQ(d[0], (0 - 8) * 0.5f);
  EXPECT_FLOAT_EQ(d[2], (15 - 8) * 2.0f);
  EXPECT_FLOAT_EQ(d[7], (4 - 8) * 0.25f);
}

TEST(QuantizedWeight, DequantIntegerAndFloatZero) {
  auto w = tiny(ZeroKind::Integer);
  auto d = dequantize_reference(w);
  EXPECT_FLOAT_EQ(d[3], (1 - 1) * 2.0f);
  EXPECT_FLOAT_EQ(d[4], (7 - 7) * 1.0f);
  auto f = tiny(ZeroKind::Float);
  auto e = dequantize_reference(f);
  EXPECT_FLOAT_EQ(e[2], 15 * 2.0f + 1.0f);
}

TEST(QuantizedWeight, ActOrderUsesGIdx) {
  auto w = tiny(ZeroKind::Symmetric);
  w.g_idx = {1, 0, 1, 0};
  w.spec.act_order = true;
  w.validate();
  auto d = dequantize_reference(w);
  EXPECT_FLOAT_EQ(d[0], (0 - 8) * 2.0f);
  EXPECT_FLOAT_EQ(d[1], (8 - 8) * 0.5f);
}

TEST(QuantizedWeight, ValidateRejectsBadValues) {
  auto w = tiny(ZeroKind::Symmetric);
  w.scales[1] = std::nanf("");
  EXPECT_THROW(w.validate(), Error);
  w = tiny(ZeroKind::Symmetric);
  w.codes[3] = 16;
  EXPECT_THROW(w.validate(), Error);
  w = tiny(ZeroKind::Symmetric);
  w.g_idx = {0, 0, 0, 5};
  EXPECT_THROW(w.validate(), Error);
  try {
    w.validate();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer"), std::string::npos);
  }
}

TEST(QuantizedWeight, CodebookLooksCodesUpAndChecksItsGrid) {
  auto w = tiny(ZeroKind::Symmetric);
  w.spec.encoding = WeightEncoding::Codebook;
  w.spec.codebook.resize(16);
  for (int i = 0; i < 16; ++i) w.spec.codebook[i] = static_cast<float>(i * i) - 100.0f;
  w.validate();
  auto d = dequantize_reference(w);
  EXPECT_EQ(d[2], (225.0f - 100.0f) * 2.0f);  // code 15, group 1 of row 0
  EXPECT_EQ(d[7], (16.0f - 100.0f) * 0.25f);  // code 4, group 1 of row 1
  EXPECT_TRUE(w.spec.codebook_is_int8());  // levels -100 .. 125, all integers
  EXPECT_EQ(w.spec.describe(), "4-bit g2 codebook");
  auto bad = w;
  bad.spec.codebook.pop_back();
  EXPECT_THROW(bad.validate(), Error);
  bad = w;
  bad.spec.codebook[3] = INFINITY;
  EXPECT_THROW(bad.validate(), Error);
  bad = w;
  bad.spec.zero_kind = ZeroKind::Float;
  bad.zeros = {0, 0, 0, 0};
  EXPECT_THROW(bad.validate(), Error);
  bad = tiny(ZeroKind::Symmetric);
  bad.spec.codebook = w.spec.codebook;  // a grid on an integer weight is a mistake, not ignored
  EXPECT_THROW(bad.validate(), Error);
}

TEST(QuantizedWeight, Int8CodebookIsRecognised) {
  LayerSpec s;
  s.encoding = WeightEncoding::Codebook;
  s.bits = 4;
  s.codebook = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  EXPECT_TRUE(s.codebook_is_int8());
  s.codebook[0] = -128.5f;
  EXPECT_FALSE(s.codebook_is_int8());
  s.codebook[0] = 0.25f;  // NF4-like fractions
  EXPECT_FALSE(s.codebook_is_int8());
}
