// Float format conversions: exact round trips and known values.
#include <gtest/gtest.h>

#include <cmath>

#include "qrt/dtype.h"

using namespace qrt;

TEST(DType, NamesRoundTrip) {
  for (auto t : {DType::F16, DType::BF16, DType::F32, DType::I32, DType::U8, DType::F8_E4M3, DType::F8_E5M2}) {
    auto parsed = parse_dtype(dtype_name(t));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_FALSE(parse_dtype("F17").has_value());
  EXPECT_EQ(dtype_bits(DType::BF16), 16);
}

TEST(DType, Fp16EveryValueRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_fp16(f), h) << std::hex << h;
  }
  EXPECT_EQ(fp16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7C00);  // rounds to inf
  EXPECT_EQ(f32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie to even
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  for (uint32_t b = 0; b < 0x10000; b += 7) {
    const float f = bf16_to_f32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_bf16(f), b);
  }
}

TEST(DType, Fp8E4M3EveryValueRoundTrips) {
  for (int v = 0; v < 256; ++v) {
    const float f = fp8_e4m3_to_f32(static_cast<uint8_t>(v));
    if (std::isnan(f)) continue;
    if (v == 0x80) continue;  // -0 encodes back to -0 = 0x80; checked below
    EXPECT_EQ(f32_to_fp8_e4m3(f), v) << v;
  }
  EXPECT_EQ(fp8_e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(f32_to_fp8_e4m3(1000.0f), 0x7E);  // saturates
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0x7F)));
}

TEST(DType, Fp8E5M2EveryValueRoundTrips) {
  for (int v = 0; v < 256; ++v) {
    const float f = fp8_e5m2_to_f32(static_cast<uint8_t>(v));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_fp8_e5m2(f), v) << v;
  }
}
