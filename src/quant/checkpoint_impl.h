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

std::unique_ptr<Checkpoint> open_hf_checkpoint(const std::string& folder);
std::unique_ptr<Checkpoint> open_gguf_checkpoint(const std::string& file);

// The linear modules of the llama family in model order, with their [out, in] shapes from `c`.
struct LinearSlot {
  std::string name;       // "model.layers.3.self_attn.q_proj"
  int64_t out_features;
  int64_t in_features;
};
std::vector<LinearSlot> llama_linear_slots(const ModelConfig& c, bool include_lm_head);

// Rows of a quantized weight reordered: row r of the result is row src[r] of `w` (codes, scales,
// zeros, bias). Used to undo the GGUF rope permutation.
void permute_rows(QuantizedWeight& w, const std::vector<int64_t>& src);
void permute_rows(std::vector<float>& rows, int64_t row_len, const std::vector<int64_t>& src);

}  // namespace qrt::quant
