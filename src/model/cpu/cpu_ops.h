// The block ops on the CPU (see block_ops.h): float32 activations, the thread pool, quantized
// linears through their QuantLinear and dense ones through ops::dense_matmul (fp16 or float32
// weights), and attention over a KV cache whose keys sit in blocks of 16 positions
// (cpu_attention.h): a work unit is a whole GQA group, and a decode step with few KV heads splits
// each head's positions into parts merged flash-decoding style, so every thread works.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "model/block_ops.h"
#include "qrt/plural.h"
#include "qrt/thread_pool.h"

namespace qrt::model {

class CpuOps final : public BlockOps {
 public:
  explicit CpuOps(const EngineOptions& options);

  std::string device_name() const override { return "cpu (" + count_of(pool_.size(), "thread") + ")"; }
  // The CPU runs every rule of ModelDims (Gemma-2's included).
  std::vector<std::string> missing_rules(const ModelDims&) const override { return {}; }
  void reserve(const ModelDims& dims) override;
  void set_rope(const ops::RopeTable& rope) override { rope_ = &rope; }
  void upload_embedding(const std::vector<float>& table, bool tied_head) override;
  int upload_matrix(const LinearWeight& w, bool head) override;
  int upload_vector(const std::string& name, const std::vector<float>& v) override;
  void allocate(bool fused, bool quantized_head) override;

  // A step: the head writes straight into the caller's logits; nothing to finish.
  void stage(const StepRows& rows, float* logits, int64_t logit_rows) override;
  void finish() override {}
  // Element-wise and per-row ops.
  void embed(int64_t m) override;
  void add_rmsnorm(bool add_proj, int norm, int64_t row0, int64_t rows) override;
  void silu_mul(View gate, View up, View out, int64_t m) override;
  void gelu_tanh_mul(View gate, View up, View out, int64_t m) override;
  void rmsnorm_proj(int norm, int64_t m) override;
  // Matrix products: QuantLinear or the dense kernels, on the thread pool.
  void linear(ModelLinear& l, View in, View out, int64_t m) override;
  void head(ModelLinear& head, int64_t row0, int64_t rows) override;
  void gather_rows(const int64_t* rows, int64_t n) override;
  // The KV cache and attention.
  void rope_store_kv(int64_t layer, View q, View k, View v, int64_t m) override;
  void attention(int64_t layer, View q, View out, int64_t m) override;

 private:
  // A dense matrix [n][k]: the float32 weights in place, and an fp16 copy when the engine stores
  // dense matrices in fp16 (empty when the weights exceed the fp16 range).
  struct Dense {
    const float* w32 = nullptr;
    std::vector<uint16_t> w16;
    const float* bias = nullptr;
    int64_t n = 0, k = 0;
  };
  static std::vector<uint16_t> to_f16(const std::vector<float>& w);
  void dense(const Dense& d, const float* x, int64_t m, float* y, int64_t ldy);
  float* row(View v, int64_t i) { return buffer(v.buffer) + i * v.stride + v.col; }
  // fn(r0, r1) over the step's rows [0, m), split over the pool when there are several rows: the
  // per-row ops would otherwise run on the caller while the workers wait (a row's result is the
  // same on any thread).
  template <class Fn>
  void for_rows(int64_t m, const Fn& fn) {
    if (m < 2 || pool_.size() == 1) {
      fn(int64_t{0}, m);
      return;
    }
    // One captured reference: std::function keeps it inline, no allocation per call.
    pool_.parallel_for(m, [&fn](int, int64_t r0, int64_t r1) { fn(r0, r1); });
  }
  float* buffer(Buffer b);
  // rope_store_kv over rows [r0, r1) (one thread's share).
  void rope_store_rows(int64_t layer, View q, View k, View v, int64_t r0, int64_t r1);

  EngineOptions options_;
  ThreadPool pool_;
  ExecContext ctx_;
  ModelDims d_;
  const ops::RopeTable* rope_ = nullptr;
  const std::vector<float>* embedding_ = nullptr;
  Dense tied_head_;
  std::vector<Dense> dense_;
  std::vector<const std::vector<float>*> vectors_;
  StepRows rows_;
  float* logits_ = nullptr;

  // Parts a row's attention is split into (1 = unsplit): a decode row (the only row of its
  // sequence in the step) with few KV heads is split so that every thread works.
  int64_t attention_parts(int64_t position) const;

  // KV cache: [layer][kv_head][head area], float32 or fp16. A head's area is blocks_per_head_
  // blocks of 16 positions: keys dimension-major inside a block (cpu_attention.h), values
  // row-major [position][head_dim]. The single-sequence engine's area is its positions in order
  // (block b = positions [16 b, 16 b + 16)); the batched engine's is a pool that sequences address
  // through their block tables. Zero-allocated with calloc: the pages are not touched until used,
  // so an unused long context costs address space, not memory, and the unwritten tail of a key
  // block reads as zeros (in a reused pool block, as the earlier sequence's finite values).
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  bool kv_f16_ = false;
  std::unique_ptr<float[], FreeDeleter> k32_, v32_;
  std::unique_ptr<uint16_t[], FreeDeleter> k16_, v16_;
  int64_t layer_stride_ = 0, head_stride_ = 0, blocks_per_head_ = 0;

  // The staged step's attention work: per row its block table (nullptr: contiguous), its parts
  // and, when split, the first of its partial slots; the (row, part) pairs in order.
  std::vector<const int32_t*> row_blocks_;
  std::vector<int64_t> row_parts_, part_base_, unit_row_, unit_part_;
  std::vector<int32_t> sequence_rows_;  // rows of each sequence in the step
  int64_t row_units_ = 0;               // (row, part) pairs of the step
  int64_t thread_slots_ = 0;            // first partial slot of the per-thread (unsplit) area

  // Activations of one step (the residual stream x, then one buffer per role).
  std::vector<float> x_, xn_, q_, k_, v_, attn_, proj_, gate_, up_, scores_;
  // Attention partial results: per (row, KV head, part) of the split rows, then per thread for
  // unsplit rows (slots of `group` heads x head_dim).
  static constexpr int64_t kMaxAttentionParts = 8;
  std::vector<float> attn_part_, part_max_, part_sum_;
};

}  // namespace qrt::model
