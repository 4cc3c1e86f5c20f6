// The Llama-family model, written once over a device's block ops (block_ops.h): embedding ->
// N x [RMSNorm, GQA attention with RoPE, RMSNorm, SwiGLU MLP] -> RMSNorm -> head. Mistral, Qwen2
// and Phi-3 are that block (Phi-3 with q/k/v and gate/up stored fused); Gemma-2 adds a scaled
// embedding, norms of both branches' outputs, GeGLU, its own attention scale, soft-capped attention
// scores and logits, and a window on alternating layers (ModelDims). The model owns
// the rules every device shares: weight and length checks, the plan of every quantized linear
// (engine_plan), the fused q/k/v and gate/up projections the plan asks for, the attention window,
// the RoPE tables, the prefill chunking, the argument checks of forward(), and what the engine
// reports (plans, kernels, backend counts). Internal to src/model.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/block_ops.h"
#include "model/fused_projections.h"
#include "qrt/model.h"

namespace qrt::model {

class LlamaModel {
 public:
  // Checks the weights and lengths, plans, uploads the weights through `ops` and prepares every
  // linear (QuantLinear, with fallback). `ops` outlives the model.
  LlamaModel(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options, BlockOps& ops);

  const ModelConfig& config() const { return w_->config; }
  const ModelDims& dims() const { return dims_; }
  // ForwardEngine::forward: prefill in chunks of dims().prefill_rows rows; a one-row step whose
  // logits are wanted goes through BlockOps::decode_step.
  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits);
  // ForwardEngine::forward_greedy: the same steps, the last one's head asked for the greedy token
  // (on the device where BlockOps::picks_greedy_token(), else from the logits on the host).
  int32_t forward_greedy(const int32_t* tokens, int64_t n, int64_t pos);
  // Throws qrt::Error (InvalidInput) when n < 1, pos < 0, pos + n > capacity or a token is outside
  // the vocabulary.
  void check_args(const int32_t* tokens, int64_t n, int64_t pos) const;
  // BatchEngine::step (dims().kv_blocks > 0): rows of many sequences over the paged KV pool, then
  // the final norm and the head of the wanted rows. check_step throws what BatchEngine documents.
  void step(const BatchStep& step, float* logits);
  void check_step(const BatchStep& step) const;
  // The launches of the staged rows: the embedding, every block, and when head_rows > 0 the final
  // norm and the head of rows [head_row0, head_row0 + head_rows).
  void run_step(int64_t m, int64_t head_row0, int64_t head_rows);

  // Where block `layer` reads and writes (for profilers that time one op alone).
  struct Views {
    View q, k, v, gate, up;
  };
  Views views(size_t layer) const;
  int input_norm(size_t layer) const { return blocks_[layer].input_norm; }

  const std::vector<LinearPlan>& plans() const { return plan_->layers; }
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const;
  std::map<std::string, int> backend_counts() const;

 private:
  struct Block {
    ModelLinear q, k, v, qkv, o, gate, up, gate_up, down;
    int input_norm = -1, post_norm = -1;
    int pre_ff_norm = -1, post_ff_norm = -1;  // Gemma-2 (ModelDims::sandwich_norms)
  };
  PrepareContext prepare_context() const;
  // Logs where the blocks' build time went (blocks_s): each backend's prepare, summed.
  void log_prepare_times(double blocks_s) const;
  ModelLinear make_linear(const LinearWeight& w, const char* op, bool head = false);
  // The fused linear of a group, or an empty one with the reason in *why.
  ModelLinear make_fused(const ProjectionGroup& dropped_or_held, const char* op, std::string* why);
  void run_block(size_t layer, int64_t m);
  // forward() after its checks: logits as forward() writes them, or with `token` the greedy
  // choice of the last row (logits null).
  void run_chunks(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits, int32_t* token);
  // Every linear, in model order (a block's fused linear before its parts), then the head.
  std::vector<const ModelLinear*> linears() const;

  std::shared_ptr<const ModelWeights> w_;
  EngineOptions options_;
  BlockOps& ops_;
  ModelDims dims_;
  ops::RopeTable rope_;
  std::shared_ptr<const ModelPlan> plan_;
  std::vector<Block> blocks_;
  ModelLinear head_;  // dense < 0 and not quantized: the tied embedding
  int final_norm_ = -1;
  std::vector<int64_t> positions_;  // of the staged rows
  std::vector<float> greedy_logits_;  // forward_greedy on a device that does not pick tokens
};

// A ForwardEngine: a LlamaModel over one device's ops. Base is ForwardEngine or an extension of
// it (CudaForwardEngine); Ops is constructed from the EngineOptions before the model.
template <class Base, class Ops>
class LlamaEngine : public Base {
 public:
  LlamaEngine(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options)
      : ops_(options), model_(std::move(weights), options, ops_) {}
  const ModelConfig& config() const override { return model_.config(); }
  int64_t capacity() const override { return model_.dims().capacity; }
  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) override {
    model_.forward(tokens, n, pos, logits, all_logits);
  }
  int32_t forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) override {
    return model_.forward_greedy(tokens, n, pos);
  }
  const std::vector<LinearPlan>& plans() const override { return model_.plans(); }
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const override { return model_.kernels(); }
  std::map<std::string, int> backend_counts() const override { return model_.backend_counts(); }
  std::string device_name() const override { return ops_.device_name(); }

 protected:
  Ops ops_;
  LlamaModel model_;
};

// A BatchEngine: a LlamaModel with a paged KV pool over one device's ops.
template <class Ops>
class LlamaBatchEngine : public BatchEngine {
 public:
  LlamaBatchEngine(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options)
      : ops_(options), model_(std::move(weights), options, ops_) {}
  const ModelConfig& config() const override { return model_.config(); }
  int64_t kv_blocks() const override { return model_.dims().kv_blocks; }
  int64_t max_rows() const override { return model_.dims().max_rows; }
  int64_t max_positions() const override { return model_.dims().capacity; }
  int64_t prefill_chunk() const override { return model_.dims().prefill_rows; }
  void step(const BatchStep& step, float* logits) override { model_.step(step, logits); }
  const std::vector<LinearPlan>& plans() const override { return model_.plans(); }
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const override { return model_.kernels(); }
  std::map<std::string, int> backend_counts() const override { return model_.backend_counts(); }
  std::string device_name() const override { return ops_.device_name(); }

 private:
  Ops ops_;
  LlamaModel model_;
};

}  // namespace qrt::model
