// The per-device ops of the Llama-family block (internal to src/model). The model (llama_model.h)
// is written once against this interface: which ops run, in which order, on which buffers, and the
// model's rules (sliding window, RoPE tables, length caps, fused projections, plans). A device
// implements the ops: the CPU (cpu/cpu_ops.h: float32 activations, thread pool, grouped and split
// attention) and the GPU (cuda/cuda_ops.h: fp16 activations, one stream, the decode step captured
// in a CUDA graph). A fused op is an op: add_rmsnorm folds the residual add into the next norm, and
// a device may run more of the block as one op where it has a kernel for it.
//
// Rows. A step runs StepRows: row i is token tokens[i] at position positions[i] of sequence
// sequences[i]. The single-sequence forward is the special case of one sequence at consecutive
// positions in a contiguous cache; the batched engine (qrt/batch_engine.h) passes rows of many
// sequences, each addressing a paged KV pool through its block table. The devices accept what
// their KV cache can address (docs/DESIGN.md, "The block and its ops").
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/ops.h"
#include "qrt/batch_engine.h"
#include "qrt/model.h"
#include "qrt/plan.h"

namespace qrt::model {

// Sizes of the model and of the engine's buffers.
struct ModelDims {
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, q_dim = 0, kv_dim = 0;
  int64_t inter = 0, vocab = 0;
  float eps = 1e-6f;
  int64_t window = 0;    // attention window (0 = full causal attention), attention_window()
  // The rules beyond the Llama block (Gemma-2, Phi-3); a device that lacks one is refused at load
  // (BlockOps::missing_features).
  std::vector<int64_t> layer_window;  // per layer where layers differ (Gemma-2); empty: `window`
  float embed_scale = 1.0f;   // the embedding is multiplied by it (Gemma-2: sqrt(hidden) in float32)
  float attn_scale = 0.0f;    // attention score scale; 0: 1 / sqrt(head_dim)
  float attn_softcap = 0.0f;  // scores s -> cap * tanh(s / cap) before the softmax (0: none)
  float final_softcap = 0.0f; // logits likewise (0: none)
  bool gelu_tanh = false;     // the MLP gate's activation is GELU's tanh form, not SiLU
  bool sandwich_norms = false;  // each branch's output is normalized before it joins the residual
  // The RoPE tables carry longrope's frequencies and attention factor (Phi-3's long context): a
  // rule, so that a device whose tables were never checked with them refuses it.
  bool longrope = false;
  // Dimensions of each head RoPE rotates, when fewer than head_dim (partial_rotary_factor); 0 =
  // all. The tables then have rotary_dim / 2 columns, which no device but the CPU reads so.
  int64_t rotary_dim = 0;
  int64_t window_of(int64_t layer) const {
    return layer_window.empty() ? window : layer_window[static_cast<size_t>(layer)];
  }
  // The first position a query at `position` of layer `layer` attends to (its window's start).
  int64_t first_attended(int64_t layer, int64_t position) const {
    const int64_t w = window_of(layer);
    return w > 0 && position >= w ? position - w + 1 : 0;
  }
  // What q . k is multiplied by before the softmax.
  float score_scale() const {
    return attn_scale > 0 ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  }
  // The rules above that this model uses, in words ("attention soft-capping", ...).
  std::vector<std::string> extended_rules() const;
  int64_t capacity = 0;     // KV cache positions per sequence
  int64_t max_rows = 0;     // rows of one step
  int64_t prefill_rows = 0; // rows of one prompt chunk (<= max_rows)
  int64_t kv_blocks = 0;    // blocks of a paged KV pool; 0 = one contiguous sequence of `capacity`
};

// The sizes and the rules of `config`'s block (every field above `capacity`), as the model derives
// them from the config; the engine fills the rest. The calibrated quantizers
// (calibration_layer.h) read the same rules, so their float block is the engine's.
ModelDims model_dims(const ModelConfig& config);

struct StepRows {
  int64_t count = 0;
  const int32_t* tokens = nullptr;     // [count], host
  const int64_t* positions = nullptr;  // [count], host
  const int32_t* sequences = nullptr;  // [count], host; nullptr = every row is of sequence 0
  // The paged pool's block table of each sequence (indexed by sequences[i]); nullptr: the
  // contiguous single-sequence cache.
  const KvBlockTable* tables = nullptr;
  int64_t table_count = 0;
  // One sequence at positions[0], positions[0] + 1, ... (what a single-sequence KV cache addresses).
  bool one_sequence_in_order() const;
};

// The activation buffers of a step, by role; each holds max_rows rows.
enum class Buffer : uint8_t { Normed, Q, K, V, Qkv, Attn, Proj, Gate, Up, GateUp };
// Rows of a buffer: row i starts at element i * stride + col. A fused projection's output holds
// its parts side by side in each row (q | k | v, gate | up).
struct View {
  Buffer buffer = Buffer::Normed;
  int64_t col = 0;
  int64_t stride = 0;
};

// One linear of the model on a device: a planned QuantLinear, or a dense matrix the device holds.
struct ModelLinear {
  std::string name;     // layer name; a fused group's fused name
  std::string op;       // what it computes, for profiles: "q_proj", "q/k/v (fused)", "lm_head"
  int64_t k = 0, n = 0;
  std::unique_ptr<QuantLinear> quantized;
  int dense = -1;       // BlockOps::upload_matrix handle when not quantized
  bool present() const { return quantized || dense >= 0; }
};

class BlockOps {
 public:
  virtual ~BlockOps() = default;
  virtual std::string device_name() const = 0;
  // Runs fn with this device current (the GPU: its CUDA device); the model wraps its load and every
  // forward in it.
  virtual void on_device(const std::function<void()>& fn) { fn(); }

  // The ModelDims::extended_rules() of `dims` this device does not implement (the model refuses
  // to load with them named). A device that implements them overrides this, and the ops below.
  virtual std::vector<std::string> missing_rules(const ModelDims& dims) const { return dims.extended_rules(); }

  // ---- load time, in this order ----
  // Device limits and memory checks for `dims` (throws Unsupported / OutOfMemory naming the
  // setting to lower); no large allocation yet.
  virtual void reserve(const ModelDims& dims) = 0;
  // cos / sin of every position; `rope` outlives the ops (the model keeps it).
  virtual void set_rope(const ops::RopeTable& rope) = 0;
  // The embedding table [vocab][hidden]; with tied_head it is also the output projection. The
  // vectors given here and to upload_matrix / upload_vector outlive the ops (the model keeps its
  // ModelWeights), so a device may read them in place.
  virtual void upload_embedding(const std::vector<float>& table, bool tied_head) = 0;
  // A dense linear (head: the output projection) in the device's storage; returns its handle.
  virtual int upload_matrix(const LinearWeight& w, bool head) = 0;
  // A float vector (a norm's weights); returns its handle.
  virtual int upload_vector(const std::string& name, const std::vector<float>& v) = 0;
  // Activation buffers (with the fused projections' outputs when `fused`), the KV cache, scratch;
  // quantized_head: the head is a QuantLinear (its output dtype is the activations').
  virtual void allocate(bool fused, bool quantized_head) = 0;
  // After allocate(): how this device runs the decode attention and why, one line for the load
  // log; empty where there is no choice to report.
  virtual std::string decode_attention_plan() const { return {}; }
  // Runs run(m) once for every m of `rows` before any step is captured, where the device captures
  // steps (a kernel's first-run fallback must never happen inside a capture); a no-op elsewhere.
  virtual void warm_up(const std::vector<int64_t>& rows, const std::function<void(int64_t m)>& run) {}

  // ---- one step ----
  // The rows of the step; the head writes `logit_rows` rows of logits to `logits` (host) by finish().
  virtual void stage(const StepRows& rows, float* logits, int64_t logit_rows) = 0;
  // A device that picks the greedy token of a step itself (so that one id comes back, not the
  // logits) says so here; the model then stages a step whose head has one logits row with
  // stage_greedy(), and *token holds that row's greedy choice by finish() (the index of the
  // largest logit, the lowest among equal ones, NaN as -infinity: qrt::greedy_token()).
  virtual bool picks_greedy_token() const { return false; }
  virtual void stage_greedy(const StepRows& rows, int32_t* token);
  // Residual stream x[i] = embedding of token i.
  virtual void embed(int64_t m) = 0;
  // embed(m), then the first block's norm of rows [0, m) (add_rmsnorm without add_proj).
  virtual void embed_rmsnorm(int norm, int64_t m) {
    embed(m);
    add_rmsnorm(false, norm, 0, m);
  }
  // For rows [row0, row0 + rows): x += Proj (when add_proj), Normed = rmsnorm(x) * weight `norm`.
  virtual void add_rmsnorm(bool add_proj, int norm, int64_t row0, int64_t rows) = 0;
  // out = in * W^T (+ bias), m rows.
  virtual void linear(ModelLinear& l, View in, View out, int64_t m) = 0;
  // RoPE on q (in place) and k; k and v into layer `layer`'s KV cache at the rows' positions.
  virtual void rope_store_kv(int64_t layer, View q, View k, View v, int64_t m) = 0;
  // Causal grouped-query attention of q over the cache (the rows' positions, window), into `out`.
  virtual void attention(int64_t layer, View q, View out, int64_t m) = 0;
  // rope_store_kv() then attention() (q afterwards: rotated, or as it was where a device fuses
  // the two; nothing reads it again).
  virtual void rope_store_attention(int64_t layer, View q, View k, View v, View out, int64_t m) {
    rope_store_kv(layer, q, k, v, m);
    attention(layer, q, out, m);
  }
  // out = silu(gate) * up.
  virtual void silu_mul(View gate, View up, View out, int64_t m) = 0;
  // out = gelu_tanh(gate) * up (ModelDims::gelu_tanh).
  virtual void gelu_tanh_mul(View gate, View up, View out, int64_t m);
  // Proj = rmsnorm(Proj) * weight `norm` for rows [0, m): a branch's output normalized before it
  // joins the residual stream (ModelDims::sandwich_norms).
  virtual void rmsnorm_proj(int norm, int64_t m);
  // Logits of Normed rows [row0, row0 + rows) through the head (a ModelLinear, or the embedding
  // when tied: head.dense < 0 and head.quantized null).
  virtual void head(ModelLinear& head, int64_t row0, int64_t rows) = 0;
  // The final norm of rows [row0, row0 + rows) and the head over them: add_rmsnorm() then head()
  // (the residual x afterwards: updated, or as it was where a device fuses the two; nothing
  // reads it again in the step).
  virtual void norm_head(bool add_proj, int norm, ModelLinear& head, int64_t row0, int64_t rows) {
    add_rmsnorm(add_proj, norm, row0, rows);
    this->head(head, row0, rows);
  }
  // Every op of the step has been called: a device that holds ops back to fuse them with the next
  // one (the GPU's decode step) issues what it still holds.
  virtual void end_step() {}
  // Moves residual row rows[k] (x and the pending Proj) to row k, for k < n; rows ascending. A
  // batched step gathers the rows whose logits are wanted before the final norm and the head.
  virtual void gather_rows(const int64_t* rows, int64_t n) = 0;
  // The launches of a one-row step whose logits are wanted: a device that captures steps
  // replays a captured copy (positions and tokens live in device memory); others just run them.
  virtual void decode_step(const std::function<void()>& launches) { launches(); }
  // Ends the step: the logits reach the host.
  virtual void finish() = 0;
};

}  // namespace qrt::model
