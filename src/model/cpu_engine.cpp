// The CPU forward engine: embedding -> N x [RMSNorm, GQA attention with RoPE, RMSNorm, SwiGLU MLP]
// -> RMSNorm -> lm_head, float32 activations. Quantized linears run through their planned
// QuantLinear (the backend chosen per layer); dense ones through ops::dense_matmul. The prompt is
// processed in chunks of prefill_batch rows; all buffers are allocated once here, so forward()
// allocates nothing.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <fmt/format.h>

#include "model/cpu_attention.h"
#include "model/engine_plan.h"
#include "model/ops.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

// Bytes the system can still give this process (Linux MemAvailable), or -1 when unknown.
int64_t available_host_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (f >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return -1;
}

class CpuEngine final : public ForwardEngine {
 public:
  CpuEngine(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options);

  const ModelConfig& config() const override { return w_->config; }
  int64_t capacity() const override { return capacity_; }
  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) override;
  const std::vector<LinearPlan>& plans() const override { return plan_->layers; }
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const override;
  std::map<std::string, int> backend_counts() const override;
  std::string device_name() const override { return "cpu (" + std::to_string(pool_.size()) + " threads)"; }

 private:
  struct Linear {
    const LinearWeight* w = nullptr;
    std::unique_ptr<QuantLinear> q;
    std::vector<uint16_t> f16;  // dense weight in fp16 when EngineOptions::dense_dtype is F16
  };
  // Dense matrix [n][k] from float32 data, in the engine's dense storage.
  static std::vector<uint16_t> to_f16(const std::vector<float>& w);
  void dense(const float* W32, const std::vector<uint16_t>& W16, const float* x, int64_t m, int64_t k, int64_t n,
             const float* bias, float* y, int64_t ldy);
  struct Layer {
    Linear q, k, v, o, gate, up, down;
  };

  void run_linear(Linear& l, const float* x, int64_t m, float* y, int64_t ldy);
  void run_chunk(const int32_t* tokens, int64_t m, int64_t pos);
  void attention(int64_t layer, int64_t m, int64_t pos);
  void head(const float* x_normed, int64_t m, float* logits);

  std::shared_ptr<const ModelWeights> w_;
  EngineOptions opt_;
  ThreadPool pool_;
  ExecContext ctx_;
  std::shared_ptr<const ModelPlan> plan_;
  std::vector<Layer> layers_;
  Linear lm_head_;
  bool head_is_embedding_ = false;
  std::vector<uint16_t> embed_f16_;  // tied head in fp16

  int64_t capacity_ = 0, batch_ = 0;
  int64_t hidden_ = 0, q_dim_ = 0, kv_dim_ = 0, inter_ = 0, vocab_ = 0, head_dim_ = 0;
  int64_t n_heads_ = 0, n_kv_ = 0, window_ = 0;
  float eps_ = 1e-6f;
  ops::RopeTable rope_;

  // KV cache: [layer][kv_head][head area], float32 or fp16. A head's keys are in blocks of 16
  // positions (cpu_attention.h), its values row-major [position][head_dim]. Zero-allocated with
  // calloc: the pages are not touched until used, so an unused long context costs address space,
  // not memory, and the unwritten tail of a key block reads as zeros.
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  bool kv_f16_ = false;
  std::unique_ptr<float[], FreeDeleter> k32_, v32_;
  std::unique_ptr<uint16_t[], FreeDeleter> k16_, v16_;
  int64_t layer_stride_ = 0, head_stride_ = 0;

  // Activations of one chunk.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, tmp_, gate_, up_, scores_;
  // Attention partial results: per unit of a split decode step, or per thread when unsplit.
  static constexpr int64_t kMaxAttentionParts = 8;
  std::vector<float> attn_part_, part_max_, part_sum_;
};

CpuEngine::CpuEngine(std::shared_ptr<const ModelWeights> weights, const EngineOptions& options)
    : w_(std::move(weights)), opt_(options), pool_(options.runtime.threads) {
  if (!w_) throw internal_error("make_cpu_engine: no weights");
  w_->validate();
  const ModelConfig& c = w_->config;
  ctx_.pool = &pool_;
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
  options.validate_lengths();
  capacity_ = options.max_context();
  batch_ = std::clamp<int64_t>(options.prefill_batch, 1, options.runtime.max_input_length);
  kv_f16_ = options.kv_dtype == KvCacheDType::F16;
  // What max_input_length + max_new_tokens cost before anything runs: the KV cache (allocated
  // lazily, but a cache that cannot fit is a configuration error), the RoPE tables and the
  // per-thread score rows (both filled now). Without this check a huge --max-input-length got the
  // process killed by the kernel while the tables were filled. Doubles: no overflow.
  {
    const double positions = static_cast<double>(cpu_attention::round_up_to_block(capacity_));
    const double kv = 2.0 * static_cast<double>(c.num_layers * n_kv_ * head_dim_) * positions * (kv_f16_ ? 2 : 4);
    const double tables =
        2.0 * positions * static_cast<double>(head_dim_ / 2) * 4 + positions * pool_.size() * (n_heads_ / n_kv_) * 4;
    const int64_t available = available_host_memory();
    if (available > 0 && kv + tables > static_cast<double>(available))
      throw Error(ErrorKind::OutOfMemory,
                  fmt::format("max_input_length {} + max_new_tokens {} = {} positions: the KV cache ({:.2f} GiB, {}) "
                              "and position tables ({:.2f} GiB) need more than the {:.2f} GiB of memory available; "
                              "lower --max-input-length or -n{}",
                              options.runtime.max_input_length, options.runtime.max_new_tokens, capacity_,
                              kv / 1073741824.0, kv_f16_ ? "f16" : "f32", tables / 1073741824.0,
                              static_cast<double>(available) / 1073741824.0, kv_f16_ ? "" : ", or use --kv-cache f16"));
  }

  rope_.build(ops::rope_inv_freq(c), capacity_);

  // The plan of every quantized linear on this device, then its kernels (with fallback).
  auto log = options.log ? options.log : [](const std::string&) {};
  plan_ = engine_plan(*w_, options, log);
  auto make = [&](const LinearWeight& lw) {
    Linear l;
    l.w = &lw;
    if (lw.is_quantized()) {
      l.q = QuantLinear::build(lw.quantized, *plan_->find(lw.quantized->spec.name), options.device, log);
    } else if (options.dense_dtype == DenseDType::F16) {
      l.f16 = to_f16(lw.dense);
    }
    return l;
  };
  layers_.reserve(w_->layers.size());
  for (const auto& lw : w_->layers) {
    Layer l;
    l.q = make(lw.q_proj);
    l.k = make(lw.k_proj);
    l.v = make(lw.v_proj);
    l.o = make(lw.o_proj);
    l.gate = make(lw.gate_proj);
    l.up = make(lw.up_proj);
    l.down = make(lw.down_proj);
    layers_.push_back(std::move(l));
  }
  head_is_embedding_ = w_->lm_head_uses_embedding();
  if (!head_is_embedding_) lm_head_ = make(w_->lm_head);
  else if (options.dense_dtype == DenseDType::F16) embed_f16_ = to_f16(w_->embed_tokens);

  const int64_t L = c.num_layers;
  head_stride_ = cpu_attention::head_key_elems(capacity_, head_dim_);
  layer_stride_ = n_kv_ * head_stride_;
  const int64_t total = L * layer_stride_;
  const size_t elem = kv_f16_ ? 2 : 4;
  void* kmem = std::calloc(static_cast<size_t>(total), elem);
  void* vmem = kmem ? std::calloc(static_cast<size_t>(total), elem) : nullptr;
  if (kv_f16_) {
    k16_.reset(static_cast<uint16_t*>(kmem));
    v16_.reset(static_cast<uint16_t*>(vmem));
  } else {
    k32_.reset(static_cast<float*>(kmem));
    v32_.reset(static_cast<float*>(vmem));
  }
  if (!kmem || !vmem) {
    throw Error(ErrorKind::OutOfMemory,
                fmt::format("KV cache of {} positions x {} layers ({:.1f} MiB) does not fit in memory; "
                            "lower --max-input-length or -n",
                            capacity_, L, 2.0 * total * (kv_f16_ ? 2 : 4) / 1048576.0));
  }

  x_.resize(batch_ * hidden_);
  xn_.resize(batch_ * hidden_);
  q_.resize(batch_ * q_dim_);
  k_.resize(batch_ * kv_dim_);
  v_.resize(batch_ * kv_dim_);
  attn_.resize(batch_ * q_dim_);
  tmp_.resize(batch_ * hidden_);
  gate_.resize(batch_ * inter_);
  up_.resize(batch_ * inter_);
  const int64_t group = n_heads_ / n_kv_;
  scores_.resize(static_cast<size_t>(pool_.size() * group * cpu_attention::round_up_to_block(capacity_)));
  const int64_t partial_rows = std::max<int64_t>(n_kv_ * kMaxAttentionParts, pool_.size()) * group;
  attn_part_.resize(static_cast<size_t>(partial_rows * head_dim_));
  part_max_.resize(static_cast<size_t>(partial_rows));
  part_sum_.resize(static_cast<size_t>(partial_rows));
}

std::map<std::string, int> CpuEngine::backend_counts() const {
  std::map<std::string, int> counts;
  auto add = [&](const Linear& l) { count_backends(l.q.get(), counts); };
  for (const auto& l : layers_)
    for (const Linear* p : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) add(*p);
  if (head_is_embedding_) ++counts["dense"];
  else add(lm_head_);
  return counts;
}

std::vector<std::pair<std::string, std::vector<KernelChoice>>> CpuEngine::kernels() const {
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> out;
  auto add = [&](const Linear& l) {
    if (l.q) out.emplace_back(l.q->layer().name, l.q->kernels());
  };
  for (const auto& l : layers_)
    for (const Linear* p : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) add(*p);
  if (!head_is_embedding_) add(lm_head_);
  return out;
}

std::vector<uint16_t> CpuEngine::to_f16(const std::vector<float>& w) {
  for (float v : w)
    if (!(std::abs(v) <= 65000.0f)) return {};  // out of fp16 range (or NaN): keep float32
  std::vector<uint16_t> out(w.size());
  for (size_t i = 0; i < w.size(); ++i) out[i] = f32_to_fp16(w[i]);
  return out;
}

void CpuEngine::dense(const float* W32, const std::vector<uint16_t>& W16, const float* x, int64_t m, int64_t k,
                      int64_t n, const float* bias, float* y, int64_t ldy) {
  if (!W16.empty()) ops::dense_matmul_f16(x, m, k, W16.data(), n, bias, y, ldy, &pool_);
  else ops::dense_matmul(x, m, k, W32, n, bias, y, ldy, &pool_);
}

void CpuEngine::run_linear(Linear& l, const float* x, int64_t m, float* y, int64_t ldy) {
  const LinearWeight& w = *l.w;
  if (l.q) {
    // QuantLinear writes contiguous rows of N; ldy == N everywhere we call it.
    ActTensor xt{const_cast<float*>(x), DType::F32, m, w.in_features, DeviceKind::Cpu};
    ActTensor yt{y, DType::F32, m, w.out_features, DeviceKind::Cpu};
    l.q->forward(xt, yt, ctx_);
    return;
  }
  dense(w.dense.data(), l.f16, x, m, w.in_features, w.out_features, w.bias.empty() ? nullptr : w.bias.data(), y,
        ldy);
}

void CpuEngine::attention(int64_t layer, int64_t m, int64_t pos) {
  const int64_t group = n_heads_ / n_kv_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
  const int64_t base = layer * layer_stride_;
  // Work units: (KV head, query row, part of the positions). A unit runs the whole GQA group
  // over its positions, so each key / value block is read once for the group. Decode has one row
  // and few KV heads (SmolLM2: 3 on 2 threads), so its positions are split into parts of at least
  // kMinPartPositions, merged after; prefill rows already give every thread work.
  constexpr int64_t kMinPartPositions = 256;
  const int64_t threads = pool_.size();
  int64_t parts = 1;
  if (m == 1 && n_kv_ < 2 * threads) {
    const int64_t most = std::max<int64_t>(1, std::min<int64_t>(kMaxAttentionParts, (pos + 1) / kMinPartPositions));
    parts = std::min<int64_t>(most, (2 * threads + n_kv_ - 1) / n_kv_);
  }
  const int64_t row_scores = group * cpu_attention::round_up_to_block(capacity_);
  pool_.parallel_for(n_kv_ * m * parts, [&](int t, int64_t u0, int64_t u1) {
    float* scores = scores_.data() + static_cast<int64_t>(t) * row_scores;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t kvh = u / (m * parts), i = (u / parts) % m, part = u % parts;
      const int64_t p = pos + i;
      const int64_t first = window_ > 0 ? std::max<int64_t>(0, p - window_ + 1) : 0;
      // Parts cover [first, p] in whole key blocks.
      const int64_t len = (p - first + parts) / parts;
      const int64_t chunk = cpu_attention::round_up_to_block(len);
      const int64_t lo = first + part * chunk, hi = std::min(p, lo + chunk - 1);
      const float* q = q_.data() + i * q_dim_ + kvh * group * head_dim_;
      const int64_t off = base + kvh * head_stride_;
      const int64_t slot = (kvh * parts + part) * group;  // this unit's partial rows (decode)
      float* out = parts == 1 ? attn_part_.data() + static_cast<int64_t>(t) * group * head_dim_
                              : attn_part_.data() + slot * head_dim_;
      float* mx = part_max_.data() + (parts == 1 ? static_cast<int64_t>(t) * group : slot);
      float* sum = part_sum_.data() + (parts == 1 ? static_cast<int64_t>(t) * group : slot);
      if (lo > hi) {  // nothing left for this part (short context)
        std::fill(sum, sum + group, 0.0f);
        continue;
      }
      if (kv_f16_)
        cpu_attention::attend_partial(q, head_dim_, group, k16_.get() + off, v16_.get() + off, lo, hi, head_dim_,
                                      scale, scores, out, mx, sum);
      else
        cpu_attention::attend_partial(q, head_dim_, group, k32_.get() + off, v32_.get() + off, lo, hi, head_dim_,
                                      scale, scores, out, mx, sum);
      if (parts == 1) {
        for (int64_t h = 0; h < group; ++h) {
          float* dst = attn_.data() + i * q_dim_ + (kvh * group + h) * head_dim_;
          const float inv = 1.0f / sum[h];
          for (int64_t d = 0; d < head_dim_; ++d) dst[d] = out[h * head_dim_ + d] * inv;
        }
      }
    }
  });
  if (parts == 1) return;
  // Decode: merge each head's parts in place (rows of attn_part_ at (kvh * parts + part) * group + h).
  for (int64_t kvh = 0; kvh < n_kv_; ++kvh)
    for (int64_t h = 0; h < group; ++h) {
      const int64_t slot = kvh * parts * group + h;
      cpu_attention::merge_partials(attn_part_.data() + slot * head_dim_, part_max_.data() + slot,
                                    part_sum_.data() + slot, parts, group, head_dim_,
                                    attn_.data() + (kvh * group + h) * head_dim_);
    }
}

void CpuEngine::run_chunk(const int32_t* tokens, int64_t m, int64_t pos) {
  for (int64_t i = 0; i < m; ++i)
    std::copy_n(w_->embed_tokens.data() + static_cast<int64_t>(tokens[i]) * hidden_, hidden_, x_.data() + i * hidden_);

  for (size_t li = 0; li < layers_.size(); ++li) {
    const auto& lw = w_->layers[li];
    Layer& l = layers_[li];
    ops::rms_norm(x_.data(), lw.input_norm.data(), xn_.data(), m, hidden_, eps_);
    run_linear(l.q, xn_.data(), m, q_.data(), q_dim_);
    run_linear(l.k, xn_.data(), m, k_.data(), kv_dim_);
    run_linear(l.v, xn_.data(), m, v_.data(), kv_dim_);
    const int64_t base = static_cast<int64_t>(li) * layer_stride_;
    for (int64_t i = 0; i < m; ++i) {
      const int64_t p = pos + i;
      const float* cs = rope_.cos.data() + p * rope_.half;
      const float* sn = rope_.sin.data() + p * rope_.half;
      ops::apply_rope(q_.data() + i * q_dim_, n_heads_, head_dim_, cs, sn);
      ops::apply_rope(k_.data() + i * kv_dim_, n_kv_, head_dim_, cs, sn);
      for (int64_t h = 0; h < n_kv_; ++h) {
        const int64_t head = base + h * head_stride_;
        const int64_t voff = head + p * head_dim_;
        const float* ks = k_.data() + i * kv_dim_ + h * head_dim_;
        const float* vs = v_.data() + i * kv_dim_ + h * head_dim_;
        if (kv_f16_) {
          for (int64_t d = 0; d < head_dim_; ++d) {
            k16_[head + cpu_attention::key_index(p, d, head_dim_)] = f32_to_fp16(ks[d]);
            v16_[voff + d] = f32_to_fp16(vs[d]);
          }
        } else {
          for (int64_t d = 0; d < head_dim_; ++d) k32_[head + cpu_attention::key_index(p, d, head_dim_)] = ks[d];
          std::copy_n(vs, head_dim_, v32_.get() + voff);
        }
      }
    }
    attention(static_cast<int64_t>(li), m, pos);
    run_linear(l.o, attn_.data(), m, tmp_.data(), hidden_);
    ops::add_inplace(x_.data(), tmp_.data(), m * hidden_);

    ops::rms_norm(x_.data(), lw.post_attention_norm.data(), xn_.data(), m, hidden_, eps_);
    run_linear(l.gate, xn_.data(), m, gate_.data(), inter_);
    run_linear(l.up, xn_.data(), m, up_.data(), inter_);
    ops::silu_mul(gate_.data(), up_.data(), m * inter_);
    run_linear(l.down, gate_.data(), m, tmp_.data(), hidden_);
    ops::add_inplace(x_.data(), tmp_.data(), m * hidden_);
  }
}

void CpuEngine::head(const float* x_normed, int64_t m, float* logits) {
  if (head_is_embedding_) {
    dense(w_->embed_tokens.data(), embed_f16_, x_normed, m, hidden_, vocab_, nullptr, logits, vocab_);
  } else {
    run_linear(lm_head_, x_normed, m, logits, vocab_);
  }
}

void CpuEngine::forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) {
  if (n < 1) throw invalid_input("forward: no tokens (n = 0)");
  if (pos < 0 || pos + n > capacity_)
    throw invalid_input(fmt::format("forward: positions [{}, {}) exceed the KV cache of {} positions "
                                    "(max_input_length + max_new_tokens)",
                                    pos, pos + n, capacity_));
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      throw invalid_input(fmt::format("forward: token id {} at index {} is outside the vocabulary [0, {})",
                                      tokens[i], i, vocab_));
  for (int64_t start = 0; start < n; start += batch_) {
    const int64_t m = std::min(batch_, n - start);
    run_chunk(tokens + start, m, pos + start);
    if (all_logits) {
      ops::rms_norm(x_.data(), w_->final_norm.data(), xn_.data(), m, hidden_, eps_);
      head(xn_.data(), m, logits + start * vocab_);
    } else if (start + m == n) {
      ops::rms_norm(x_.data() + (m - 1) * hidden_, w_->final_norm.data(), xn_.data(), 1, hidden_, eps_);
      head(xn_.data(), 1, logits);
    }
  }
}

}  // namespace

std::unique_ptr<ForwardEngine> make_cpu_engine(std::shared_ptr<const ModelWeights> weights,
                                               const EngineOptions& options) {
  return std::make_unique<CpuEngine>(std::move(weights), options);
}

}  // namespace qrt
