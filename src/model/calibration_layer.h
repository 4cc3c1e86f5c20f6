// The float model as calibration runs it (quant/calibration.h): the weights read from the
// checkpoint (linears dequantized to float32 [out][in], norms as the model multiplies by them), and
// the decoder block of the checkpoint's architecture over rows of float32 activations. The block's
// rules are the engine's own (model::model_dims: Gemma-2's scaled embedding, norms of both
// branches' outputs, GeGLU, attention scale, soft-capped scores and logits, windows on some
// layers; Phi-3's fused q/k/v and gate/up, longrope and partial rotary), computed with the
// primitives of ops.h that the CPU engine runs, so the calibration activations are the float
// engine's. Shared by the model-sampled calibration text (calibration_samples.h: a row per
// sequence and step over a KV cache) and the layer-by-layer quantizer (layerwise_calibrate.cpp:
// causal windows of calibration tokens).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/block_ops.h"
#include "model/ops.h"
#include "qrt/checkpoint.h"

namespace qrt {
class ThreadPool;

struct DenseLinear {
  std::string name;        // "model.layers.0.self_attn.q_proj"
  int64_t in = 0, out = 0;
  std::vector<float> w;    // [out][in]
  std::vector<float> bias; // [out] or empty
};

struct DenseDecoderLayer {
  // Norm weights as the model multiplies by them (norm_weight_offset added): before the attention,
  // before the MLP (Gemma-2: pre_feedforward_layernorm; others: post_attention_layernorm), and,
  // with sandwich norms only (empty otherwise), of the attention's and the MLP's outputs.
  std::vector<float> input_norm, mlp_norm, attention_output_norm, mlp_output_norm;
  // The tensors input_norm and mlp_norm were read from ("model.layers.0.input_layernorm.weight").
  std::string input_norm_tensor, mlp_norm_tensor;
  // q/k/v and gate/up as separate linears, or (Phi-3) as stored: qkv (rows q | k | v) and
  // gate_up (rows gate | up), the parts then left empty.
  DenseLinear q, k, v, qkv, o, gate, up, gate_up, down;
  bool fused_qkv() const { return !qkv.name.empty(); }
  bool fused_gate_up() const { return !gate_up.name.empty(); }
  // The linears that read the attention's normalized input ({qkv} or {q, k, v}), the MLP's.
  std::vector<DenseLinear*> attention_inputs();
  std::vector<DenseLinear*> mlp_inputs();
  // The linear that computes v, and its first row of v; the same for up.
  std::pair<DenseLinear*, int64_t> v_rows();
  std::pair<DenseLinear*, int64_t> up_rows();
};

// Throw qrt::Error naming the checkpoint and tensor when a linear or norm is missing or mis-sized.
DenseLinear load_dense_linear(const Checkpoint& ck, const std::string& name);
DenseDecoderLayer load_dense_decoder_layer(const Checkpoint& ck, int64_t layer);

// The whole float model: the embedding [vocab][hidden], the final norm (as multiplied), the head
// ([vocab][hidden]: lm_head.weight, else the tied embedding) and every layer.
struct DenseModel {
  std::vector<float> embed, final_norm, lm_head;
  std::vector<DenseDecoderLayer> layers;
  const float* head() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};
DenseModel load_dense_model(const Checkpoint& ck);
// The embedding [vocab][hidden] (throws naming the tensor when mis-sized).
std::vector<float> load_dense_embedding(const Checkpoint& ck);

// y[T][out] = x[T][in] W^T + bias (y is resized).
void apply_dense(const DenseLinear& l, const float* x, int64_t T, std::vector<float>& y, ThreadPool& pool);

// The rows of a step: `count` rows, count / per_sequence sequences of per_sequence consecutive
// positions from `start` (calibration: whole windows from 0; sampling: one row a sequence).
struct DenseRows {
  int64_t count = 0, per_sequence = 1, start = 0;
  int64_t sequence(int64_t row) const { return row / per_sequence; }
  int64_t position(int64_t row) const { return start + row % per_sequence; }
};

// One layer's keys and values, [sequence][KV head][position][head_dim] (sized by DenseBlock).
struct DenseKvCache {
  std::vector<float> k, v;
};

// Called with a group of linears that read the same rows, before they run: a calibrator measures
// the rows there and replaces the linears' weights by their quantized values.
using DenseLinearInputs = std::function<void(const std::vector<DenseLinear*>& linears, const std::vector<float>& x)>;

class DenseBlock {
 public:
  // For up to `sequences` sequences of up to `positions` positions each. The RoPE tables are built
  // for that context: longrope picks its factor set by it, as an engine does by the positions it
  // holds per sequence.
  DenseBlock(const ModelConfig& config, int64_t positions, int64_t sequences, ThreadPool& pool);
  const model::ModelDims& dims() const { return d_; }

  // x [n][hidden] = the embedding rows of ids, times the model's embedding scale.
  void embed(const std::vector<float>& table, const int32_t* ids, int64_t n, std::vector<float>& x) const;
  // y = rmsnorm(x) * weight, rows of hidden (y is resized).
  void norm(const std::vector<float>& x, const std::vector<float>& weight, std::vector<float>& y) const;
  // q/k/v of xn, RoPE at the rows' positions, k and v into `cache`, and causal attention over the
  // cache within the layer's window (scale, soft-capping) into attn [rows][heads * head_dim].
  void attention(int64_t layer, const DenseDecoderLayer& d, const std::vector<float>& xn, const DenseRows& rows,
                 DenseKvCache& cache, std::vector<float>& attn);
  // x += linear(in), normalized by out_norm first where the block has sandwich norms.
  void add_output(const DenseLinear& linear, const std::vector<float>& in, const std::vector<float>& out_norm,
                  std::vector<float>& x);
  // act [rows][intermediate] = activation(gate(xn)) * up(xn): SiLU, or GELU's tanh form.
  void mlp_hidden(const DenseDecoderLayer& d, const std::vector<float>& xn, std::vector<float>& act);
  // The whole layer over the residual stream x, in the engine's order; `inputs` (when set) sees
  // each group of linears with its input rows before the group runs.
  void layer(int64_t index, DenseDecoderLayer& d, std::vector<float>& x, const DenseRows& rows, DenseKvCache& cache,
             const DenseLinearInputs& inputs = {});
  // logits [rows][vocab] of `ids` laid out as `rows` through every layer of `m`, the final norm,
  // the head and the final soft-capping; caches: one per layer (sizes kept across calls).
  void forward(DenseModel& m, const int32_t* ids, const DenseRows& rows, std::vector<DenseKvCache>& caches,
               std::vector<float>& logits);

 private:
  model::ModelDims d_;
  int64_t positions_, sequences_;
  ThreadPool& pool_;
  ops::RopeTable rope_;
  std::vector<std::vector<float>> scores_;  // per pool slot
  std::vector<float> x_, xn_, q_, k_, v_, attn_, act_, up_, tmp_;
};

}  // namespace qrt
