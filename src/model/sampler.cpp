// Sampler: repetition penalty -> (greedy | temperature -> top-k -> top-p -> min-p -> draw).
// The order follows Hugging Face's logits processors so the same settings mean the same thing.
#include "qrt/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include <fmt/format.h>

#include "core/cpu_isa.h"
#include "model/ops_avx2.h"
#include "qrt/error.h"

namespace qrt {

void SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0)
    throw invalid_input(fmt::format("sampling: temperature {} must be >= 0 (0 = greedy)", temperature));
  // Logits are divided by the temperature in float32: below ~3e-39 that divides by zero.
  if (temperature > 0 && !std::isnormal(1.0f / temperature))
    throw invalid_input(fmt::format("sampling: temperature {:g} is too small to divide by in float32 (use 0 for "
                                    "greedy, or a value of at least 1e-30)",
                                    temperature));
  if (top_k < 0) throw invalid_input(fmt::format("sampling: top-k {} must be >= 0 (0 = off)", top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f))
    throw invalid_input(fmt::format("sampling: top-p {} must be in (0, 1]", top_p));
  if (!(min_p >= 0.0f && min_p <= 1.0f))
    throw invalid_input(fmt::format("sampling: min-p {} must be in [0, 1]", min_p));
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    throw invalid_input(fmt::format("sampling: repetition penalty {} must be > 0 (1 = off)", repetition_penalty));
}

std::string SamplingParams::describe() const {
  std::string s = temperature <= 0 ? "greedy" : fmt::format("temp {:g}", temperature);
  if (temperature > 0) {
    if (top_k > 0) s += fmt::format(", top-k {}", top_k);
    if (top_p < 1) s += fmt::format(", top-p {:g}", top_p);
    if (min_p > 0) s += fmt::format(", min-p {:g}", min_p);
    s += fmt::format(", seed {}", seed);
  }
  if (repetition_penalty != 1) s += fmt::format(", repeat-penalty {:g}", repetition_penalty);
  return s;
}

int32_t greedy_token(const float* logits, int64_t vocab) {
  if (best_cpu_isa() >= CpuIsa::Avx2) return static_cast<int32_t>(ops::argmax_avx2(logits, vocab));
  int64_t best = 0;
  float best_v = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > best_v) best_v = logits[i], best = i;  // NaN is never greater
  return static_cast<int32_t>(best);
}

bool is_plain_greedy(const SamplingParams& params) {
  return params.temperature <= 0.0f && params.repetition_penalty == 1.0f;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), state_(params.seed) {
  params_.validate();
}

// splitmix64: tiny, well mixed, and identical everywhere.
double Sampler::next_uniform() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

int32_t Sampler::sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  if (vocab <= 0) return 0;
  // Plain greedy reads the logits where they are: greedy_token already passes over NaN, and the
  // copy below (a vocabulary of floats per row per step) was most of the cost.
  if (is_plain_greedy(params_)) return greedy_token(logits, vocab);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  work_.assign(logits, logits + vocab);
  for (float& v : work_)
    if (std::isnan(v)) v = neg_inf;

  if (params_.repetition_penalty != 1.0f && !history.empty()) {
    const size_t n = params_.repetition_last_n < 0
                         ? history.size()
                         : std::min(history.size(), static_cast<size_t>(params_.repetition_last_n));
    std::unordered_set<int32_t> seen(history.end() - static_cast<std::ptrdiff_t>(n), history.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= vocab) continue;
      float& v = work_[t];
      v = v > 0 ? v / params_.repetition_penalty : v * params_.repetition_penalty;
    }
  }

  if (params_.temperature <= 0.0f) return greedy_token(work_.data(), vocab);

  // (logit - max) / t rather than logit / t: the same softmax, but a tiny temperature cannot turn
  // large logits into +inf (inf - inf is NaN, and NaN weights once picked the least likely token).
  const float inv_t = 1.0f / params_.temperature;
  float top = neg_inf;
  for (int64_t i = 0; i < vocab; ++i) top = std::max(top, work_[i]);
  cand_.clear();
  cand_.reserve(vocab);
  for (int64_t i = 0; i < vocab; ++i)
    if (work_[i] != neg_inf) cand_.emplace_back(top == work_[i] ? 0.0f : (work_[i] - top) * inv_t, static_cast<int32_t>(i));
  if (cand_.empty()) return 0;
  // Descending by logit, ties by lower id: a total order, so the result does not depend on the
  // sort implementation.
  auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t keep = cand_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
    cand_.resize(keep);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }

  // Softmax over the survivors (probabilities in place of the logits).
  const float max_logit = cand_[0].first;
  double total = 0;
  for (auto& c : cand_) {
    c.first = std::exp(c.first - max_logit);
    total += c.first;
  }
  for (auto& c : cand_) c.first = static_cast<float>(c.first / total);

  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += cand_[n].first;
      ++n;
      if (cum >= params_.top_p) break;
    }
    keep = std::max<size_t>(1, n);
  }
  if (params_.min_p > 0.0f) {
    const float threshold = params_.min_p * cand_[0].first;
    size_t n = 1;
    while (n < keep && cand_[n].first >= threshold) ++n;
    keep = n;
  }

  double kept_total = 0;
  for (size_t i = 0; i < keep; ++i) kept_total += cand_[i].first;
  const double u = next_uniform() * kept_total;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += cand_[i].first;
    if (u < cum) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace qrt
