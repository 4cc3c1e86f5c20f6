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
