// dtype names (safetensors spelling) and scalar conversions between float formats.
#include "qrt/dtype.h"

#include <array>
#include <cmath>

namespace qrt {

namespace {
struct DTypeRow {
  DType type;
  const char* name;
  int bits;
  bool is_float;
};
constexpr std::array<DTypeRow, 19> kDTypes = {{
    {DType::BOOL, "BOOL", 8, false},     {DType::U8, "U8", 8, false},
    {DType::I8, "I8", 8, false},         {DType::U16, "U16", 16, false},
    {DType::I16, "I16", 16, false},      {DType::U32, "U32", 32, false},
    {DType::I32, "I32", 32, false},      {DType::U64, "U64", 64, false},
    {DType::I64, "I64", 64, false},      {DType::F16, "F16", 16, true},
    {DType::BF16, "BF16", 16, true},     {DType::F32, "F32", 32, true},
    {DType::F64, "F64", 64, true},       {DType::F8_E4M3, "F8_E4M3", 8, true},
    {DType::F8_E5M2, "F8_E5M2", 8, true}, {DType::F8_E8M0, "F8_E8M0", 8, true},
    {DType::F4, "F4", 4, true},          {DType::F6_E2M3, "F6_E2M3", 6, true},
    {DType::F6_E3M2, "F6_E3M2", 6, true},
}};
}  // namespace

std::string_view dtype_name(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r.name;
  return "UNKNOWN";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& r : kDTypes)
    if (name == r.name) return r.type;
  return std::nullopt;
}

int dtype_bits(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r.bits;
  return 0;
}

bool dtype_is_float(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r.is_float;
  return false;
}

float fp16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3FF) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7FFFFFFF;
  if (abs > 0x7F800000) return sign | 0x7E00;                 // NaN
  if (abs >= 0x477FF000) return sign | 0x7C00;                // overflow (incl. rounding) -> inf
  if (abs < 0x38800000) {                                     // subnormal or zero in fp16
    if (abs < 0x33000000) return sign;                        // < 2^-25 rounds to 0
    const uint32_t e = abs >> 23;
    const uint32_t mant = (abs & 0x7FFFFF) | 0x800000;
    const int shift = 126 - static_cast<int>(e);             // 14 + (113 - e) ... bits to drop
    const uint32_t drop = static_cast<uint32_t>(shift);
    uint32_t half = mant >> drop;
    const uint32_t rem = mant & ((1u << drop) - 1);
    const uint32_t mid = 1u << (drop - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t r = abs - 0x38000000;  // rebias exponent 127 -> 15
  const uint32_t rem = r & 0x1FFF;
  r >>= 13;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
  return sign | static_cast<uint16_t>(r);
}

uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  const uint32_t rounding = 0x7FFF + ((x >> 16) & 1);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

float fp8_e4m3_to_f32(uint8_t v) {
  const bool neg = v & 0x80;
  const int exp = (v >> 3) & 0xF;
  const int mant = v & 0x7;
  float r;
  if (exp == 0xF && mant == 0x7) return std::nanf("");
  if (exp == 0)
    r = std::ldexp(static_cast<float>(mant), -9);  // subnormal: mant/8 * 2^-6
  else
    r = std::ldexp(1.0f + mant / 8.0f, exp - 7);
  return neg ? -r : r;
}

uint8_t f32_to_fp8_e4m3(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7E;  // saturate to max finite
  // Search by rounding: e4m3 has few enough values that an exact construction is simple.
  int e;
  std::frexp(a, &e);          // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1 + 7;        // biased exponent for 1.xxx form
  if (exp < 1) exp = 1;       // subnormal range shares the exponent of the smallest normal
  const float step = std::ldexp(1.0f, exp - 7 - 3);  // spacing of representable values
  float q = std::nearbyint(a / step);                 // ties to even under default rounding mode
  float v = q * step;
  if (v >= 448.0f) return sign | 0x7E;
  // Re-encode v exactly.
  if (v == 0.0f) return sign;
  int e2;
  std::frexp(v, &e2);
  int be = e2 - 1 + 7;
  if (be < 1) {  // subnormal
    const int mant = static_cast<int>(std::lround(v / std::ldexp(1.0f, -9)));
    return sign | static_cast<uint8_t>(mant);
  }
  const int mant = static_cast<int>(std::lround((v / std::ldexp(1.0f, be - 7) - 1.0f) * 8.0f));
  return sign | static_cast<uint8_t>(be << 3 | mant);
}

float fp8_e5m2_to_f32(uint8_t v) { return fp16_to_f32(static_cast<uint16_t>(v) << 8); }

uint8_t f32_to_fp8_e5m2(float f) {
  const uint16_t h = f32_to_fp16(f);
  if ((h & 0x7FFF) > 0x7C00) return static_cast<uint8_t>((h >> 8) | 0x02);  // NaN stays NaN
  // Round the low 8 bits to nearest even.
  uint16_t r = h;
  const uint16_t rem = r & 0xFF;
  r >>= 8;
  if ((r & 0x7C) != 0x7C && (rem > 0x80 || (rem == 0x80 && (r & 1)))) ++r;
  return static_cast<uint8_t>(r);
}

}  // namespace qrt
