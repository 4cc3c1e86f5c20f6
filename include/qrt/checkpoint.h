// A model checkpoint opened for reading: a Hugging Face folder (config.json, safetensors shards,
// tokenizer.json, generation_config.json) or a GGUF file, seen through ONE interface with
// Hugging Face names and conventions.
//
// - The model config is normalized (ModelConfig); GGUF metadata is mapped to the same fields.
// - Tensor names are HF names ("model.layers.3.self_attn.q_proj.weight"); GGUF names
//   ("blk.3.attn_q.weight") are mapped on open.
// - GGUF llama files store Q and K rows permuted for ggml's interleaved RoPE; they are un-permuted
//   on load, so the model always uses HF's rotate-half RoPE (rows of codes/scales/zeros for
//   quantized weights, rows of the float data otherwise).
// - GGUF gemma2 files store the norm weights as 1 + w; they are served as HF's w.
// - Listing layers reads no tensor data (`qrt plan` on a 70B checkpoint is instant).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qrt/dtype.h"
#include "qrt/quant_config.h"
#include "qrt/quantized_weight.h"

namespace qrt {

// RoPE scaling (rope_scaling in config.json; rope.scaling.* and rope_factors_* in GGUF).
struct RopeScaling {
  std::string type;                       // "" = none, "llama3", "linear", "longrope", "dynamic",
                                          // "yarn" (only "" / "llama3" / "linear" / "longrope" are
                                          // applied by the model)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  // longrope (Phi-3's long-context models; "su" in older configs): rotary frequency i is divided
  // by short_factor[i] when the engine's context fits original_max_position_embeddings and by
  // long_factor[i] when it is longer (rotary_dim / 2 values each); cos and sin are multiplied by
  // attention_factor. factor is
  // max_position_embeddings / original_max_position_embeddings unless the config names one.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;
};

struct ModelConfig {
  std::string architecture;     // "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                // "Gemma2ForCausalLM", "Phi3ForCausalLM"
  std::string model_type;       // "llama", "mistral", "qwen2", "gemma2", "phi3"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;         // hidden_size / num_heads unless config says otherwise
  int64_t vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // The leading dimensions of each head that RoPE rotates (head_dim * partial_rotary_factor: Phi-3
  // family, Phi-4-mini); the others pass through unrotated. 0 = the whole head.
  int64_t rotary_dim = 0;
  int64_t max_position_embeddings = 2048;
  int64_t sliding_window = 0;   // 0 = none (Mistral/Qwen2 may set it; informational)
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2: true)
  bool mlp_bias = false;
  int64_t bos_token_id = -1;    // -1 = none
  std::vector<int64_t> eos_token_ids;   // config.json and generation_config.json merged
  int64_t pad_token_id = -1;
  std::string torch_dtype;      // "bfloat16", "float16", "float32" or ""
  // The gated MLP's activation: "silu" (Llama, Mistral, Qwen2, Phi-3) or "gelu_pytorch_tanh"
  // (Gemma-2: the tanh approximation of GELU).
  std::string hidden_act = "silu";
  // Gemma-2 (0 = not used): attention scores are scaled by query_pre_attn_scalar^-0.5 instead of
  // head_dim^-0.5, and capped as cap * tanh(s / cap) before the softmax (attention) and on the
  // logits (final).
  double query_pre_attn_scalar = 0;
  double attn_logit_softcapping = 0;
  double final_logit_softcapping = 0;
  // Layers that attend within sliding_window (empty = every layer, where the architecture applies
  // the window at all): Gemma-2 alternates, the even-indexed layers windowed.
  std::vector<bool> sliding_layers;
};

// Sampling defaults from generation_config.json (absent fields stay unset).
struct GenerationDefaults {
  std::optional<bool> do_sample;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> top_k;
  std::optional<double> min_p;
  std::optional<double> repetition_penalty;
  std::optional<int64_t> max_new_tokens;
};

enum class CheckpointKind : uint8_t { HfFolder, Gguf };

// One linear layer of the model (q/k/v/o, gate/up/down per block, lm_head when untied).
struct CheckpointLinear {
  LayerSpec spec;               // name = module path ("model.layers.0.self_attn.q_proj")
  bool quantized = false;       // false: plain float weight (load with load_float(name + ".weight"))
  DType stored_dtype = DType::Unknown;   // dtype of an unquantized weight on disk (F16, BF16, F32)
};

// Shape/dtype of a stored tensor, by HF name. For a quantized linear the checkpoint exposes one
// logical entry "<module>.weight" (dtype Unknown, shape [N, K]) in place of qweight/qzeros/...
struct CheckpointTensor {
  std::string name;
  DType dtype = DType::Unknown; // Unknown for GGUF block types and logical quantized weights
  std::vector<int64_t> shape;   // PyTorch order
  std::string storage;          // what is on disk: "F16", "I32 qweight", "gguf:Q4_K", ...
  uint64_t bytes = 0;           // bytes on disk (for quantized: all parts together)
};

// Raw bytes of an unquantized tensor in its stored dtype (F16/BF16/F32/...), row-major.
struct RawTensor {
  DType dtype = DType::Unknown;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;

  virtual CheckpointKind kind() const = 0;
  virtual const std::string& path() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual const GenerationDefaults& generation_defaults() const = 0;
  // Empty config (method() == None) for an unquantized checkpoint. GGUF: a GgufConfig.
  virtual const QuantizationConfig& quantization() const = 0;
  // Every linear layer in model order (block by block: q, k, v, o, gate, up, down; lm_head last).
  virtual const std::vector<CheckpointLinear>& linears() const = 0;
  // Every tensor the model may ask for, HF names (see CheckpointTensor).
  virtual const std::vector<CheckpointTensor>& tensors() const = 0;
  virtual bool has_tensor(const std::string& name) const = 0;

  // Decodes one quantized linear (module path, without ".weight") into the canonical form.
  // Throws if `layer` is not a quantized linear of this checkpoint; validates shapes and values.
  virtual QuantizedWeight load_quantized(const std::string& layer) const = 0;
  // Any tensor as float32 row-major, by HF name: embeddings, norms, biases, unquantized linears,
  // and also "<module>.weight" of a quantized linear (dequantized with the reference dequantizer).
  virtual std::vector<float> load_float(const std::string& name) const = 0;
  // Raw stored bytes of an unquantized tensor (F16/BF16/F32/... as on disk; GGUF F16/F32/BF16).
  // Throws for quantized tensors (use load_quantized / load_float).
  virtual RawTensor load_raw(const std::string& name) const = 0;

  // Path of tokenizer.json (HF folder) or "" (GGUF: the vocabulary is in the GGUF metadata; read
  // it with the tokenizer module's GGUF loader from path()).
  virtual std::string tokenizer_json_path() const = 0;
  // Files of the folder that belong to the tokenizer/chat template (copied by dequantize/quantize).
  virtual std::vector<std::string> tokenizer_files() const = 0;
  // The original config.json text (HF) or a config.json synthesized from GGUF metadata.
  virtual std::string config_json() const = 0;
  // Non-fatal findings (unknown config fields, sym qzeros that are not the expected constant...).
  virtual const std::vector<std::string>& warnings() const = 0;
};

// The architectures qrt runs ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
// "Gemma2ForCausalLM", "Phi3ForCausalLM").
std::vector<std::string> supported_architectures();

// Opens a HF folder (a directory holding config.json) or a .gguf file. Reads metadata only.
// Throws qrt::Error naming the file and field: unknown architecture (listing the supported ones),
// config and tensor shapes that disagree, missing tensors.
std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path);

// Decodes every quantized linear of `ck` once (one at a time, nothing kept), so that what loading
// would refuse in the tensors themselves -- NaN or infinite scales, codes out of range, parts that
// disagree -- is refused before a plan is printed. Returns the number of layers checked.
int64_t check_quantized_tensors(const Checkpoint& ck);

// Parses config.json text into a ModelConfig (exposed for tests and fuzzing). `where` prefixes
// messages ("config.json").
ModelConfig parse_model_config(const std::string& json_text, const std::string& where = "config.json");

// GGUF llama rope permutation of a weight's rows (ggml interleaved pairs -> HF rotate-half halves).
// `rows` = n_head * head_dim; within each head, GGUF row 2*j + i holds HF row i*head_dim/2 + j.
// Returns, for every HF row r, the GGUF row that holds it.
std::vector<int64_t> gguf_unpermute_rows(int64_t rows, int64_t n_head);

}  // namespace qrt
