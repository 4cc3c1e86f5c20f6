// Format codecs: on-disk tensors of one linear module <-> the canonical QuantizedWeight.
//
// Decoders take the module's tensors by suffix (TensorParts: "qweight" -> view), the parsed config
// and, when the model config knows it, in_features (-1 = unknown: derived from the tensors). Every
// shape is cross-checked and every error names the tensor and what was expected. Encoders produce
// the tensors a reference library would write (suffix, dtype, shape, bytes).
// Layouts: docs/CHECKPOINTS.md (GPTQ, AWQ, FP8, LLM.int8).
#pragma once

#include <string>
#include <vector>

#include "qrt/quant_config.h"
#include "qrt/quantized_weight.h"
#include "quant/formats/codec_util.h"

namespace qrt::quant {

// ---- GPTQ (qweight [K*b/32, N], qzeros [G, N*b/32], scales [G, N], g_idx [K], bias [N]) ----
QuantizedWeight decode_gptq(const std::string& layer, const TensorParts& parts, const GptqConfig& config,
                            int64_t in_features = -1, std::vector<std::string>* warnings = nullptr);
// v2 = checkpoint_format "gptq_v2" (zeros stored as is); otherwise v1 (stored zero = z - 1).
// Scales are written as `scale_dtype` (F16 as the reference packers do, or BF16/F32).
std::vector<EncodedTensor> encode_gptq(const QuantizedWeight& w, bool v2, DType scale_dtype = DType::F16);

// ---- AWQ GEMM (qweight [K, N/8] interleaved) and GEMV (qweight [N, K/8] sequential) ----
QuantizedWeight decode_awq(const std::string& layer, const TensorParts& parts, const AwqConfig& config,
                           int64_t in_features = -1);
// version: "gemm" or "gemv".
std::vector<EncodedTensor> encode_awq(const QuantizedWeight& w, const std::string& version = "gemm",
                                      DType scale_dtype = DType::F16);
// Throws Unsupported naming `where` for what no AWQ decoder here reads: bits other than 4,
// zero_point false, versions gemv_fast / marlin / llm-awq. Checked when a checkpoint opens.
void check_awq_layout(const AwqConfig& config, const std::string& where);
// Width in int32 words of GEMV qzeros (AutoAWQ calculate_zeros_width); throws for unsupported gs.
int64_t awq_gemv_zeros_width(int64_t in_features, int64_t group_size);

// ---- FP8 e4m3: weight [N, K] + weight_scale (scalar / [N] / [N, 1]) or weight_scale_inv (block grid) ----
QuantizedWeight decode_fp8(const std::string& layer, const TensorParts& parts, const Fp8Config& config,
                           int64_t in_features = -1);
// Per-tensor (block = N x K) -> weight_scale [1]; per-channel (1 x K) -> weight_scale [N, 1];
// blocks -> weight_scale_inv [ceil(N/bn), ceil(K/bk)] (multiplier semantics, as transformers writes).
std::vector<EncodedTensor> encode_fp8(const QuantizedWeight& w);

// ---- bitsandbytes LLM.int8: weight I8 [N, K], SCB F32 [N], weight_format U8 scalar (0 = row) ----
QuantizedWeight decode_int8(const std::string& layer, const TensorParts& parts, int64_t in_features = -1);
std::vector<EncodedTensor> encode_int8(const QuantizedWeight& w);

// ---- compressed-tensors pack-quantized / naive-quantized / float-quantized (compressed_tensors.cpp) ----
QuantizedWeight decode_compressed_tensors(const std::string& layer, const TensorParts& parts,
                                          const CompressedTensorsConfig& config, int64_t in_features = -1);

// ---- bitsandbytes 4-bit (NF4 / FP4, optional double quantization; layout in bnb4.cpp) ----
struct Bnb4State {
  std::string quant_type;        // "nf4" or "fp4"
  int64_t blocksize = 64;
  int64_t out_features = 0, in_features = 0;
  bool nested = false;           // double quantization of the absmax scales
  int64_t nested_blocksize = 256;
  float nested_offset = 0;
};
// The layer's quant_state (read from its JSON tensor); throws naming the tensor.
Bnb4State read_bnb4_state(const std::string& layer, const TensorParts& parts);
QuantizedWeight decode_bnb4(const std::string& layer, const TensorParts& parts, int64_t in_features = -1);

// ---- HIGGS in FLUTE's layout (weight I16 [N*bits/16, K], scales, tables, tables2; higgs.cpp) ----
struct HiggsLayout {
  int bits = 4, p = 2, group_size = 256, hadamard_size = 512;
  int64_t template_id = 0;      // FLUTE kernel template (from tune_metadata): decides tile_p
  int64_t num_sms = 0;          // GPU the template was tuned on (tune_metadata.num_sms)
  int tile_p = 32;              // 16-bit words per packing tile along N (32 or 64)
};
// Reads the layer's tune_metadata entry (JSON object text; nullptr = none) against the config and
// the layer's shape; throws naming the layer and field (3-bit: Unsupported).
HiggsLayout higgs_layout(const std::string& layer, const HiggsConfig& config, const std::string* tune_metadata,
                         int64_t out_features, int64_t in_features);
// The grid as the canonical codebook (2^(bits*p) vectors of p values), from tables or tables2.
std::vector<float> read_higgs_codebook(const std::string& layer, const TensorParts& parts, const HiggsLayout& l,
                                       DType scale_dtype);
QuantizedWeight decode_higgs(const std::string& layer, const TensorParts& parts, const HiggsLayout& l,
                             int64_t out_features, int64_t in_features);
// The tensors transformers' HiggsLinear loads, values stored as `dtype` (F16 or BF16).
std::vector<EncodedTensor> encode_higgs(const QuantizedWeight& w, const HiggsLayout& l, DType dtype);
// Output rows of one FLUTE packing tile: 16 / bits values per word times the template's words per
// tile (32 or 64); -1 for a template FLUTE does not have at these bits.
int64_t higgs_flute_tile_rows(int bits, int64_t template_id);
// The tune_metadata entry FLUTE writes for a layer (torch_dtype: "torch.float16" / "torch.bfloat16").
std::string higgs_tune_metadata_json(const HiggsLayout& l, int64_t out_features, int64_t in_features,
                                     const std::string& torch_dtype);

}  // namespace qrt::quant
