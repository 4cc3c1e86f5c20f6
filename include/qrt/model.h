// The Llama-family model: hyperparameters, loaded weights, and the forward engine interface.
//
// Loading and running are split so that one loaded model can feed different engines:
//
//   ResolvedSetup = resolve_setup(checkpoint, request)    // config, device, tuning cache, plans (qrt/setup.h)
//   ModelWeights  = load_model(checkpoint, LoadOptions)    // checkpoint -> float tensors + QuantizedWeight
//   ForwardEngine = make_engine(weights, setup.engine_options())  // prepares kernels, owns the KV cache
//
// Every engine is the same model (src/model/llama_model.h: the block written once, with the
// model's rules) over one device's ops (src/model/block_ops.h): the CPU's (src/model/cpu/) and, in
// CUDA builds, the GPU's (src/model/cuda/). A new device implements those ops; make_engine() picks
// the device's engine by DeviceInfo::kind, so callers never name one. The contract every engine
// keeps is the one ForwardEngine documents below: same token/position semantics, logits in float32
// on the host, Generator and perplexity device-agnostic.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qrt/checkpoint.h"
#include "qrt/device.h"
#include "qrt/plan.h"
#include "qrt/quantized_weight.h"
#include "qrt/runtime_config.h"
#include "qrt/thread_pool.h"

namespace qrt {

// One linear layer: quantized (runs through a QuantLinear) or dense float32 [out][in].
struct LinearWeight {
  std::string name;                               // "model.layers.0.self_attn.q_proj"
  int64_t in_features = 0;
  int64_t out_features = 0;
  // Non-null: quantized (its bias lives inside). After drop_canonical_weights() only its spec is
  // kept (no codes, scales or zeros) and canonical() re-reads the data through `reload`.
  std::shared_ptr<const QuantizedWeight> quantized;
  // Re-reads the canonical weight from the checkpoint it came from (set by load_model; empty for
  // weights built in memory, which are never dropped).
  std::function<QuantizedWeight()> reload;
  bool dropped = false;                           // drop_canonical_weights() freed the data
  std::vector<float> dense;                       // [out][in] when not quantized
  std::vector<float> bias;                        // [out] or empty (dense layers only)
  bool is_quantized() const { return quantized != nullptr; }
  // The canonical weight with its data: the one held, or re-read when dropped.
  std::shared_ptr<const QuantizedWeight> canonical() const;
};

// A norm's weights are the factors the normalized values are multiplied by: Gemma-2's stored
// (1 + w) form is turned into that at load, so every norm is the same op on every device.
struct DecoderLayerWeights {
  std::vector<float> input_norm;                  // [hidden]
  std::vector<float> post_attention_norm;         // [hidden]; Gemma-2: normalizes the attention output
  // Gemma-2 only (empty elsewhere): the norm before the MLP and the one of the MLP's output.
  std::vector<float> pre_feedforward_norm, post_feedforward_norm;
  LinearWeight q_proj, k_proj, v_proj, o_proj;
  LinearWeight gate_proj, up_proj, down_proj;
  // Phi-3 stores q/k/v (rows q | k | v) and gate/up (rows gate | up) as one matrix each: then these
  // are set and q/k/v and gate/up are empty (no name).
  LinearWeight qkv_proj, gate_up_proj;
  bool fused_qkv() const { return !qkv_proj.name.empty(); }
  bool fused_gate_up() const { return !gate_up_proj.name.empty(); }
  // The linears of the block in model order (the fused ones where stored fused).
  std::vector<const LinearWeight*> linears() const;
  std::vector<LinearWeight*> linears();
};

// Everything a forward pass needs, device-independent, read-only once loaded.
struct ModelWeights {
  ModelConfig config;                             // from the checkpoint (qrt/checkpoint.h)
  GenerationDefaults generation;                  // generation_config.json sampling defaults
  std::string source;                             // path it was loaded from
  std::string quantization;                       // one line: "gguf Q4_1 ...", "gptq 4-bit g128 sym", "none"
  std::vector<float> embed_tokens;                // [vocab][hidden]
  std::vector<DecoderLayerWeights> layers;
  std::vector<float> final_norm;                  // [hidden]
  // The output projection. When tied (or absent from the checkpoint) it is empty (not quantized,
  // no dense data) and engines use embed_tokens as the [vocab][hidden] matrix -- except that a
  // tied embedding stored as GGUF Q8_0 is also given here as a quantized "lm_head" (its exact
  // 8-bit grid, see LoadOptions::quantized_tied_head), which engines run like any quantized linear.
  LinearWeight lm_head;
  bool lm_head_uses_embedding() const { return !lm_head.is_quantized() && lm_head.dense.empty(); }

  // Specs of every quantized linear, in model order (what plan_layers() takes).
  std::vector<LayerSpec> quantized_layer_specs() const;
  // Every linear in model order (per layer q, k, v, o, gate, up, down, or Phi-3's qkv, o, gate_up,
  // down; then lm_head), for engines that build kernels.
  std::vector<const LinearWeight*> linears() const;
  // Checks every tensor size against config; throws qrt::Error naming the tensor.
  void validate() const;
};

struct LoadOptions {
  // "" keeps the checkpoint's weights; "int4" / "int8" quantizes plain float linears on load
  // (round-to-nearest, symmetric, groups of group_size along K; -1 = per output row).
  std::string quantize;
  int group_size = 128;
  // A tied embedding stored quantized (GGUF Q8_0) also becomes a quantized lm_head, recovered
  // losslessly from its 8-bit grid, so the output projection runs through a quantized backend
  // (as llama.cpp does) instead of as a float matrix. false = the head stays the dense embedding.
  bool quantized_tied_head = true;
  // Called as tensors are read: (done, total); may be empty.
  std::function<void(int64_t done, int64_t total)> progress;
};

// The quantized linears a model loaded from `ck` with `options` runs through a backend, in model
// order (7 per decoder layer, then lm_head), decided from the checkpoint's metadata alone: its
// quantized linears, and the tied embedding stored as GGUF Q8_0 that becomes a quantized lm_head
// (LoadOptions::quantized_tied_head). load_model() builds exactly these layers and `qrt plan`
// lists them, so the plan and the run cannot disagree. (Linears that LoadOptions::quantize
// quantizes on load are not included: they are float in the checkpoint.)
std::vector<LayerSpec> quantized_linear_specs(const Checkpoint& ck, const LoadOptions& options = {});
// The canonical weight of one layer quantized_linear_specs() lists, read from `ck` alone (a
// quantized linear, a linear quantized on load, the quantized tied head), for tuning and
// benchmarks. Throws qrt::Error naming the layer when the checkpoint has no such layer.
QuantizedWeight load_quantized_linear(const Checkpoint& ck, const std::string& name, const LoadOptions& options = {});

// The linears of decoder layer `layer` as the checkpoint stores them, in model order: q, k, v, o,
// gate, up, down, or Phi-3's qkv, o, gate_up, down ("model.layers.0.self_attn.q_proj", ...).
std::vector<std::string> decoder_linear_names(const ModelConfig& config, int64_t layer);
// What the model adds to a stored norm weight to get the factor it multiplies by: Gemma-2 stores
// w for a factor of 1 + w (1); every other architecture stores the factor (0).
float norm_weight_offset(const ModelConfig& config);

// A Hugging Face folder (config.json + safetensors) or a .gguf file. Throws qrt::Error naming the
// file/tensor/field on anything unexpected (unknown architecture, mismatched shapes, ...).
std::shared_ptr<ModelWeights> load_model(const std::string& path, const LoadOptions& options = {});
// The same from a checkpoint already open (resolve_setup reads its metadata first).
std::shared_ptr<ModelWeights> load_model(const Checkpoint& checkpoint, const LoadOptions& options = {});

// Frees the canonical data (one byte per code, float scales) of every quantized linear that can be
// re-read from its checkpoint, keeping its spec: engines pack their own copies at build, so after
// the last engine is built the canonical form is only needed again for a fallback or a new engine,
// which re-read it (LinearWeight::canonical). Returns the bytes freed.
int64_t drop_canonical_weights(ModelWeights& weights);

// The default model: $QRT_CACHE_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf, where QRT_CACHE_DIR
// defaults to ${XDG_CACHE_HOME:-~/.cache}/qrt (the file scripts/fetch-model.sh downloads).
std::string default_model_path();
// `given` when non-empty, else default_model_path(); throws qrt::Error when the default model is
// missing, saying to run scripts/fetch-model.sh.
std::string resolve_model_path(const std::string& given);

// Storage of the KV cache. The CPU engine stores F32 or F16; the GPU engine stores F16 (for F32
// too) or Fp8E4M3 (e4m3, no scale: half the bytes of F16, keys and values rounded to 3 mantissa
// bits; the CPU engine refuses it).
enum class KvCacheDType : uint8_t { F32, F16, Fp8E4M3 };
// Storage of unquantized matrices (dense linears, lm_head / tied embedding) inside an engine.
// F16 halves the bytes a decode step streams (the head is the largest matrix of small models);
// values beyond the fp16 range keep float32 for that matrix.
enum class DenseDType : uint8_t { F32, F16 };

struct EngineOptions {
  RuntimeConfig runtime;                          // backend / fallback / disabled / threads / lengths
  DeviceInfo device;                              // where the quantized linears are planned
  KvCacheDType kv_dtype = KvCacheDType::F32;
  DenseDType dense_dtype = DenseDType::F16;
  int64_t prefill_batch = 128;                    // prompt rows per forward step (M of prefill GEMMs)
  // The batched engine (qrt/batch_engine.h): blocks of its paged KV pool, and the most rows of one
  // step (0 = prefill_batch). The single-sequence engines ignore both.
  int64_t kv_blocks = 0;
  int64_t max_step_rows = 0;
  // What the CPU engine's threads do when preempted (qrt/thread_pool.h): `qrt serve` keeps them
  // spinning, since what preempts them there is its own connection threads.
  SpinPolicy cpu_spin = SpinPolicy::Adaptive;
  std::function<void(const std::string&)> log;    // plan / fallback messages; may be empty
  // The plans to run (resolve_setup, qrt/setup.h). Null: the engine plans the weights it is given
  // through the same plan_model(), reading the tuning cache `runtime` names.
  std::shared_ptr<const ModelPlan> plan;
  // KV cache capacity in positions: runtime.max_input_length + runtime.max_new_tokens.
  int64_t max_context() const { return runtime.max_input_length + runtime.max_new_tokens; }
  // Throws qrt::Error(InvalidInput) unless 1 <= max_input_length and 0 <= max_new_tokens, each at
  // most 2^31 (far past any model; keeps max_context() and the byte counts from overflowing).
  // Every engine calls it before sizing anything.
  void validate_lengths() const;
};

// The attention window an engine applies (0 = full causal attention): Mistral's and Phi-3's
// sliding_window, and Gemma-2's on the layers ModelConfig::sliding_layers marks (the largest over
// the layers when `layer` is -1). Qwen2 configs carry one that the reference implementation
// ignores, so qrt ignores it too.
int64_t attention_window(const ModelConfig& config, int64_t layer = -1);

// A forward pass over a KV cache. Positions are absolute: forward(tokens, n, pos, ...) appends
// tokens[0..n) at positions [pos, pos + n) and attends over [0, pos + n). The cache content at
// positions >= pos is overwritten, so rewinding is just calling forward with a smaller pos.
class ForwardEngine {
 public:
  virtual ~ForwardEngine() = default;
  virtual const ModelConfig& config() const = 0;
  // Positions the KV cache holds.
  virtual int64_t capacity() const = 0;
  // logits: when all_logits, [n][vocab] (one row per token, for perplexity); otherwise [vocab] of
  // the last token only. Throws qrt::Error (before touching the cache) when n < 1, pos < 0,
  // pos + n > capacity() or a token id is outside the vocabulary.
  virtual void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits,
                       bool all_logits = false) = 0;
  // forward(tokens, n, pos) and the greedy choice of its last row (qrt::greedy_token, sampler.h):
  // the same steps, but an engine that picks the token on the device (the GPU) copies one id back
  // instead of the logits. Throws what forward() throws.
  virtual int32_t forward_greedy(const int32_t* tokens, int64_t n, int64_t pos);
  // The plan of every quantized linear and the backends actually prepared for them.
  virtual const std::vector<LinearPlan>& plans() const = 0;
  // What runs: every quantized linear the engine built (a fused group under its fused name), in
  // model order, with its kernel per M range after any fallback (QuantLinear::kernels).
  virtual std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const = 0;
  // backend name -> number of quantized linears it runs (a layer with several M ranges counts
  // once per distinct backend); "dense" counts unquantized linears (including lm_head).
  virtual std::map<std::string, int> backend_counts() const = 0;
  virtual std::string device_name() const = 0;
};

// The CPU engine: float32 activations, multi-threaded; quantized linears through QuantLinear.
std::unique_ptr<ForwardEngine> make_cpu_engine(std::shared_ptr<const ModelWeights> weights,
                                               const EngineOptions& options);

// The engine for options.device.kind (CPU always; CUDA when built with QRT_WITH_CUDA_ENGINE);
// throws qrt::Error naming the device when this binary has no engine for it.
std::unique_ptr<ForwardEngine> make_engine(std::shared_ptr<const ModelWeights> weights,
                                           const EngineOptions& options);

}  // namespace qrt
