// The block ops on a CUDA GPU (see block_ops.h; internal CUDA header). Activations fp16, the
// residual stream and norms float32, a KV cache [layer][kv_head][position][head_dim] of fp16
// (or fp8 e4m3 with EngineOptions::kv_dtype Fp8E4M3);
// quantized linears through QuantLinear with CUDA backends, dense ones (and a dense or tied head)
// through cuBLAS with fp16 weights. Every op is a launch on one stream; positions and tokens live
// in device memory, so a decode step is captured once into a CUDA graph and replayed (and, for
// generate(), together with on-device sampling).
//
// The fused ops of a decode step (up to 8 rows): the embedding with the first norm and the final
// norm + dense head + greedy choice, each one launch where the shapes allow (kernels.h says
// which); and, where a projection runs on a kernel that takes them over (cuda_gemv), the norms and
// SiLU x up in the projections' prologues and the residual adds in their epilogues (the Llama
// block's: not with Gemma-2's GeGLU or sandwich norms, whose ops are issued unfused).
// QRT_CUDA_FUSED_DECODE=0 in the environment runs the unfused kernels instead (A/B);
// QRT_CUDA_FUSED_ATTENTION=1 runs RoPE + KV store + attention in one launch from position 0 (by
// default from position 1536 on), =0 never. Before that position a step runs the short-context
// kernel (RoPE + KV store + attention of one head in one block, rope_store_short_attention);
// QRT_CUDA_SHORT_ATTENTION=0 runs the pair it replaces (rope_store + attention) instead.
//
// The batched engine (ModelDims::kv_blocks > 0): the KV cache is a pool of blocks of 16 positions
// ([layer][kv_head][block][16][head_dim]); each step uploads its rows' positions and their
// sequences' block tables, and RoPE + KV store and attention run the paged kernels (paged_kv.cu)
// over them. Every other op is row by row and runs as in the single-sequence engine (the fused
// decode ops included); no step is captured in a graph. The single-sequence path is unchanged.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gpu/runtime.h"
#include "model/block_ops.h"
#include "model/cuda/cuda_engine.h"
#include "model/cuda/kernels.h"

namespace qrt::model {

class CudaOps final : public BlockOps {
 public:
  explicit CudaOps(const EngineOptions& options);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  std::string device_name() const override { return options_.device.describe(); }
  // The rules beyond the Llama block but partial rotary: longrope lives in the RoPE tables, which
  // the GPU reads as the CPU does; Gemma-2's are kernel arguments and the ops below.
  std::vector<std::string> missing_rules(const ModelDims& dims) const override;
  void on_device(const std::function<void()>& fn) override;
  void reserve(const ModelDims& dims) override;
  void set_rope(const ops::RopeTable& rope) override;
  void upload_embedding(const std::vector<float>& table, bool tied_head) override;
  int upload_matrix(const LinearWeight& w, bool head) override;
  int upload_vector(const std::string& name, const std::vector<float>& v) override;
  void allocate(bool fused, bool quantized_head) override;
  std::string decode_attention_plan() const override;
  void warm_up(const std::vector<int64_t>& rows, const std::function<void(int64_t m)>& run) override;

  void stage(const StepRows& rows, float* logits, int64_t logit_rows) override;
  bool picks_greedy_token() const override { return true; }
  void stage_greedy(const StepRows& rows, int32_t* token) override;
  void embed(int64_t m) override;
  void embed_rmsnorm(int norm, int64_t m) override;
  void add_rmsnorm(bool add_proj, int norm, int64_t row0, int64_t rows) override;
  void linear(ModelLinear& l, View in, View out, int64_t m) override;
  void rope_store_kv(int64_t layer, View q, View k, View v, int64_t m) override;
  void attention(int64_t layer, View q, View out, int64_t m) override;
  void rope_store_attention(int64_t layer, View q, View k, View v, View out, int64_t m) override;
  void silu_mul(View gate, View up, View out, int64_t m) override;
  void gelu_tanh_mul(View gate, View up, View out, int64_t m) override;
  void rmsnorm_proj(int norm, int64_t m) override;
  void head(ModelLinear& head, int64_t row0, int64_t rows) override;
  void norm_head(bool add_proj, int norm, ModelLinear& head, int64_t row0, int64_t rows) override;
  void gather_rows(const int64_t* rows, int64_t n) override;
  void end_step() override { issue_held(); }
  void decode_step(const std::function<void()>& launches) override;
  void finish() override;

  // Decode steps replay a captured graph (the default) or launch eagerly (for the tests that
  // compare the two).
  void use_graphs(bool on) { use_graphs_ = on; }
  // The nodes of the captured decode step at position 0 (whose attention variant the position
  // picks), by op (CudaForwardEngine::decode_step_launches).
  CudaForwardEngine::StepLaunches step_launches(const std::function<void()>& launches);
  // CudaForwardEngine::generate_on_device, `launches` being one decode step (run_step(1, 0, 1)).
  std::vector<int32_t> generate(const std::function<void()>& launches, int32_t last_token, int64_t pos, int64_t steps,
                                const DeviceSampling& sampling);
  double last_generate_seconds() const { return last_generate_s_; }
  // CudaForwardEngine::profile_decode_step: `launches` is one decode step; q, k, v, gate, up are
  // block 0's views and norm0 its input norm (the kernels timed alone run with block 0's arguments).
  std::vector<CudaForwardEngine::OpTime> profile(const std::function<void()>& launches, int32_t token, int64_t pos,
                                                 View q, View k, View v, View gate, View up, int norm0);

 private:
  struct Dense {
    cuda::DeviceBuffer w;     // fp16 [n][k]
    cuda::DeviceBuffer bias;  // float [n] or empty
  };
  __half* ptr(View v) const;
  __half* buffer(Buffer b) const;
  // Launches a linear's kernel (no profiling mark).
  void run_linear(ModelLinear& l, const __half* x, int64_t m, __half* y);
  // One capture of `launches` (with `tail` after them, inside the capture) into an executable graph.
  cudaGraphExec_t capture(const std::function<void()>& launches, const std::function<void()>& tail);
  // The KV cache of `layer`.
  cuda_model::KvCache layer_cache(int64_t layer) const;
  // The batched engine's step (stage() when paged_): checks and uploads the rows' positions and
  // their sequences' block tables.
  void stage_paged(const StepRows& rows);
  cuda_model::PagedRows paged_rows() const;
  // The step's head writes the greedy token (d_argmax_, or on-device generation's feedback).
  void greedy_choice(int64_t rows);
  // The decode step's held ops (fused decode, M <= 8, kernels that fuse: cuda_gemv). A linear
  // into Proj is held until the next op shows whether its output only joins the residual stream
  // (then its kernel adds it there); a norm until its readers are known (each projection that reads
  // it builds it in its own prologue); SiLU x up until the down projection (its prologue). Every
  // other op issues what is held first, unfused, so the order of effects never changes.
  struct HeldLinear {
    ModelLinear* l = nullptr;
    View in;
    int64_t m = 0;
    bool silu = false;  // its input is silu(gate) * up, built in its prologue
    View gate, up;
  };
  struct HeldNorm {
    int norm = -1;
    int64_t m = 0;
    bool built_by_reader = false;  // a projection built it in its prologue
    bool sumsq = false;            // the producer's epilogue left the rows' partial sums of squares in sumsq_
  };
  struct HeldSilu {
    View gate, up, out;
    int64_t m = 0;
  };
  bool holds_ops(int64_t m) const { return fused_projections_ && m >= 1 && m <= 8; }
  bool fuses(const ModelLinear& l, const LinearFusion& f, int64_t m) const;
  LinearFusion silu_fusion(View gate, View up) const;
  // Whether this step's attention variant runs RoPE + KV store + attention as one kernel: the
  // short-context one before fused_attention_from_, the split one from it.
  bool one_kernel_attention() const;
  // Launches that kernel for layer `layer`'s m rows (the step's and the profile's one launcher).
  void launch_one_kernel_attention(int64_t layer, View q, View k, View v, __half* out, int64_t m);
  // The held linear's fusion: SiLU x up in its prologue when it holds one, the residual add when asked.
  LinearFusion held_fusion(bool into_residual) const;
  // Issues the held linear (adding into the residual stream when `into_residual`), then forgets it.
  void issue_held_linear(bool into_residual);
  // Issues the held linear, adding its output into the residual stream when `add` asks for it and
  // its kernel can for `rows` rows; true when it did (the Proj rows then need no add).
  bool issue_held_linear_adding(bool add, int64_t rows);
  // Issues the held norm: its kernel, unless projections built it and `needed` is false.
  void issue_held_norm(bool needed);
  void issue_held_silu();
  // In the order they were called: the norm, SiLU x up, then the linear.
  void issue_held() {
    issue_held_norm(false);
    issue_held_silu();
    issue_held_linear(false);
  }
  void run_fused(ModelLinear& l, const LinearFusion& f, View in, View out, int64_t m);
  HeldLinear held_linear_;
  HeldNorm held_norm_;
  HeldSilu held_silu_;

  // Profiling (profile()): an event after each op while marks_ is set; while a step is captured
  // for step_launches(), the graph nodes each op added. A no-op otherwise.
  void mark(const char* op);

  EngineOptions options_;
  int device_ = 0;
  cuda::DeviceContext* ctx_ = nullptr;
  cudaStream_t stream_ = nullptr;
  ModelDims d_;
  std::vector<Dense> dense_;
  std::vector<cuda::DeviceBuffer> vectors_;
  cuda::DeviceBuffer embed_, cos_, sin_, kcache_, vcache_;
  cuda::DeviceBuffer x_, xn_, q_, k_, v_, attn_, tmp_, gate_, up_, logits_, logits_half_;
  cuda::DeviceBuffer qkv_, gate_up_;  // outputs of the fused projections (when any block fuses)
  cuda::DeviceBuffer d_tokens_, d_pos_, d_step_, d_out_tokens_, d_sampling_;
  cuda::DeviceBuffer attn_partials_, attn_counters_;
  cuda::DeviceBuffer d_argmax_, head_values_, head_indices_, head_counter_;
  cuda_model::DecodeAttentionScratch attn_scratch_;
  cuda_model::HeadArgmaxScratch head_scratch_;
  int sms_ = 1;
  cuda_model::KvElem kv_elem_ = cuda_model::KvElem::F16;  // EngineOptions::kv_dtype (fp8 or fp16)
  bool fused_decode_ = true;     // QRT_CUDA_FUSED_DECODE != 0
  bool fused_projections_ = true;  // fused_decode_ and QRT_CUDA_FUSED_PROJECTIONS (reserve())
  bool fused_norm_prologue_ = true;  // fused_projections_ and the width, or QRT_CUDA_FUSED_PROJECTIONS=1
  // QRT_CUDA_FUSED_PROJECTIONS=sumsq: as =1, and the projection that adds into the residual leaves
  // each row's sums of squares over 16 columns in sumsq_ for the norm the next projection builds
  // (K / 16 partials a row to sum instead of the K-wide row; opt-in until timed on a wide model).
  bool norm_sumsq_ = false;
  cuda::DeviceBuffer sumsq_;
  static constexpr int64_t kMaxFusedProjectionHidden = 2048;  // wider: norms, SiLU x up, adds unfused (reserve())
  static constexpr int64_t kNever = INT64_MAX;
  // Default position of the switch from the short-context attention kernel to the split fused
  // one (docs/PERFORMANCE.md, "The GPU decode step"): SmolLM2 on the H100 decoded 12 % faster
  // with the short kernel after 1024 tokens and 1.5 % slower after 1536.
  static constexpr int64_t kFusedAttentionFrom = 1536;
  int64_t fused_attention_from_ = kNever;  // decode positions from which the long-context variant runs
  bool fused_attention_ = false;  // this step's variant, true from that position (the graph captured or launched)
  bool short_attention_ = false;  // before fused_attention_from_: the short-context kernel (else the pair)
  bool split_attention_ = false;  // from it: the split fused kernel (else the pair)
  bool fused_head_ = false;       // a dense fp16 head the fused norm + head + argmax reads
  bool use_graphs_ = true;
  // The batched engine's paged KV pool (d_.kv_blocks > 0): cache_positions_ = kv_blocks * 16
  // (else the single sequence's capacity). d_paged_ and h_paged_ (pinned) hold one step's rows:
  // positions int64 [max_rows], table offsets int32 [max_rows], then the flattened block tables
  // int32 [table_entries_] (each sequence of the step once, its blocks up to its last row's).
  bool paged_ = false;
  int64_t cache_positions_ = 0;
  int64_t table_entries_ = 0;
  cuda::DeviceBuffer d_paged_, paged_partials_, paged_counters_;
  char* h_paged_ = nullptr;
  int64_t longest_context_ = 1;  // the staged rows' largest position + 1 (the attention's splits)
  cuda_model::PagedAttentionScratch paged_scratch_;
  std::vector<int32_t> seq_entries_, seq_offset_;  // per sequence of the step (stage_paged)
  bool head_advances_ = false;    // set while the greedy generation graph is captured
  std::vector<std::pair<const char*, cudaEvent_t>>* marks_ = nullptr;
  std::vector<std::pair<std::string, int>>* node_counts_ = nullptr;
  size_t nodes_seen_ = 0;
  int32_t* h_tokens_ = nullptr;  // pinned staging
  int64_t* h_pos_ = nullptr;
  float* h_logits_ = nullptr;
  int32_t* h_token_ = nullptr;
  float* logits_dst_ = nullptr;  // the staged step's destination on the host
  int64_t logit_rows_ = 0;
  int32_t* token_dst_ = nullptr;  // stage_greedy's
  // Each graph once per attention variant ([1]: the fused RoPE + KV store + attention).
  cudaGraphExec_t step_graph_[2] = {};    // one decode step -> logits_[0] and d_argmax_
  cudaGraphExec_t greedy_graph_[2] = {};  // one decode step whose head feeds its greedy token back
  cudaGraphExec_t sample_graph_[2] = {};  // one decode step + sampling + position advance
  double last_generate_s_ = 0;
};

}  // namespace qrt::model
