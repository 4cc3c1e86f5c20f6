// GGUF block codecs: dequantization of ggml tensor types to float32, and conversion of the
// quantized block types to the canonical QuantizedWeight. docs/GGUF_BLOCKS.md describes each block.
//
// Canonical forms (K = ne[0] = in_features, N = rows = numel / K = out_features):
//   Q4_0 -> 4-bit g32 Symmetric              (code = nibble, value = (code - 8) * d)
//   Q4_1 -> 4-bit g32 ZeroKind::Float         (value = code * d + m)
//   Q8_0 -> 8-bit g32 Symmetric              (code = int8 + 128, value = (code - 128) * d)
//   Q4_K -> 4-bit g32 ZeroKind::Float         (scale = d * sc[j], zero = -(dmin * m[j]))
//   Q6_K -> 6-bit g16 Symmetric              (code = 6-bit value, value = (code - 32) * d * scales[j])
//   Q5_0 -> 5-bit g32 Symmetric              (value = (code - 16) * d)
//   Q5_1 -> 5-bit g32 ZeroKind::Float         (value = code * d + m)
//   Q5_K -> 5-bit g32 ZeroKind::Float         (scale = d * sc[j], zero = -(dmin * m[j]), as Q4_K)
//   Q2_K -> 2-bit g16 ZeroKind::Float         (scale = d * (sc[j] & 15), zero = -(dmin * (sc[j] >> 4)))
//   Q3_K -> 3-bit g16 Symmetric              (code = low 2 bits + 4 * high bit, scale = d * (sc[j] - 32))
//   IQ4_NL -> 4-bit g32 Codebook             (value = grid[code] * d, grid = the 16 IQ4 levels)
//   IQ4_XS -> 4-bit g32 Codebook             (value = grid[code] * d * (sc[j] - 32))
// dequantize_reference() of the canonical weight reproduces the direct block dequantization
// bit for bit (same float operations, tested).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "qrt/gguf.h"
#include "qrt/quantized_weight.h"

namespace qrt::quant {

// F32, F16, BF16, F64 and every type with a canonical form.
bool gguf_can_dequantize(GgmlType t);
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
bool gguf_has_canonical_form(GgmlType t);
// Sets encoding, bits, group_size, zero_kind and codebook of `spec` to the canonical form of t (what
// gguf_to_quantized_weight produces, known without reading a tensor). False when t has none.
bool gguf_canonical_spec(GgmlType t, LayerSpec* spec);
// "F32, F16, BF16, F64, Q4_0, ..." for error messages.
std::string gguf_supported_types();

// Dequantizes dst.size() elements (a multiple of the block size) from src, which must hold exactly
// dst.size() / block * type_size bytes. Throws Unsupported for other types, InvalidInput on a size
// mismatch (`what` names the tensor in messages).
void gguf_dequantize(GgmlType t, std::span<const uint8_t> src, std::span<float> dst,
                     const std::string& what = "tensor");
// The whole tensor, row-major in ggml order (ne[0] fastest), i.e. PyTorch [.., ne[1], ne[0]].
std::vector<float> gguf_dequantize_tensor(const GgufFile& file, const GgufTensorInfo& info);

// Canonical weight of a block-quantized matrix with in_features = K (= ne[0]) and out_features = N
// rows; data holds N * K / block blocks. `name` becomes spec.name. Throws Unsupported for a type
// without a canonical form and InvalidInput on sizes (or non-finite scales, via validate()).
QuantizedWeight gguf_to_quantized_weight(GgmlType t, std::span<const uint8_t> data, int64_t in_features,
                                         int64_t out_features, const std::string& name);
// Same for a tensor of a GGUF file (ne[0] = K, every further dim folds into N). name defaults to
// the tensor's name.
QuantizedWeight gguf_to_quantized_weight(const GgufFile& file, const GgufTensorInfo& info,
                                         const std::string& name = "");

}  // namespace qrt::quant
