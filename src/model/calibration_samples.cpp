// Model-sampled calibration text (see calibration_samples.h). A plain batched decode over the
// float weights (calibration_layer.h's block): one position of every sequence of the batch per
// step, a KV cache per sequence, the reference attention of ops.h. Speed matters less than
// independence from the engines: the sampled distribution is the float model's, whatever backend
// would run the checkpoint.
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
  const int64_t V = c.vocab_size, L = o.length;
  if (start_token < 0 || start_token >= V)
    throw invalid_input(fmt::format("sampled calibration: start token {} outside the vocabulary of {}", start_token, V));

  DenseModel model = load_dense_model(ck);
  const int64_t B = std::min(o.batch, o.sequences);
  // One row per sequence and step, each sequence's keys in a KV cache of L positions.
  DenseBlock block(c, L, B, pool);
  std::vector<DenseKvCache> caches;
  std::vector<float> logits;
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
      block.forward(model, cur.data(), DenseRows{nb, 1, pos}, caches, logits);
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
