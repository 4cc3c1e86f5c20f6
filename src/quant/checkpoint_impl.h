// Internals shared by the checkpoint readers (HF folder, GGUF) and the commands that write
// checkpoints (dequantize, quantize).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qrt/checkpoint.h"

namespace qrt::quant {

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where);
// A config.json for `c` (what transformers needs to build the model; no quantization_config).
nlohmann::json model_config_to_json(const ModelConfig& c);

// A config value the engines compute with in float32 (rms_norm_eps, rope_theta, rope scaling
// factors), checked in that type: it must be a positive normal float32 (a double such as 1e-320 or
// 1e-45 passes "> 0" but is 0 or denormal as a float), above `min_exclusive`, and with
// `reciprocal` its inverse must be a normal float32 too (factors are divided by). Throws
// InvalidInput "<what> = <v>: ..." otherwise; returns v.
double check_float32_value(double v, const std::string& what, double min_exclusive, bool reciprocal);

// 1 + the highest decoder layer index among `names` of the form <prefix><index>.<rest>
// ("model.layers.", "blk."), or 0 when none: how many layers the file stores.
int64_t stored_layer_count(const std::vector<std::string>& names, const std::string& prefix);

std::unique_ptr<Checkpoint> open_hf_checkpoint(const std::string& folder);
std::unique_ptr<Checkpoint> open_gguf_checkpoint(const std::string& file);

// The linear modules of the llama family in model order, with their [out, in] shapes from `c`.
struct LinearSlot {
  std::string name;       // "model.layers.3.self_attn.q_proj"
  int64_t out_features;
  int64_t in_features;
};
std::vector<LinearSlot> llama_linear_slots(const ModelConfig& c, bool include_lm_head);
// The norms of a decoder block, by their name inside "model.layers.N.": input_layernorm and
// post_attention_layernorm, and for Gemma-2 also pre_feedforward_layernorm and
// post_feedforward_layernorm.
std::vector<std::string> block_norm_names(const ModelConfig& c);

// Rows of a quantized weight reordered: row r of the result is row src[r] of `w` (codes, scales,
// zeros, bias). Used to undo the GGUF rope permutation.
void permute_rows(QuantizedWeight& w, const std::vector<int64_t>& src);
void permute_rows(std::vector<float>& rows, int64_t row_len, const std::vector<int64_t>& src);

}  // namespace qrt::quant
