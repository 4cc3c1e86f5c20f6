// Round-to-nearest quantizers: float weights [N][K] -> canonical QuantizedWeight.
// The formulas of docs/CHECKPOINTS.md, "Round to nearest: the scales qrt writes":
//   GPTQ style, sym:  scale = 2*max|w| / maxq, z = 2^(b-1)
//   GPTQ style, asym: range [min(w, 0), max(w, 0)], scale = range / maxq, z = round(-min / scale)
//   AWQ style (asym): range [min(w), max(w)], scale = max(range, 1e-5) / maxq, z = clamp(-round(min / scale))
//   q = clamp(round(w / scale) + z, 0, maxq)
// FP8: per block, scale = amax / 448, code = e4m3(w / scale).
#pragma once

#include <cstdint>
#include <string>

#include "qrt/quantized_weight.h"

namespace qrt::quant {

enum class RtnStyle : uint8_t { Gptq, Awq };

// group_size -1 = one group per row. Throws InvalidInput for bits outside 2..8, group_size 0 or < -1.
QuantizedWeight rtn_quantize(const std::string& name, const float* w, int64_t out_features, int64_t in_features,
                             int bits, int group_size, bool sym, RtnStyle style = RtnStyle::Gptq);

// block_n x block_k scale blocks: (N, K) = per-tensor, (1, K) = per-channel, (128, 128) = DeepSeek blocks.
QuantizedWeight fp8_quantize(const std::string& name, const float* w, int64_t out_features, int64_t in_features,
                             int block_n, int block_k);

}  // namespace qrt::quant
