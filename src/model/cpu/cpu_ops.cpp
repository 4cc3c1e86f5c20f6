// The block ops on the CPU (see cpu_ops.h). All buffers are allocated at load; a step allocates
// nothing.
#include "model/cpu/cpu_ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "core/cpu_isa.h"
#include "model/cpu_attention.h"
#include "model/llama_model.h"
#include "model/ops_avx2.h"
#include "qrt/dtype.h"
#include "qrt/error.h"

namespace qrt {
namespace model {
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

}  // namespace

CpuOps::CpuOps(const EngineOptions& options) : options_(options), pool_(options.runtime.threads, options.cpu_spin) {
  ctx_.pool = &pool_;
  if (options.kv_dtype == KvCacheDType::Fp8E4M3)
    throw unsupported("--kv-cache fp8: the CPU engine stores its KV cache as f16 or f32 (fp8 is a GPU engine option)");
  kv_f16_ = options.kv_dtype == KvCacheDType::F16;
}

void CpuOps::reserve(const ModelDims& dims) {
  d_ = dims;
  // What max_input_length + max_new_tokens cost before anything runs: the KV cache (allocated
  // lazily, but a cache that cannot fit is a configuration error), the RoPE tables and the
  // per-thread score rows (both filled at load). Without this check a huge --max-input-length got
  // the process killed by the kernel while the tables were filled. Doubles: no overflow.
  const double positions = static_cast<double>(cpu_attention::round_up_to_block(d_.capacity));
  const double cached = d_.kv_blocks > 0 ? static_cast<double>(d_.kv_blocks * cpu_attention::kKeyBlock) : positions;
  const double kv = 2.0 * static_cast<double>(d_.layers * d_.kv_heads * d_.head_dim) * cached * (kv_f16_ ? 2 : 4);
  const double tables = 2.0 * positions * static_cast<double>(d_.head_dim / 2) * 4 +
                        positions * pool_.size() * (d_.heads / d_.kv_heads) * 4;
  const int64_t available = available_host_memory();
  if (d_.kv_blocks > 0 && available > 0 && kv + tables > static_cast<double>(available))
    throw Error(ErrorKind::OutOfMemory,
                fmt::format("a KV pool of {} blocks of {} positions ({:.2f} GiB, {}) and position tables of {} "
                            "positions ({:.2f} GiB) need more than the {:.2f} GiB of memory available; lower the "
                            "number of KV blocks or the context per sequence",
                            d_.kv_blocks, cpu_attention::kKeyBlock, kv / 1073741824.0, kv_f16_ ? "f16" : "f32",
                            d_.capacity, tables / 1073741824.0, static_cast<double>(available) / 1073741824.0));
  if (available > 0 && kv + tables > static_cast<double>(available))
    throw Error(ErrorKind::OutOfMemory,
                fmt::format("max_input_length {} + max_new_tokens {} = {} positions: the KV cache ({:.2f} GiB, {}) "
                            "and position tables ({:.2f} GiB) need more than the {:.2f} GiB of memory available; "
                            "lower --max-input-length or -n{}",
                            options_.runtime.max_input_length, options_.runtime.max_new_tokens, d_.capacity,
                            kv / 1073741824.0, kv_f16_ ? "f16" : "f32", tables / 1073741824.0,
                            static_cast<double>(available) / 1073741824.0, kv_f16_ ? "" : ", or use --kv-cache f16"));
}

std::vector<uint16_t> CpuOps::to_f16(const std::vector<float>& w) {
  for (float v : w)
    if (!(std::abs(v) <= 65000.0f)) return {};  // out of fp16 range (or NaN): keep float32
  std::vector<uint16_t> out(w.size());
  for (size_t i = 0; i < w.size(); ++i) out[i] = f32_to_fp16(w[i]);
  return out;
}

void CpuOps::upload_embedding(const std::vector<float>& table, bool tied_head) {
  embedding_ = &table;
  if (!tied_head) return;
  tied_head_.w32 = table.data();
  if (options_.dense_dtype == DenseDType::F16) tied_head_.w16 = to_f16(table);
  tied_head_.n = d_.vocab;
  tied_head_.k = d_.hidden;
}

int CpuOps::upload_matrix(const LinearWeight& w, bool) {
  Dense d;
  d.w32 = w.dense.data();
  if (options_.dense_dtype == DenseDType::F16) d.w16 = to_f16(w.dense);
  d.bias = w.bias.empty() ? nullptr : w.bias.data();
  d.n = w.out_features;
  d.k = w.in_features;
  dense_.push_back(std::move(d));
  return static_cast<int>(dense_.size() - 1);
}

int CpuOps::upload_vector(const std::string&, const std::vector<float>& v) {
  vectors_.push_back(&v);
  return static_cast<int>(vectors_.size() - 1);
}

void CpuOps::allocate(bool fused, bool) {
  static_assert(cpu_attention::kKeyBlock == kKvBlockPositions, "a pool block is one key block");
  blocks_per_head_ = d_.kv_blocks > 0 ? d_.kv_blocks : cpu_attention::round_up_to_block(d_.capacity) / cpu_attention::kKeyBlock;
  head_stride_ = blocks_per_head_ * cpu_attention::kKeyBlock * d_.head_dim;
  layer_stride_ = d_.kv_heads * head_stride_;
  const int64_t total = d_.layers * layer_stride_;
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
                            d_.capacity, d_.layers, 2.0 * total * (kv_f16_ ? 2 : 4) / 1048576.0));
  }
  const int64_t b = d_.max_rows;
  x_.resize(b * d_.hidden);
  xn_.resize(b * d_.hidden);
  // The fused projections' outputs share the per-part buffers' memory budget: a CPU plan does not
  // fuse today, but the ops run whatever the model asks.
  q_.resize(b * (fused ? d_.q_dim + 2 * d_.kv_dim : d_.q_dim));
  k_.resize(b * d_.kv_dim);
  v_.resize(b * d_.kv_dim);
  attn_.resize(b * d_.q_dim);
  proj_.resize(b * d_.hidden);
  gate_.resize(b * d_.inter);
  up_.resize(b * (fused ? 2 * d_.inter : d_.inter));
  const int64_t group = d_.heads / d_.kv_heads;
  scores_.resize(static_cast<size_t>(pool_.size() * group * cpu_attention::round_up_to_block(d_.capacity)));
  // Split rows: only a decode row splits, and the single-sequence engine has at most one.
  const int64_t split_rows = d_.kv_blocks > 0 ? b : 1;
  thread_slots_ = split_rows * d_.kv_heads * kMaxAttentionParts;
  const int64_t partial_rows = (thread_slots_ + pool_.size()) * group;
  attn_part_.resize(static_cast<size_t>(partial_rows * d_.head_dim));
  part_max_.resize(static_cast<size_t>(partial_rows));
  part_sum_.resize(static_cast<size_t>(partial_rows));
  row_blocks_.resize(static_cast<size_t>(b));
  row_parts_.resize(static_cast<size_t>(b));
  part_base_.resize(static_cast<size_t>(b));
  unit_row_.resize(static_cast<size_t>(b * kMaxAttentionParts));
  unit_part_.resize(static_cast<size_t>(b * kMaxAttentionParts));
  sequence_rows_.reserve(static_cast<size_t>(b));
}

float* CpuOps::buffer(Buffer b) {
  switch (b) {
    case Buffer::Normed: return xn_.data();
    case Buffer::Q: return q_.data();
    case Buffer::K: return k_.data();
    case Buffer::V: return v_.data();
    case Buffer::Qkv: return q_.data();  // sized for q | k | v rows when fused
    case Buffer::Attn: return attn_.data();
    case Buffer::Proj: return proj_.data();
    case Buffer::Gate: return gate_.data();
    case Buffer::Up: return up_.data();
    case Buffer::GateUp: return up_.data();  // sized for gate | up rows when fused
  }
  return nullptr;
}

int64_t CpuOps::attention_parts(int64_t position) const {
  // Parts of at least kMinPartPositions, at most kMaxAttentionParts, enough for 2 x threads units
  // over the KV heads. A function of the row alone (never of the other rows of the step), so a
  // sequence's decode row computes the same in a batch as alone.
  constexpr int64_t kMinPartPositions = 256;
  const int64_t threads = pool_.size(), n_kv = d_.kv_heads;
  if (n_kv >= 2 * threads) return 1;
  const int64_t most = std::max<int64_t>(1, std::min<int64_t>(kMaxAttentionParts, (position + 1) / kMinPartPositions));
  return std::min<int64_t>(most, (2 * threads + n_kv - 1) / n_kv);
}

void CpuOps::stage(const StepRows& rows, float* logits, int64_t) {
  // A contiguous cache holds one sequence; a paged pool any number, through their block tables.
  if (!rows.tables && rows.sequences)
    for (int64_t i = 0; i < rows.count; ++i)
      if (rows.sequences[i] != rows.sequences[0])
        throw unsupported("the CPU engine's contiguous KV cache holds one sequence; rows of several sequences need "
                          "the batched engine's block tables");
  rows_ = rows;
  logits_ = logits;
  if (rows.tables) {
    sequence_rows_.assign(static_cast<size_t>(rows.table_count), 0);
    for (int64_t i = 0; i < rows.count; ++i) ++sequence_rows_[static_cast<size_t>(rows.sequences[i])];
  }
  int64_t units = 0, split_slots = 0;
  for (int64_t i = 0; i < rows.count; ++i) {
    const size_t r = static_cast<size_t>(i);
    const bool alone = rows.tables ? sequence_rows_[static_cast<size_t>(rows.sequences[i])] == 1 : rows.count == 1;
    const int64_t parts = alone ? attention_parts(rows.positions[i]) : 1;
    row_blocks_[r] = rows.tables ? rows.tables[rows.sequences[i]].blocks : nullptr;
    row_parts_[r] = parts;
    part_base_[r] = split_slots;
    if (parts > 1) split_slots += d_.kv_heads * parts;
    for (int64_t part = 0; part < parts; ++part, ++units) {
      unit_row_[static_cast<size_t>(units)] = i;
      unit_part_[static_cast<size_t>(units)] = part;
    }
  }
  row_units_ = units;
}

void CpuOps::embed(int64_t m) {
  for (int64_t i = 0; i < m; ++i)
    std::copy_n(embedding_->data() + static_cast<int64_t>(rows_.tokens[i]) * d_.hidden, d_.hidden,
                x_.data() + i * d_.hidden);
  if (d_.embed_scale != 1.0f)
    for (int64_t i = 0; i < m * d_.hidden; ++i) x_[static_cast<size_t>(i)] *= d_.embed_scale;
}

void CpuOps::rmsnorm_proj(int norm, int64_t m) {
  // rms_norm reads each row whole before writing it: in place is safe.
  const float* weight = vectors_[static_cast<size_t>(norm)]->data();
  for_rows(m, [&](int64_t r0, int64_t r1) {
    float* p = proj_.data() + r0 * d_.hidden;
    ops::rms_norm(p, weight, p, r1 - r0, d_.hidden, d_.eps);
  });
}

void CpuOps::add_rmsnorm(bool add_proj, int norm, int64_t row0, int64_t rows) {
  const float* weight = vectors_[static_cast<size_t>(norm)]->data();
  for_rows(rows, [&](int64_t r0, int64_t r1) {
    const int64_t first = (row0 + r0) * d_.hidden;
    float* x = x_.data() + first;
    if (add_proj) ops::add_inplace(x, proj_.data() + first, (r1 - r0) * d_.hidden);
    ops::rms_norm(x, weight, xn_.data() + first, r1 - r0, d_.hidden, d_.eps);
  });
}

void CpuOps::dense(const Dense& d, const float* x, int64_t m, float* y, int64_t ldy) {
  if (!d.w16.empty()) ops::dense_matmul_f16(x, m, d.k, d.w16.data(), d.n, d.bias, y, ldy, &pool_);
  else ops::dense_matmul(x, m, d.k, d.w32, d.n, d.bias, y, ldy, &pool_);
}

void CpuOps::linear(ModelLinear& l, View in, View out, int64_t m) {
  float* x = row(in, 0);
  float* y = row(out, 0);
  if (l.quantized) {
    // QuantLinear reads and writes contiguous rows (in.stride == K, out.stride == N: the model's views).
    ActTensor xt{x, DType::F32, m, l.k, DeviceKind::Cpu};
    ActTensor yt{y, DType::F32, m, l.n, DeviceKind::Cpu};
    l.quantized->forward(xt, yt, ctx_);
    return;
  }
  dense(dense_[static_cast<size_t>(l.dense)], x, m, y, out.stride);
}

void CpuOps::rope_store_kv(int64_t layer, View q, View k, View v, int64_t m) {
  // Rows of a step are distinct (sequence, position) pairs: they write distinct cache slots.
  for_rows(m, [&](int64_t r0, int64_t r1) { rope_store_rows(layer, q, k, v, r0, r1); });
}

void CpuOps::rope_store_rows(int64_t layer, View q, View k, View v, int64_t r0, int64_t r1) {
  constexpr int64_t kConvertChunk = 128;  // keys converted to fp16 per F16C call (stack scratch)
  const int64_t hd = d_.head_dim, base = layer * layer_stride_;
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t p = rows_.positions[i];
    const int32_t* blocks = row_blocks_[static_cast<size_t>(i)];
    const int64_t block = blocks ? blocks[p / cpu_attention::kKeyBlock] : p / cpu_attention::kKeyBlock;
    const float* cs = rope_->cos.data() + p * rope_->half;
    const float* sn = rope_->sin.data() + p * rope_->half;
    ops::apply_rope(row(q, i), d_.heads, hd, rope_->half, cs, sn);
    ops::apply_rope(row(k, i), d_.kv_heads, hd, rope_->half, cs, sn);
    for (int64_t h = 0; h < d_.kv_heads; ++h) {
      const int64_t head = base + h * head_stride_;
      const int64_t voff = head + cpu_attention::paged_value_index(block, p, 0, hd);
      const float* ks = row(k, i) + h * hd;
      const float* vs = row(v, i) + h * hd;
      if (kv_f16_ && best_cpu_isa() >= CpuIsa::Avx2) {
        // Keys converted in a row, then spread over the block's dimension-major layout.
        uint16_t converted[kConvertChunk];
        for (int64_t j0 = 0; j0 < hd; j0 += kConvertChunk) {
          const int64_t n = std::min(kConvertChunk, hd - j0);
          ops::f32_to_fp16_avx2(ks + j0, converted, n);
          for (int64_t j = 0; j < n; ++j)
            k16_[head + cpu_attention::paged_key_index(block, p, j0 + j, hd)] = converted[j];
        }
        ops::f32_to_fp16_avx2(vs, v16_.get() + voff, hd);
      } else if (kv_f16_) {
        for (int64_t j = 0; j < hd; ++j) {
          k16_[head + cpu_attention::paged_key_index(block, p, j, hd)] = f32_to_fp16(ks[j]);
          v16_[voff + j] = f32_to_fp16(vs[j]);
        }
      } else {
        for (int64_t j = 0; j < hd; ++j) k32_[head + cpu_attention::paged_key_index(block, p, j, hd)] = ks[j];
        std::copy_n(vs, hd, v32_.get() + voff);
      }
    }
  }
}

void CpuOps::attention(int64_t layer, View qv, View outv, int64_t m) {
  const int64_t group = d_.heads / d_.kv_heads, hd = d_.head_dim, n_kv = d_.kv_heads;
  const float scale = d_.score_scale();
  const float softcap = d_.attn_softcap;
  const int64_t base = layer * layer_stride_;
  // Work units: (KV head, row, part of the row's positions), from stage(). A unit runs the whole
  // GQA group over its positions, so each key / value block is read once for the group. Decode
  // rows with few KV heads (SmolLM2: 3 on 2 threads) have their positions split into parts merged
  // after; prefill rows, and steps of many rows, already give every thread work.
  const int64_t row_scores = group * cpu_attention::round_up_to_block(d_.capacity);
  const int64_t units = row_units_;
  pool_.parallel_for(n_kv * units, [&](int t, int64_t u0, int64_t u1) {
    float* scores = scores_.data() + static_cast<int64_t>(t) * row_scores;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t kvh = u / units, r = u % units;
      const int64_t i = unit_row_[static_cast<size_t>(r)], part = unit_part_[static_cast<size_t>(r)];
      const int64_t parts = row_parts_[static_cast<size_t>(i)];
      const int64_t p = rows_.positions[i];
      const int64_t first = d_.first_attended(layer, p);
      // Parts cover [first, p] in whole key blocks.
      const int64_t len = (p - first + parts) / parts;
      const int64_t chunk = cpu_attention::round_up_to_block(len);
      const int64_t lo = first + part * chunk, hi = std::min(p, lo + chunk - 1);
      const float* q = row(qv, i) + kvh * group * hd;
      const int64_t off = base + kvh * head_stride_;
      // This unit's partial rows: its own slot when the row is split, the thread's otherwise.
      const int64_t slot = (parts > 1 ? part_base_[static_cast<size_t>(i)] + kvh * parts + part
                                      : thread_slots_ + static_cast<int64_t>(t)) * group;
      float* out = attn_part_.data() + slot * hd;
      float* mx = part_max_.data() + slot;
      float* sum = part_sum_.data() + slot;
      if (lo > hi) {  // nothing left for this part (short context)
        std::fill(sum, sum + group, 0.0f);
        continue;
      }
      const int32_t* blocks = row_blocks_[static_cast<size_t>(i)];
      if (kv_f16_)
        cpu_attention::attend_partial(q, hd, group, k16_.get() + off, v16_.get() + off, lo, hi, hd, scale, scores, out,
                                      mx, sum, best_cpu_isa(), blocks, softcap);
      else
        cpu_attention::attend_partial(q, hd, group, k32_.get() + off, v32_.get() + off, lo, hi, hd, scale, scores, out,
                                      mx, sum, best_cpu_isa(), blocks, softcap);
      if (parts == 1) {
        for (int64_t h = 0; h < group; ++h) {
          float* dst = row(outv, i) + (kvh * group + h) * hd;
          const float inv = 1.0f / sum[h];
          for (int64_t j = 0; j < hd; ++j) dst[j] = out[h * hd + j] * inv;
        }
      }
    }
  });
  // Split rows: merge each head's parts in place (rows of attn_part_ at slot + part * group + h).
  for (int64_t i = 0; i < m; ++i) {
    const int64_t parts = row_parts_[static_cast<size_t>(i)];
    if (parts == 1) continue;
    for (int64_t kvh = 0; kvh < n_kv; ++kvh)
      for (int64_t h = 0; h < group; ++h) {
        const int64_t slot = (part_base_[static_cast<size_t>(i)] + kvh * parts) * group + h;
        cpu_attention::merge_partials(attn_part_.data() + slot * hd, part_max_.data() + slot, part_sum_.data() + slot,
                                      parts, group, hd, row(outv, i) + (kvh * group + h) * hd);
      }
  }
}

void CpuOps::gather_rows(const int64_t* rows, int64_t n) {
  // rows[k] >= k (ascending), so row k is written only after every row that still reads it.
  for (int64_t k = 0; k < n; ++k) {
    if (rows[k] == k) continue;
    std::copy_n(x_.data() + rows[k] * d_.hidden, d_.hidden, x_.data() + k * d_.hidden);
    std::copy_n(proj_.data() + rows[k] * d_.hidden, d_.hidden, proj_.data() + k * d_.hidden);
  }
}

void CpuOps::silu_mul(View gate, View up, View out, int64_t m) {
  const int64_t n = d_.inter;
  if (out.buffer == gate.buffer && out.col == gate.col && gate.stride == n && up.stride == n) {
    // In place over contiguous rows.
    for_rows(m, [&](int64_t r0, int64_t r1) { ops::silu_mul(row(gate, r0), row(up, r0), (r1 - r0) * n); });
    return;
  }
  for_rows(m, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      float* o = row(out, i);
      if (o != row(gate, i)) std::copy_n(row(gate, i), n, o);
      ops::silu_mul(o, row(up, i), n);
    }
  });
}

void CpuOps::gelu_tanh_mul(View gate, View up, View out, int64_t m) {
  const int64_t n = d_.inter;
  for_rows(m, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      float* o = row(out, i);
      if (o != row(gate, i)) std::copy_n(row(gate, i), n, o);
      ops::gelu_tanh_mul(o, row(up, i), n);
    }
  });
}

void CpuOps::head(ModelLinear& head, int64_t row0, int64_t rows) {
  const float* x = xn_.data() + row0 * d_.hidden;
  if (head.quantized) {
    ActTensor xt{const_cast<float*>(x), DType::F32, rows, d_.hidden, DeviceKind::Cpu};
    ActTensor yt{logits_, DType::F32, rows, d_.vocab, DeviceKind::Cpu};
    head.quantized->forward(xt, yt, ctx_);
  } else {
    dense(head.dense >= 0 ? dense_[static_cast<size_t>(head.dense)] : tied_head_, x, rows, logits_, d_.vocab);
  }
  if (d_.final_softcap > 0) ops::softcap(logits_, rows * d_.vocab, d_.final_softcap);
}

}  // namespace model

std::unique_ptr<ForwardEngine> make_cpu_engine(std::shared_ptr<const ModelWeights> weights,
                                               const EngineOptions& options) {
  return std::make_unique<model::LlamaEngine<ForwardEngine, model::CpuOps>>(std::move(weights), options);
}

std::unique_ptr<BatchEngine> make_cpu_batch_engine(std::shared_ptr<const ModelWeights> weights,
                                                   const EngineOptions& options) {
  return std::make_unique<model::LlamaBatchEngine<model::CpuOps>>(std::move(weights), options);
}

}  // namespace qrt
