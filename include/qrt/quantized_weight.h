// The canonical quantized weight: every on-disk format decodes into this, every backend packs from it.
//
// A linear layer computes y[m][n] = sum_k x[m][k] * W[n][k] (+ bias[n]), W of shape [N = out, K = in].
// Hub and spokes: N formats + M backends need N + M converters, never N x M (DESIGN.md).
//
// Layout choices (all row-major, output row first, because every CPU kernel walks one output row
// at a time and GPU backends repack anyway):
//   codes   [N][K]   one unsigned code per byte, value in [0, 2^bits)  (FP8: the raw e4m3 byte)
//   scales  [N][G]   float32, G = number of groups along K              (IntAffine)
//   zeros   [N][G]   float32, meaning set by zero_kind                  (IntAffine, not Symmetric)
//   g_idx   [K]      group of each input column (act-order); empty = column k is in group k / group_size
//   FP8:   scales [ceil(N / scale_block_n)][ceil(K / scale_block_k)]
//   Codebook: spec.codebook [2^bits] float32, the value each code stands for (a lookup grid)
//   RotatedCodebook: spec.codebook [2^(bits*d)][d] float32, d = spec.codebook_dim (a grid of
//            d-vectors); the d columns k of one vector (k / d equal) carry the same code
//
// Dequantized value of W[n][k], g = group_of(k):
//   IntAffine + Symmetric: (code - 2^(bits-1)) * scales[n][g]
//   IntAffine + Integer:   (code - zeros[n][g]) * scales[n][g]        (GPTQ / AWQ integer zero point)
//   IntAffine + Float:     code * scales[n][g] + zeros[n][g]           (GGUF Q4_1 / Q4_K "min")
//   Fp8E4M3:               e4m3(code) * scales[n / bn][k / bk]
//   Codebook:              codebook[code] * scales[n][g]               (GGUF IQ4_NL / IQ4_XS, NF4, FP4)
//   RotatedCodebook:       V[n][k] = codebook[code * d + k % d] * scales[n][g], then W = V * H, H the
//                          block-diagonal orthonormal Sylvester Hadamard matrix of spec.hadamard_size
//                          along K (HIGGS: the weight was rotated before it was quantized)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qrt {

// Codebook: codes index a grid of 2^bits values (non-uniform levels) scaled per group; there is no
// zero point (zero_kind is Symmetric and zeros are empty). A backend runs it only where it declares
// the encoding, so a kernel that reads codes as integers never receives one by mistake.
// RotatedCodebook (HIGGS) differs from Codebook in two ways a kernel must know about: codes may
// index vectors of several values, and the weight is a rotation of what the codes say.
enum class WeightEncoding : uint8_t { IntAffine, Fp8E4M3, Codebook, RotatedCodebook };
enum class ZeroKind : uint8_t { Symmetric, Integer, Float };

const char* weight_encoding_name(WeightEncoding e);
const char* zero_kind_name(ZeroKind z);

// Metadata of a quantized layer without its data: enough to plan kernels for a device that is
// not present (qrt plan --target h100) and to key tuning caches.
struct LayerSpec {
  std::string name;             // module path, e.g. "model.layers.0.self_attn.q_proj"
  int64_t in_features = 0;      // K
  int64_t out_features = 0;     // N
  WeightEncoding encoding = WeightEncoding::IntAffine;
  int bits = 4;                 // 1..8 for IntAffine (2/3/4/8 from GPTQ, 6 from GGUF Q6_K), 8 for FP8
  int group_size = -1;          // along K; -1 = one group spanning K
  ZeroKind zero_kind = ZeroKind::Symmetric;
  bool act_order = false;       // g_idx is a non-trivial permutation
  bool has_bias = false;
  int scale_block_n = 0;        // FP8 only
  int scale_block_k = 0;        // FP8 only
  std::string source_format;    // "gptq", "gptq_v2", "awq_gemm", "fp8", "int8", "gguf:Q4_K", ... (for messages)
  std::vector<float> codebook;  // Codebook only: 2^bits values; part of the spec because a backend's
                                // check may depend on them (integer grids run on int8 kernels)
                                // RotatedCodebook: 2^(bits * codebook_dim) vectors of codebook_dim
  int codebook_dim = 1;         // RotatedCodebook: values per code (HIGGS p: 1 or 2)
  int hadamard_size = 0;        // RotatedCodebook: size of the Hadamard blocks along K (a power of 2)
  // bitsandbytes LLM.int8 layers only: the checkpoint's llm_int8_threshold. A backend that multiplies
  // with int8 activations (cuda_int8) takes the activation columns holding some |x| >= this out of
  // the int8 product and multiplies them in float (docs/LLM_INT8.md); 0 = no such decomposition.
  // Negative (the default): not an LLM.int8 layer. Weight-only backends do not read it.
  float llm_int8_threshold = -1.f;

  int64_t num_groups() const;
  int64_t effective_group_size() const { return group_size <= 0 ? in_features : group_size; }
  // True when every codebook entry is an integer in [-128, 127] (GGUF's IQ4 grid, not NF4's).
  bool codebook_is_int8() const;
  bool is_llm_int8() const { return llm_int8_threshold >= 0.f; }
  // One-line description: "4-bit g128 sym", "fp8 block 128x128", "8-bit per-row sym",
  // "4-bit g32 codebook".
  std::string describe() const;
};

struct QuantizedWeight {
  LayerSpec spec;
  std::vector<uint8_t> codes;    // [N][K]
  std::vector<float> scales;     // IntAffine: [N][G]; FP8: [ceil(N/bn)][ceil(K/bk)]
  std::vector<float> zeros;      // [N][G] for ZeroKind::Integer / Float; empty for Symmetric
  std::vector<int32_t> g_idx;    // [K] or empty
  std::vector<float> bias;       // [N] or empty

  int64_t K() const { return spec.in_features; }
  int64_t N() const { return spec.out_features; }
  int group_of(int64_t k) const {
    return g_idx.empty() ? static_cast<int>(k / spec.effective_group_size()) : g_idx[k];
  }
  // Checks every size and value invariant above; throws qrt::Error naming spec.name on violation
  // (code out of range, NaN/Inf scale, g_idx out of range, wrong vector sizes).
  void validate() const;
};

// Reference dequantizer: W as float32 [N][K]. The oracle every codec and backend is tested against.
std::vector<float> dequantize_reference(const QuantizedWeight& w);

}  // namespace qrt
