// Element types of tensors on disk and in memory, and scalar conversions between them.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace qrt {

// Every dtype a safetensors header may name (docs/CHECKPOINTS.md, safetensors). F8_* are one byte each.
enum class DType : uint8_t {
  BOOL, U8, I8, U16, I16, U32, I32, U64, I64,
  F16, BF16, F32, F64,
  F8_E4M3, F8_E5M2,
  F8_E8M0,   // scale-only format (MX); readable, not computable
  F4,        // packed fp4 (two per byte): readable as bytes only
  F6_E2M3, F6_E3M2,  // sub-byte, readable as bytes only
  Unknown,
};

// The safetensors spelling ("F16", "BF16", ...). Unknown -> "UNKNOWN".
std::string_view dtype_name(DType t);
// Parse the safetensors spelling; nullopt for a name qrt does not know.
std::optional<DType> parse_dtype(std::string_view name);
// Size in bits of one element (4 for F4, 6 for F6_*).
int dtype_bits(DType t);
bool dtype_is_float(DType t);

// ---- scalar conversions (exact where the format allows; round-to-nearest-even otherwise) ----
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);
float fp8_e4m3_to_f32(uint8_t v);   // e4m3fn: no infinities, 0x7F/0xFF are NaN, max 448
uint8_t f32_to_fp8_e4m3(float f);   // saturates to +-448
float fp8_e5m2_to_f32(uint8_t v);
uint8_t f32_to_fp8_e5m2(float f);

}  // namespace qrt
