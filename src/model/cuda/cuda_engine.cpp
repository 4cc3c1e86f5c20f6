// The GPU forward engine (see cuda_engine.h). Buffers, KV cache and kernels are all set up here;
// forward() launches on one stream and synchronises once, when the logits are copied back.
#include "model/cuda/cuda_engine.h"

#include <cuda_fp16.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "backends/cuda/cuda_runtime.h"
#include "backends/cuda/packed_weight.h"
#include "model/cuda/cuda_model_kernels.h"
#include "model/engine_plan.h"
#include "model/fused_projections.h"
#include "model/ops.h"
#include "qrt/dtype.h"
#include "qrt/error.h"

namespace qrt {
namespace {

using cuda::DeviceBuffer;

std::vector<uint16_t> to_half_bits(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_fp16(v[i]);
  return out;
}

// A linear on the GPU: a planned QuantLinear or a dense fp16 matrix through cuBLAS.
struct GpuLinear {
  int64_t k = 0, n = 0;  // in, out features
  std::unique_ptr<QuantLinear> q;
  DeviceBuffer dense;  // fp16 [out][in]
  DeviceBuffer bias;   // float [out]
};

struct GpuLayer {
  GpuLinear q, k, v, o, gate, up, down;
  GpuLinear qkv, gate_up;  // fused projections (fused_projections.h); then q/k/v, gate/up are empty
  DeviceBuffer input_norm, post_norm;  // float [hidden]
};

class CudaEngine final : public CudaForwardEngine {
 public:
  CudaEngine(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options);
  ~CudaEngine() override;

  const ModelConfig& config() const override { return w_->config; }
  int64_t capacity() const override { return capacity_; }
  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) override;
  const std::vector<LinearPlan>& plans() const override { return plan_->layers; }
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const override;
  std::map<std::string, int> backend_counts() const override;
  std::string device_name() const override { return opt_.device.describe(); }
  std::vector<int32_t> generate_on_device(int32_t last_token, int64_t pos, int64_t steps,
                                          const DeviceSampling& sampling) override;
  double last_generate_seconds() const override { return last_generate_s_; }
  std::vector<OpTime> profile_decode_step(int32_t token, int64_t pos) override;

 private:
  GpuLinear make_linear(const LinearWeight& lw, const std::function<void(const std::string&)>& log);
  // The fused linear of `group`, or an empty one (with the reason in *why) when it cannot be fused
  // or its fused shape has no plan here.
  GpuLinear make_fused(const ProjectionGroup& group, const std::function<void(const std::string&)>& log,
                       std::string* why);
  void run_linear(GpuLinear& l, const __half* x, int64_t m, __half* y);
  // Where a block's projection outputs live: the fused projections' buffers interleave q | k | v
  // (gate | up) in each row; the separate ones have a buffer each.
  struct ProjectionOutputs {
    __half *q, *k, *v;
    int64_t q_stride, kv_stride;
    __half *gate, *up;
    int64_t mlp_stride;
  };
  ProjectionOutputs projection_outputs(bool qkv_fused, bool gate_up_fused);
  // The whole forward of m rows already in d_tokens_ at positions *d_pos_ + i; leaves the final
  // residual in x_. Launch-only (graph-capturable).
  void run_layers(int64_t m);
  // Final norm of rows [row0, row0 + rows) and the head GEMM into logits_ (float32 [rows][vocab]).
  void run_head(int64_t row0, int64_t rows);
  void capture_graphs();
  void check_args(const int32_t* tokens, int64_t n, int64_t pos) const;
  // Profiling (profile_decode_step): an event after each op while marks_ is set; a no-op otherwise.
  void mark(const char* op);

  std::shared_ptr<const ModelWeights> w_;
  EngineOptions opt_;
  int device_ = 0;
  cuda::DeviceContext* ctx_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<const ModelPlan> plan_;
  std::vector<GpuLayer> layers_;
  GpuLinear lm_head_;
  bool head_is_embedding_ = false;
  DeviceBuffer embed_, final_norm_, cos_, sin_, kcache_, vcache_;
  DeviceBuffer x_, xn_, q_, k_, v_, attn_, tmp_, gate_, up_, logits_, logits_half_;
  DeviceBuffer qkv_, gate_up_;  // outputs of the fused projections (when any block fuses)
  DeviceBuffer d_tokens_, d_pos_, d_step_, d_out_tokens_, d_sampling_;
  DeviceBuffer attn_partials_, attn_counters_;
  cuda_model::DecodeAttentionScratch attn_scratch_;
  std::vector<std::pair<const char*, cudaEvent_t>>* marks_ = nullptr;
  int32_t* h_tokens_ = nullptr;  // pinned staging
  int64_t* h_pos_ = nullptr;
  float* h_logits_ = nullptr;
  int64_t hidden_ = 0, q_dim_ = 0, kv_dim_ = 0, inter_ = 0, vocab_ = 0, head_dim_ = 0, n_heads_ = 0, n_kv_ = 0;
  int64_t window_ = 0, capacity_ = 0, batch_ = 0, max_gen_ = 0;
  float eps_ = 1e-5f;
  cudaGraphExec_t step_graph_ = nullptr;    // one decode step -> logits_[0]
  cudaGraphExec_t decode_graph_ = nullptr;  // one decode step + sampling + position advance
  double last_generate_s_ = 0;
};

CudaEngine::CudaEngine(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options)
    : w_(std::move(weights)), opt_(options) {
  if (!w_) throw internal_error("make_cuda_engine: no weights");
  if (options.device.kind != DeviceKind::Cuda) throw internal_error("make_cuda_engine: device is " + options.device.id);
  w_->validate();
  const ModelConfig& c = w_->config;
  device_ = options.device.gpu.index;
  cuda::DeviceGuard guard(device_);
  ctx_ = &cuda::DeviceContext::get(device_);
  hidden_ = c.hidden_size;
  n_heads_ = c.num_heads;
  n_kv_ = c.num_kv_heads;
  head_dim_ = c.head_dim;
  q_dim_ = n_heads_ * head_dim_;
  kv_dim_ = n_kv_ * head_dim_;
  inter_ = c.intermediate_size;
  vocab_ = c.vocab_size;
  eps_ = static_cast<float>(c.rms_norm_eps);
  window_ = attention_window(c);
  if (head_dim_ > 256 || head_dim_ % 2)
    throw unsupported(fmt::format("head_dim {} unsupported by the CUDA engine (even, <= 256)", head_dim_));
  options.validate_lengths();
  capacity_ = options.max_context();
  batch_ = std::clamp<int64_t>(options.prefill_batch, 1, options.runtime.max_input_length);
  max_gen_ = std::max<int64_t>(1, capacity_);

  // Size checks first, so an absurd max_input_length is one clear error before any upload.
  const double kv_bytes = 2.0 * static_cast<double>(c.num_layers) * n_kv_ * static_cast<double>(capacity_) * head_dim_ * 2;
  const double free_guess = static_cast<double>(ctx_->props().totalGlobalMem);
  if (kv_bytes > free_guess)
    throw Error(ErrorKind::OutOfMemory,
                fmt::format("KV cache of {} positions x {} layers needs {:.1f} GiB, more than the {:.1f} GiB of {}; "
                            "lower --max-input-length or -n",
                            capacity_, c.num_layers, kv_bytes / 1073741824.0, free_guess / 1073741824.0,
                            options.device.id));
  QRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  cuda::set_max_rows(batch_);

  // Plans and kernels of the quantized linears (QuantLinear applies the plan's fallback list).
  auto log = options.log ? options.log : [](const std::string&) {};
  plan_ = engine_plan(*w_, options, log);
  const std::vector<ProjectionGroup> groups = projection_groups(*w_);
  int fused_groups = 0;
  std::string not_fused;  // the first reason a group was left unfused, for the log
  // A group runs fused when it can; otherwise each of its parts gets its own linear.
  auto fuse_or_split = [&](const ProjectionGroup& group, GpuLinear& fused, std::vector<GpuLinear*> parts) {
    std::string why;
    fused = make_fused(group, log, &why);
    if (fused.n) {
      ++fused_groups;
      return;
    }
    if (not_fused.empty()) not_fused = why;
    for (size_t i = 0; i < parts.size(); ++i) *parts[i] = make_linear(*group.parts[i], log);
  };
  for (size_t li = 0; li < w_->layers.size(); ++li) {
    const auto& lw = w_->layers[li];
    GpuLayer l;
    fuse_or_split(groups[2 * li], l.qkv, {&l.q, &l.k, &l.v});
    l.o = make_linear(lw.o_proj, log);
    fuse_or_split(groups[2 * li + 1], l.gate_up, {&l.gate, &l.up});
    l.down = make_linear(lw.down_proj, log);
    l.input_norm = DeviceBuffer::upload(lw.input_norm, "input_layernorm");
    l.post_norm = DeviceBuffer::upload(lw.post_attention_norm, "post_attention_layernorm");
    layers_.push_back(std::move(l));
  }
  if (fused_groups)
    log(fmt::format("fused projections: {} of {} q/k/v and gate/up groups run as one GEMM each{}", fused_groups,
                    groups.size(), not_fused.empty() ? "" : " (not fused: " + not_fused + ")"));
  else if (!groups.empty() && !not_fused.empty())
    log("fused projections: none (" + not_fused + ")");
  embed_ = DeviceBuffer::upload(to_half_bits(w_->embed_tokens), "embed_tokens (fp16)");
  final_norm_ = DeviceBuffer::upload(w_->final_norm, "model.norm");
  head_is_embedding_ = w_->lm_head_uses_embedding();
  if (!head_is_embedding_) lm_head_ = make_linear(w_->lm_head, log);

  ops::RopeTable rope;
  rope.build(ops::rope_inv_freq(c), capacity_);
  cos_ = DeviceBuffer::upload(rope.cos, "rope cos");
  sin_ = DeviceBuffer::upload(rope.sin, "rope sin");

  const size_t layer_kv = static_cast<size_t>(n_kv_ * capacity_ * head_dim_);
  kcache_ = DeviceBuffer(layer_kv * layers_.size() * 2, "KV cache (keys)");
  vcache_ = DeviceBuffer(layer_kv * layers_.size() * 2, "KV cache (values)");
  const size_t b = static_cast<size_t>(batch_);
  x_ = DeviceBuffer(b * hidden_ * 4, "residual stream");
  xn_ = DeviceBuffer(b * std::max(hidden_, q_dim_) * 2, "normed activations");
  q_ = DeviceBuffer(b * q_dim_ * 2, "q");
  k_ = DeviceBuffer(b * kv_dim_ * 2, "k");
  v_ = DeviceBuffer(b * kv_dim_ * 2, "v");
  attn_ = DeviceBuffer(b * q_dim_ * 2, "attention output");
  tmp_ = DeviceBuffer(b * hidden_ * 2, "projection output");
  gate_ = DeviceBuffer(b * inter_ * 2, "gate");
  up_ = DeviceBuffer(b * inter_ * 2, "up");
  if (fused_groups) {
    qkv_ = DeviceBuffer(b * (q_dim_ + 2 * kv_dim_) * 2, "fused q/k/v output");
    gate_up_ = DeviceBuffer(b * 2 * inter_ * 2, "fused gate/up output");
  }
  logits_ = DeviceBuffer(b * vocab_ * 4, "logits");
  if (!head_is_embedding_ && lm_head_.q) logits_half_ = DeviceBuffer(b * vocab_ * 2, "logits (fp16)");
  d_tokens_ = DeviceBuffer(b * 4, "tokens");
  d_pos_ = DeviceBuffer(8, "position");
  d_step_ = DeviceBuffer(8, "step");
  d_out_tokens_ = DeviceBuffer(static_cast<size_t>(max_gen_) * 4, "generated tokens");
  d_sampling_ = DeviceBuffer(sizeof(cuda_model::SamplingState), "sampling state");
  // Split-KV attention for up to 8 query rows (decode); the counters reset themselves.
  attn_scratch_.splits = cuda_model::decode_attention_splits(ctx_->props().multiProcessorCount, n_heads_);
  attn_scratch_.max_rows = std::min<int64_t>(8, batch_);
  attn_partials_ = DeviceBuffer(cuda_model::decode_attention_partial_floats(attn_scratch_.max_rows, n_heads_,
                                                                            attn_scratch_.splits, head_dim_) * 4,
                                "decode attention partials");
  attn_counters_ = DeviceBuffer(static_cast<size_t>(attn_scratch_.max_rows * n_heads_) * 4, "decode attention counters");
  QRT_CUDA_CHECK(cudaMemset(attn_counters_.get(), 0, attn_counters_.bytes()));
  attn_scratch_.partials = attn_partials_.as<float>();
  attn_scratch_.counters = attn_counters_.as<int>();
  QRT_CUDA_CHECK(cudaMallocHost(&h_tokens_, b * 4));
  QRT_CUDA_CHECK(cudaMallocHost(&h_pos_, 16));
  QRT_CUDA_CHECK(cudaMallocHost(&h_logits_, b * vocab_ * 4));
  ctx_->cublas();
  // Every M range of every quantized layer (GEMV <= 8 < Marlin <= 128 < dequant) runs once here,
  // eagerly on token 0 at position 0: a kernel that fails on its first run falls back now
  // (QuantLinear's first-run probe), never inside a CUDA graph capture. Position 0 of the KV
  // cache is rewritten by the first real prefill.
  QRT_CUDA_CHECK(cudaMemsetAsync(d_tokens_.get(), 0, b * 4, stream_));
  QRT_CUDA_CHECK(cudaMemsetAsync(d_pos_.get(), 0, 8, stream_));
  for (int64_t m : {int64_t(1), int64_t(9), int64_t(129), batch_}) {
    if (m > batch_ || m > capacity_) continue;
    run_layers(m);
    run_head(0, m);
  }
  QRT_CUDA_CHECK(cudaDeviceSynchronize());
}

CudaEngine::~CudaEngine() {
  if (step_graph_) cudaGraphExecDestroy(step_graph_);
  if (decode_graph_) cudaGraphExecDestroy(decode_graph_);
  if (h_tokens_) cudaFreeHost(h_tokens_);
  if (h_pos_) cudaFreeHost(h_pos_);
  if (h_logits_) cudaFreeHost(h_logits_);
  if (stream_) cudaStreamDestroy(stream_);
}

GpuLinear CudaEngine::make_fused(const ProjectionGroup& group, const std::function<void(const std::string&)>& log,
                                 std::string* why) {
  GpuLinear l;
  *why = fusion_obstacle(group, opt_.runtime);
  if (!why->empty()) return l;
  const LinearPlan* plan = plan_->find(group.name);
  if (!plan) {
    *why = group.name + ": not in the plan";
    return l;
  }
  if (!plan->ok()) {
    *why = group.name + ": " + plan->error;
    return l;
  }
  std::shared_ptr<const QuantizedWeight> fused = fuse_weights(group);
  l.k = fused->K();
  l.n = fused->N();
  l.q = QuantLinear::build(std::move(fused), *plan, opt_.device, log);
  return l;
}

GpuLinear CudaEngine::make_linear(const LinearWeight& lw, const std::function<void(const std::string&)>& log) {
  GpuLinear l;
  l.k = lw.in_features;
  l.n = lw.out_features;
  if (lw.is_quantized()) {
    l.q = QuantLinear::build(*lw.quantized, *plan_->find(lw.quantized->spec.name), opt_.device, log);
  } else {
    l.dense = DeviceBuffer::upload(to_half_bits(lw.dense), lw.name + " (fp16)");
    if (!lw.bias.empty()) l.bias = DeviceBuffer::upload(lw.bias, lw.name + " bias");
  }
  return l;
}

void CudaEngine::run_linear(GpuLinear& l, const __half* x, int64_t m, __half* y) {
  const int64_t k = l.k, n = l.n;
  if (l.q) {
    ActTensor xt{const_cast<__half*>(x), DType::F16, m, k, DeviceKind::Cuda};
    ActTensor yt{y, DType::F16, m, n, DeviceKind::Cuda};
    ExecContext ec;
    ec.cuda_stream = stream_;
    l.q->forward(xt, yt, ec);
    return;
  }
  cuda::gemm_xwt(ctx_->cublas(), x, l.dense.get(), k, y, n, m, n, k, DType::F16, stream_);
  if (l.bias) cuda::launch_add_bias(l.bias.as<float>(), y, m, n, DType::F16, stream_);
}

CudaEngine::ProjectionOutputs CudaEngine::projection_outputs(bool qkv_fused, bool gate_up_fused) {
  ProjectionOutputs o{};
  if (qkv_fused) {
    o.q = qkv_.as<__half>();
    o.k = o.q + q_dim_;
    o.v = o.k + kv_dim_;
    o.q_stride = o.kv_stride = q_dim_ + 2 * kv_dim_;
  } else {
    o.q = q_.as<__half>();
    o.k = k_.as<__half>();
    o.v = v_.as<__half>();
    o.q_stride = q_dim_;
    o.kv_stride = kv_dim_;
  }
  if (gate_up_fused) {
    o.gate = gate_up_.as<__half>();
    o.up = o.gate + inter_;
    o.mlp_stride = 2 * inter_;
  } else {
    o.gate = gate_.as<__half>();
    o.up = up_.as<__half>();
    o.mlp_stride = inter_;
  }
  return o;
}

void CudaEngine::run_layers(int64_t m) {
  float* x = x_.as<float>();
  __half* xn = xn_.as<__half>();
  __half* attn = attn_.as<__half>();
  __half* tmp = tmp_.as<__half>();
  __half* gate = gate_.as<__half>();  // silu(gate) * up, down_proj's input
  const int64_t* pos = d_pos_.as<int64_t>();
  const size_t layer_kv = static_cast<size_t>(n_kv_ * capacity_ * head_dim_);
  cuda_model::embed(d_tokens_.as<int32_t>(), m, embed_.as<__half>(), hidden_, x, stream_);
  mark("embedding");
  const __half* pending = nullptr;  // the previous block's down_proj output, added in the next norm
  for (size_t li = 0; li < layers_.size(); ++li) {
    GpuLayer& l = layers_[li];
    cuda_model::add_rmsnorm(x, pending, l.input_norm.as<float>(), xn, m, hidden_, eps_, stream_);
    mark("residual + rmsnorm");
    const ProjectionOutputs out = projection_outputs(l.qkv.n > 0, l.gate_up.n > 0);
    if (l.qkv.n) {
      run_linear(l.qkv, xn, m, out.q);
      mark("q/k/v (fused)");
    } else {
      run_linear(l.q, xn, m, out.q);
      mark("q_proj");
      run_linear(l.k, xn, m, out.k);
      mark("k_proj");
      run_linear(l.v, xn, m, out.v);
      mark("v_proj");
    }
    __half* kc = kcache_.as<__half>() + li * layer_kv;
    __half* vc = vcache_.as<__half>() + li * layer_kv;
    cuda_model::rope_store(out.q, out.k, out.v, cos_.as<float>(), sin_.as<float>(), pos, kc, vc, m, n_heads_, n_kv_,
                           head_dim_, capacity_, out.q_stride, out.kv_stride, stream_);
    mark("rope + kv store");
    cuda_model::attention(out.q, kc, vc, attn, pos, m, n_heads_, n_kv_, head_dim_, capacity_, window_, out.q_stride,
                          stream_, &attn_scratch_);
    mark("attention");
    run_linear(l.o, attn, m, tmp);
    mark("o_proj");
    cuda_model::add_rmsnorm(x, tmp, l.post_norm.as<float>(), xn, m, hidden_, eps_, stream_);
    mark("residual + rmsnorm");
    if (l.gate_up.n) {
      run_linear(l.gate_up, xn, m, out.gate);
      mark("gate/up (fused)");
    } else {
      run_linear(l.gate, xn, m, out.gate);
      mark("gate_proj");
      run_linear(l.up, xn, m, out.up);
      mark("up_proj");
    }
    cuda_model::silu_mul(out.gate, out.up, out.mlp_stride, gate, m, inter_, stream_);
    mark("silu * up");
    run_linear(l.down, gate, m, tmp);
    mark("down_proj");
    pending = tmp;
  }
  // Fold the last block's residual into x (the head reads x through the final norm).
  cuda_model::add_rmsnorm(x, pending, final_norm_.as<float>(), xn, m, hidden_, eps_, stream_);
  mark("residual + rmsnorm");
}

void CudaEngine::mark(const char* op) {
  if (!marks_) return;
  cudaEvent_t e = nullptr;
  QRT_CUDA_CHECK(cudaEventCreate(&e));
  marks_->emplace_back(op, e);
  QRT_CUDA_CHECK(cudaEventRecord(e, stream_));
}

std::vector<CudaForwardEngine::OpTime> CudaEngine::profile_decode_step(int32_t token, int64_t pos) {
  check_args(&token, 1, pos);
  cuda::DeviceGuard guard(device_);
  h_tokens_[0] = token;
  h_pos_[0] = pos;
  QRT_CUDA_CHECK(cudaMemcpyAsync(d_tokens_.get(), h_tokens_, 4, cudaMemcpyHostToDevice, stream_));
  QRT_CUDA_CHECK(cudaMemcpyAsync(d_pos_.get(), h_pos_, 8, cudaMemcpyHostToDevice, stream_));
  QRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::vector<std::pair<const char*, cudaEvent_t>> marks;
  marks_ = &marks;
  std::vector<OpTime> out;
  try {
    // ~0.5 ms of host launches per 100 ops fit behind the hold; the first mark opens the step.
    cuda_model::hold_stream(static_cast<uint32_t>(20000 + 40 * layers_.size() * 14), stream_);
    mark("start");
    run_layers(1);
    run_head(0, 1);
    mark("lm_head");
    QRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (size_t i = 1; i < marks.size(); ++i) {
      float ms = 0;
      QRT_CUDA_CHECK(cudaEventElapsedTime(&ms, marks[i - 1].second, marks[i].second));
      auto it = std::find_if(out.begin(), out.end(), [&](const OpTime& t) { return t.op == marks[i].first; });
      if (it == out.end()) it = out.insert(out.end(), OpTime{marks[i].first, 0, 0});
      it->us += ms * 1e3;
      ++it->launches;
    }
  } catch (...) {
    marks_ = nullptr;
    for (auto& [op, e] : marks) cudaEventDestroy(e);
    throw;
  }
  marks_ = nullptr;
  for (auto& [op, e] : marks) cudaEventDestroy(e);

  // The model's own kernels alone: 32 launches with block 0's arguments captured in one graph.
  // (The events above add a few microseconds to every op; this is each kernel's real cost.)
  const ProjectionOutputs out0 = projection_outputs(layers_[0].qkv.n > 0, layers_[0].gate_up.n > 0);
  const std::vector<std::pair<std::string, std::function<void()>>> alone = {
      {"residual + rmsnorm",
       [&] {
         cuda_model::add_rmsnorm(x_.as<float>(), tmp_.as<__half>(), layers_[0].input_norm.as<float>(), xn_.as<__half>(),
                                 1, hidden_, eps_, stream_);
       }},
      {"rope + kv store",
       [&] {
         cuda_model::rope_store(out0.q, out0.k, out0.v, cos_.as<float>(), sin_.as<float>(), d_pos_.as<int64_t>(),
                                kcache_.as<__half>(), vcache_.as<__half>(), 1, n_heads_, n_kv_, head_dim_, capacity_,
                                out0.q_stride, out0.kv_stride, stream_);
       }},
      {"attention",
       [&] {
         cuda_model::attention(out0.q, kcache_.as<__half>(), vcache_.as<__half>(), attn_.as<__half>(),
                               d_pos_.as<int64_t>(), 1, n_heads_, n_kv_, head_dim_, capacity_, window_, out0.q_stride,
                               stream_, &attn_scratch_);
       }},
      {"silu * up",
       [&] { cuda_model::silu_mul(out0.gate, out0.up, out0.mlp_stride, gate_.as<__half>(), 1, inter_, stream_); }},
  };
  constexpr int kLaunches = 32;
  for (const auto& [op, launch] : alone) {
    auto it = std::find_if(out.begin(), out.end(), [&](const OpTime& t) { return t.op == op; });
    if (it == out.end()) continue;
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    QRT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    for (int r = 0; r < kLaunches; ++r) launch();
    QRT_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    QRT_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    QRT_CUDA_CHECK(cudaGraphLaunch(exec, stream_));  // warm-up
    cuda::EventTimer timer;
    std::vector<float> ms;
    for (int rep = 0; rep < 5; ++rep) {
      timer.start(stream_);
      QRT_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
      ms.push_back(timer.stop_ms(stream_));
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    std::sort(ms.begin(), ms.end());
    it->graph_us_each = ms[2] * 1e3 / kLaunches;
  }
  return out;
}

void CudaEngine::run_head(int64_t row0, int64_t rows) {
  // xn holds the final-normed rows after run_layers(); rows beyond row0 are contiguous.
  const __half* xr = xn_.as<__half>() + row0 * hidden_;
  float* out = logits_.as<float>();
  if (head_is_embedding_ || !lm_head_.q) {
    const void* W = head_is_embedding_ ? embed_.get() : lm_head_.dense.get();
    const float alpha = 1.f, beta = 0.f;
    cublasHandle_t h = ctx_->cublas();
    QRT_CUBLAS_CHECK(cublasSetStream(h, stream_));
    QRT_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(vocab_), static_cast<int>(rows),
                                  static_cast<int>(hidden_), &alpha, W, CUDA_R_16F, static_cast<int>(hidden_), xr,
                                  CUDA_R_16F, static_cast<int>(hidden_), &beta, out, CUDA_R_32F,
                                  static_cast<int>(vocab_), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (!head_is_embedding_ && lm_head_.bias)
      throw unsupported("lm_head with a bias is not supported by the CUDA engine");
    return;
  }
  run_linear(lm_head_, xr, rows, logits_half_.as<__half>());
  cuda_model::half_to_float(logits_half_.as<__half>(), out, rows * vocab_, stream_);
}

void CudaEngine::check_args(const int32_t* tokens, int64_t n, int64_t pos) const {
  if (n < 1) throw invalid_input("forward: no tokens (n = 0)");
  if (pos < 0 || pos + n > capacity_)
    throw invalid_input(fmt::format("forward: positions [{}, {}) exceed the KV cache of {} positions "
                                    "(max_input_length + max_new_tokens)",
                                    pos, pos + n, capacity_));
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      throw invalid_input(fmt::format("forward: token id {} at index {} is outside the vocabulary [0, {})", tokens[i],
                                      i, vocab_));
}

void CudaEngine::capture_graphs() {
  auto capture = [&](bool with_sampling) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    QRT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      run_layers(1);
      run_head(0, 1);
      if (with_sampling)
        cuda_model::sample_and_advance(logits_.as<float>(), vocab_, d_sampling_.as<cuda_model::SamplingState>(),
                                       d_tokens_.as<int32_t>(), d_out_tokens_.as<int32_t>(), d_pos_.as<int64_t>(),
                                       d_step_.as<int64_t>(), stream_);
    } catch (...) {
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    QRT_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    QRT_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    cudaGraphDestroy(g);
    return exec;
  };
  if (!step_graph_) step_graph_ = capture(false);
  if (!decode_graph_) decode_graph_ = capture(true);
}

void CudaEngine::forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) {
  check_args(tokens, n, pos);
  cuda::DeviceGuard guard(device_);
  for (int64_t start = 0; start < n; start += batch_) {
    const int64_t m = std::min(batch_, n - start);
    std::memcpy(h_tokens_, tokens + start, static_cast<size_t>(m) * 4);
    h_pos_[0] = pos + start;
    QRT_CUDA_CHECK(cudaMemcpyAsync(d_tokens_.get(), h_tokens_, static_cast<size_t>(m) * 4, cudaMemcpyHostToDevice, stream_));
    QRT_CUDA_CHECK(cudaMemcpyAsync(d_pos_.get(), h_pos_, 8, cudaMemcpyHostToDevice, stream_));
    const bool last = start + m == n;
    if (m == 1 && !all_logits) {
      capture_graphs();
      QRT_CUDA_CHECK(cudaGraphLaunch(step_graph_, stream_));
    } else {
      run_layers(m);
      if (all_logits) run_head(0, m);
      else if (last) run_head(m - 1, 1);
    }
    const int64_t rows = all_logits ? m : (last ? 1 : 0);
    if (rows) {
      QRT_CUDA_CHECK(cudaMemcpyAsync(h_logits_, logits_.get(), static_cast<size_t>(rows * vocab_) * 4,
                                     cudaMemcpyDeviceToHost, stream_));
    }
    // One synchronisation per chunk: the staging buffers are reused by the next one.
    QRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (rows) std::memcpy(logits + (all_logits ? start * vocab_ : 0), h_logits_, static_cast<size_t>(rows * vocab_) * 4);
  }
}

std::vector<int32_t> CudaEngine::generate_on_device(int32_t last_token, int64_t pos, int64_t steps,
                                                    const DeviceSampling& sampling) {
  check_args(&last_token, 1, pos);
  if (steps < 1) return {};
  if (pos + steps > capacity_)
    throw invalid_input(fmt::format("generate: positions [{}, {}) exceed the KV cache of {} positions", pos,
                                    pos + steps, capacity_));
  cuda::DeviceGuard guard(device_);
  capture_graphs();
  cuda_model::SamplingState st{sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed};
  h_tokens_[0] = last_token;
  h_pos_[0] = pos;
  h_pos_[1] = 0;
  QRT_CUDA_CHECK(cudaMemcpyAsync(d_tokens_.get(), h_tokens_, 4, cudaMemcpyHostToDevice, stream_));
  QRT_CUDA_CHECK(cudaMemcpyAsync(d_pos_.get(), &h_pos_[0], 8, cudaMemcpyHostToDevice, stream_));
  QRT_CUDA_CHECK(cudaMemcpyAsync(d_step_.get(), &h_pos_[1], 8, cudaMemcpyHostToDevice, stream_));
  QRT_CUDA_CHECK(cudaMemcpy(d_sampling_.get(), &st, sizeof(st), cudaMemcpyHostToDevice));
  QRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  cuda::EventTimer timer;
  timer.start(stream_);
  for (int64_t i = 0; i < steps; ++i) QRT_CUDA_CHECK(cudaGraphLaunch(decode_graph_, stream_));
  last_generate_s_ = timer.stop_ms(stream_) / 1e3;
  std::vector<int32_t> out(static_cast<size_t>(steps));
  QRT_CUDA_CHECK(cudaMemcpy(out.data(), d_out_tokens_.get(), out.size() * 4, cudaMemcpyDeviceToHost));
  return out;
}

std::vector<std::pair<std::string, std::vector<KernelChoice>>> CudaEngine::kernels() const {
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> out;
  auto add = [&](const GpuLinear& l) {
    if (l.q) out.emplace_back(l.q->layer().name, l.q->kernels());
  };
  for (const auto& l : layers_)
    for (const GpuLinear* p : {&l.qkv, &l.q, &l.k, &l.v, &l.o, &l.gate_up, &l.gate, &l.up, &l.down}) add(*p);
  if (!head_is_embedding_) add(lm_head_);
  return out;
}

std::map<std::string, int> CudaEngine::backend_counts() const {
  std::map<std::string, int> counts;
  auto add = [&](const GpuLinear& l) { count_backends(l.q.get(), counts); };
  for (const auto& l : layers_)
    for (const GpuLinear* p : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down, &l.qkv, &l.gate_up})
      if (p->n) add(*p);
  if (head_is_embedding_) ++counts["dense"];
  else add(lm_head_);
  return counts;
}

}  // namespace

std::unique_ptr<ForwardEngine> make_cuda_engine(std::shared_ptr<const ModelWeights> weights,
                                                const EngineOptions& options) {
  return std::make_unique<CudaEngine>(std::move(weights), options);
}

}  // namespace qrt
