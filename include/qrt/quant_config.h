// Quantization configs: the `quantization_config` object Hugging Face writes into config.json
// (and the legacy quantize_config.json of AutoGPTQ/AutoAWQ), one struct per method.
//
// Each config parses from JSON with the field names, aliases and defaults the writing libraries
// use (docs/CHECKPOINTS.md, quantization_config), validates like the reference library, and serializes back to the same JSON. Fields
// a config does not model are kept verbatim (`passthrough_json`) so a round trip loses nothing;
// fields qrt does not know at all are additionally reported in `QuantizationConfig::warnings`.
// Errors name the field: "quantization_config.bits: 5 is not one of 2, 3, 4, 8".
//
// The header does not expose the JSON library: values go in and out as JSON text.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace qrt {

// GPTQ (transformers GPTQConfig / AutoGPTQ BaseQuantizeConfig / GPTQModel QuantizeConfig).
struct GptqConfig {
  int bits = 4;                      // {2, 3, 4, 8}
  int group_size = 128;              // -1 = one group per output column, else > 0
  bool desc_act = false;             // act-order (g_idx)
  bool static_groups = false;        // AutoGPTQ: groups fixed before act-order (g_idx = k / gs)
  bool sym = true;
  bool true_sequential = true;
  double damp_percent = 0.1;         // (0, 1)
  std::string checkpoint_format = "gptq";   // "gptq" (v1: stored zero = z - 1) or "gptq_v2"
  std::string backend = "auto";      // loading hint, any name (the runtime maps aliases, warns on others)
  bool lm_head = false;              // GPTQModel: lm_head is quantized too
  // Runtime fields of transformers' GPTQConfig (qrt::checkpoint_runtime applies or names them).
  std::optional<int64_t> max_input_length;   // ExLlama buffers sized for this many prompt tokens
  std::optional<bool> use_exllama;           // false (or disable_exllama: true): no ExLlama kernels
  std::optional<int> exllama_version;        // exllama_config.version: 1 or 2
  std::optional<bool> use_cuda_fp16;
  std::string pack_dtype = "int32";  // GPTQModel; only int32 is supported
  // Which config keys were present (GPTQModel writes both method/quant_method, format/checkpoint_format).
  bool wrote_format_key = false;
  bool wrote_method_key = false;
  std::string passthrough_json = "{}";  // other fields (meta, dynamic, dataset, ...) kept verbatim

  // Throws naming `where` (e.g. "model.layers.0.mlp.down_proj") when group_size does not divide K.
  void check_layer(int64_t in_features, const std::string& where) const;
  bool is_v2() const { return checkpoint_format == "gptq_v2"; }
};

// AWQ (transformers AwqConfig / AutoAWQ).
struct AwqConfig {
  int bits = 4;                      // only 4 is implemented by every AWQ kernel
  int group_size = 128;              // -1 or > 0
  bool zero_point = true;
  std::string version = "gemm";      // gemm | gemv | gemv_fast | exllama | ipex | llm-awq | marlin
  std::string backend = "auto";      // any name, as for GPTQ
  std::vector<std::string> modules_to_not_convert;
  // Runtime fields of transformers' AwqConfig (qrt::checkpoint_runtime names them).
  std::optional<bool> do_fuse;
  std::optional<int64_t> fuse_max_seq_len;
  bool modules_to_fuse = false;      // present
  std::optional<int> exllama_version;
  std::string passthrough_json = "{}";

  void check_layer(int64_t in_features, const std::string& where) const;
};

// FP8 e4m3 weights (transformers FineGrainedFP8Config / vLLM Fp8Config). Block scales when
// weight_block_size is set; otherwise per-tensor or per-channel, decided by the scale tensor's
// shape at load ([] / [1] = per-tensor, [N] / [N, 1] = per-channel).
struct Fp8Config {
  std::string activation_scheme = "dynamic";     // dynamic | static
  std::optional<std::pair<int, int>> weight_block_size;  // [block_out, block_in]
  std::string fmt = "e4m3";
  std::string scale_fmt = "float";               // float | ue8m0
  std::vector<std::string> modules_to_not_convert;       // alias: ignored_layers
  std::string passthrough_json = "{}";
};

// bitsandbytes: LLM.int8 (load_in_8bit) or 4-bit NF4 / FP4 (load_in_4bit; the bnb_4bit_* fields ride
// in passthrough_json, the layers' own quant_state tensors are what decoding reads).
struct Int8Config {
  bool load_in_8bit = true;
  bool load_in_4bit = false;
  double llm_int8_threshold = 6.0;
  std::vector<std::string> llm_int8_skip_modules;
  bool llm_int8_has_fp16_weight = false;
  bool llm_int8_enable_fp32_cpu_offload = false;
  std::string passthrough_json = "{}";            // bnb_4bit_* and other fields
};

// torchao (string era `quant_type` + `quant_type_kwargs`, or {"default": config_to_dict(...)}).
struct TorchAoConfig {
  std::string quant_type = "int4_weight_only";   // int4_weight_only | int8_weight_only | ...
  int group_size = 128;                           // int4_weight_only: 32, 64, 128, 256
  std::string layout;                             // e.g. "tensor_core_tiled", "int4_cpu"; "" = default
  bool include_input_output_embeddings = false;
  bool untie_embedding_weights = false;
  std::vector<std::string> modules_to_not_convert;
  bool serialized_aobase = false;                 // came as {"default": {...}}
  std::string passthrough_json = "{}";
};

// HIGGS (transformers HiggsConfig): per-layer kernel tuning metadata lives in the config.
struct HiggsConfig {
  int bits = 4;                      // {2, 3, 4}
  int p = 2;                         // {1, 2}
  int hadamard_size = 512;
  int group_size = 256;              // {64, 128, 256}, divides hadamard_size
  std::vector<std::string> modules_to_not_convert;
  std::map<std::string, std::string> tune_metadata;   // module name -> JSON object text
  std::string passthrough_json = "{}";
};

// GGUF: quantization is per tensor (the ggml type); this records the file-level facts.
struct GgufConfig {
  int file_type = -1;                // general.file_type (llama_ftype), -1 = absent
  int quantization_version = 0;      // general.quantization_version
  std::map<std::string, int64_t> tensor_type_counts;   // "Q4_K" -> number of tensors
  std::string passthrough_json = "{}";
};

// compressed-tensors (what llm-compressor writes and vLLM reads), one config group targeting every
// Linear: "pack-quantized" int weights (num_bits per value, LSB-first streams in int32 words along
// K; group or channel scales; packed zero points when asymmetric), "naive-quantized" int8 weights
// and "float-quantized" FP8 e4m3 weights (channel or tensor scales).
struct CompressedTensorsConfig {
  std::string format;                 // pack-quantized | naive-quantized | float-quantized
  int num_bits = 4;
  std::string type = "int";           // int | float
  bool symmetric = true;
  std::string strategy = "group";     // group | channel | tensor
  int group_size = -1;                // strategy group
  std::string input_activations;      // "" (weight-only), "dynamic" or "static" (input_scale tensors)
  std::vector<std::string> ignore;    // module names (or "re:" patterns) left unquantized
  std::string passthrough_json = "{}";  // the whole object, written back as read
};

enum class QuantMethod : uint8_t { None, Gptq, Awq, Fp8, Int8, TorchAo, Higgs, Gguf, CompressedTensors };
const char* quant_method_name(QuantMethod m);   // "gptq", "awq", "fp8", "bitsandbytes", ...

struct QuantizationConfig {
  std::variant<std::monostate, GptqConfig, AwqConfig, Fp8Config, Int8Config, TorchAoConfig,
               HiggsConfig, GgufConfig, CompressedTensorsConfig>
      config;
  // Unknown fields and auto-corrections ("quantization_config.foo: unknown field, kept as is").
  std::vector<std::string> warnings;

  QuantMethod method() const { return static_cast<QuantMethod>(config.index()); }
  bool empty() const { return config.index() == 0; }
  template <class T> const T* get() const { return std::get_if<T>(&config); }
  template <class T> T* get() { return std::get_if<T>(&config); }
  // One line for `qrt inspect` / `qrt plan`: "gptq 4-bit g128 sym desc_act (gptq v1)".
  std::string describe() const;
};

// The quant_method values qrt dispatches ("gptq", "awq", "fp8", "bitsandbytes", "torchao",
// "higgs", "gguf").
std::vector<std::string> known_quant_methods();

// What a checkpoint's quantization_config asks of the runtime, from its runtime fields. Each
// field is either applied (a backend hint, the prompt length its buffers are sized for, backends
// it rules out) or named in one line of `notes` saying what qrt does instead.
struct CheckpointRuntime {
  std::string backend = "auto";                        // GPTQ/AWQ backend (a hint)
  std::string backend_field;                           // "quantization_config.backend" when set
  std::optional<int64_t> max_input_length;             // GPTQ max_input_length
  std::vector<std::pair<std::string, std::string>> disable;   // (qrt backend, the field that asks)
  std::map<std::string, std::string> tune_metadata;    // HIGGS: module name or glob -> JSON object text
  std::vector<std::string> notes;                      // fields read and not applied, one line each
};
CheckpointRuntime checkpoint_runtime(const QuantizationConfig& config);

// Parses a `quantization_config` JSON object (text). `where` prefixes every message
// ("config.json: quantization_config"). Throws qrt::Error (InvalidInput for bad values,
// Unsupported for an unknown quant_method, listing the known ones).
QuantizationConfig parse_quantization_config(std::string_view json_text,
                                             const std::string& where = "quantization_config");

// Serializes back to the JSON Hugging Face writes (pretty-printed with `indent` >= 0, compact
// with -1). Unknown fields kept at parse time are written back.
std::string quantization_config_to_json(const QuantizationConfig& config, int indent = 2);

}  // namespace qrt
