// Model-sampled calibration text (see calibration_samples.h). A plain batched decode over the
// float weights: one position of every sequence of the batch per step, a KV cache per sequence,
// the reference attention of ops.h. Speed matters less than independence from the engines: the
// sampled distribution is the float model's, whatever backend would run the checkpoint.
#include "model/calibration_samples.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "model/calibration_layer.h"
#include "model/ops.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// One draw from softmax(logits / temperature), optionally without the tokens below min_p x p_max.
// O(vocab): no sort, so sampling costs little next to the forward pass.
int32_t draw(const float* logits, int64_t vocab, float temperature, float min_p, uint64_t& rng,
             std::vector<double>& prob) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i)
    if (std::isfinite(logits[i])) mx = std::max(mx, logits[i]);
  if (!std::isfinite(mx)) return 0;
  prob.resize(static_cast<size_t>(vocab));
  const double inv_t = 1.0 / temperature, floor_p = min_p > 0 ? min_p : 0.0;
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    double p = std::isfinite(logits[i]) ? std::exp((static_cast<double>(logits[i]) - mx) * inv_t) : 0.0;
    if (p < floor_p) p = 0;  // p_max is exp(0) = 1, so min_p x p_max = min_p
    prob[i] = p;
    total += p;
  }
  const double u = static_cast<double>(splitmix64(rng) >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    cum += prob[i];
    if (u < cum) return static_cast<int32_t>(i);
  }
  for (int64_t i = vocab - 1; i >= 0; --i)
    if (prob[i] > 0) return static_cast<int32_t>(i);
  return 0;
}

}  // namespace

std::vector<int32_t> sample_calibration_tokens(const Checkpoint& ck, int32_t start_token,
                                               const SampledTextOptions& o, ThreadPool& pool,
                                               const std::function<void(int64_t, int64_t)>& progress) {
  const ModelConfig& c = ck.config();
  if (o.sequences < 1 || o.length < 2 || o.batch < 1)
    throw invalid_input(fmt::format("sampled calibration: {} sequences of {} tokens (batch {}): need >= 1, >= 2, >= 1",
                                    o.sequences, o.length, o.batch));
  if (!(o.temperature > 0) || !std::isfinite(o.temperature) || !(o.min_p >= 0 && o.min_p < 1))
    throw invalid_input(fmt::format("sampled calibration: temperature {} must be > 0 and min_p {} in [0, 1)",
                                    o.temperature, o.min_p));
  const int64_t h = c.hidden_size, hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads, V = c.vocab_size;
  const int64_t qd = nh * hd, kvd = nkv * hd, L = o.length, layers = c.num_layers;
  if (start_token < 0 || start_token >= V)
    throw invalid_input(fmt::format("sampled calibration: start token {} outside the vocabulary of {}", start_token, V));
  if (nkv <= 0 || nh % nkv != 0) throw invalid_input(fmt::format("{}: {} heads, {} KV heads", ck.path(), nh, nkv));

  const std::vector<float> embed = ck.load_float("model.embed_tokens.weight");
  if (static_cast<int64_t>(embed.size()) != V * h)
    throw invalid_input(fmt::format("{}: model.embed_tokens.weight has {} values, expected {} x {}", ck.path(),
                                    embed.size(), V, h));
  std::vector<float> head_own;
  if (ck.has_tensor("lm_head.weight")) {
    head_own = ck.load_float("lm_head.weight");
    if (static_cast<int64_t>(head_own.size()) != V * h)
      throw invalid_input(fmt::format("{}: lm_head.weight has {} values, expected {} x {}", ck.path(), head_own.size(), V, h));
  }
  const float* head = head_own.empty() ? embed.data() : head_own.data();
  const std::vector<float> final_norm = ck.load_float("model.norm.weight");
  if (static_cast<int64_t>(final_norm.size()) != h)
    throw invalid_input(fmt::format("{}: model.norm.weight has {} values, expected {}", ck.path(), final_norm.size(), h));
  std::vector<DenseDecoderLayer> layer(static_cast<size_t>(layers));
  for (int64_t li = 0; li < layers; ++li) layer[li] = load_dense_decoder_layer(ck, li);

  ops::RopeTable rope;
  rope.build(ops::rope_inv_freq(c), L);
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t B = std::min(o.batch, o.sequences);
  // KV cache [layer][sequence][kv head][position][head_dim]: one head's keys are contiguous rows,
  // as attend_one reads them.
  const int64_t per_head = L * hd, per_seq = nkv * per_head, per_layer = B * per_seq;
  std::vector<float> kc(static_cast<size_t>(layers * per_layer)), vc(kc.size());
  std::vector<float> x(static_cast<size_t>(B * h)), xn(x.size()), q, k, v, attn(static_cast<size_t>(B * qd)), tmp,
      gate, up, logits(static_cast<size_t>(B * V));
  std::vector<std::vector<float>> scores(static_cast<size_t>(pool.size()), std::vector<float>(static_cast<size_t>(L)));
  std::vector<std::vector<double>> prob(static_cast<size_t>(B));
  std::vector<int32_t> out(static_cast<size_t>(o.sequences * L));

  for (int64_t s0 = 0; s0 < o.sequences; s0 += B) {
    const int64_t nb = std::min(B, o.sequences - s0);
    std::vector<uint64_t> rng(static_cast<size_t>(nb));
    for (int64_t b = 0; b < nb; ++b) {
      uint64_t st = o.seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(s0 + b + 1));
      rng[b] = splitmix64(st);
    }
    std::vector<int32_t> cur(static_cast<size_t>(nb), start_token);
    for (int64_t pos = 0; pos < L; ++pos) {
      for (int64_t b = 0; b < nb; ++b) out[(s0 + b) * L + pos] = cur[b];
      if (pos == L - 1) break;
      for (int64_t b = 0; b < nb; ++b) std::copy_n(embed.data() + static_cast<int64_t>(cur[b]) * h, h, x.data() + b * h);
      const float* cs = rope.cos.data() + pos * rope.half;
      const float* sn = rope.sin.data() + pos * rope.half;
      for (int64_t li = 0; li < layers; ++li) {
        const DenseDecoderLayer& d = layer[li];
        ops::rms_norm(x.data(), d.input_norm.data(), xn.data(), nb, h, eps);
        apply_dense(d.q, xn.data(), nb, q, pool);
        apply_dense(d.k, xn.data(), nb, k, pool);
        apply_dense(d.v, xn.data(), nb, v, pool);
        float* kl = kc.data() + li * per_layer;
        float* vl = vc.data() + li * per_layer;
        for (int64_t b = 0; b < nb; ++b) {
          ops::apply_rope(q.data() + b * qd, nh, hd, rope.half, cs, sn);
          ops::apply_rope(k.data() + b * kvd, nkv, hd, rope.half, cs, sn);
          for (int64_t g = 0; g < nkv; ++g) {
            std::copy_n(k.data() + b * kvd + g * hd, hd, kl + b * per_seq + g * per_head + pos * hd);
            std::copy_n(v.data() + b * kvd + g * hd, hd, vl + b * per_seq + g * per_head + pos * hd);
          }
        }
        pool.parallel_for(nb * nh, [&](int t, int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / nh, hh = i % nh, g = hh / (nh / nkv);
            ops::attend_one(q.data() + b * qd + hh * hd, kl + b * per_seq + g * per_head,
                            vl + b * per_seq + g * per_head, 0, pos, hd, scale, scores[t].data(),
                            attn.data() + b * qd + hh * hd);
          }
        });
        apply_dense(d.o, attn.data(), nb, tmp, pool);
        ops::add_inplace(x.data(), tmp.data(), nb * h);
        ops::rms_norm(x.data(), d.post_attention_norm.data(), xn.data(), nb, h, eps);
        apply_dense(d.gate, xn.data(), nb, gate, pool);
        apply_dense(d.up, xn.data(), nb, up, pool);
        ops::silu_mul(gate.data(), up.data(), nb * c.intermediate_size);
        apply_dense(d.down, gate.data(), nb, tmp, pool);
        ops::add_inplace(x.data(), tmp.data(), nb * h);
      }
      ops::rms_norm(x.data(), final_norm.data(), xn.data(), nb, h, eps);
      ops::dense_matmul(xn.data(), nb, h, head, V, nullptr, logits.data(), V, &pool);
      pool.parallel_for(nb, [&](int, int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          cur[b] = draw(logits.data() + b * V, V, o.temperature, o.min_p, rng[b], prob[b]);
      });
    }
    if (progress) progress(s0 + nb, o.sequences);
  }
  return out;
}

}  // namespace qrt
