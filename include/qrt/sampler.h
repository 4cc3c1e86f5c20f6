// Next-token sampling from a row of logits: greedy, or temperature with top-k / top-p / min-p
// filters, plus a repetition penalty; deterministic for a given seed on every platform (the random
// stream is our own splitmix64, not a std:: distribution whose algorithm varies by library).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qrt {

struct SamplingParams {
  float temperature = 0.0f;        // <= 0: greedy (argmax)
  int top_k = 0;                   // 0 = off
  float top_p = 1.0f;              // 1 = off; keep the smallest set whose probability >= top_p
  float min_p = 0.0f;              // 0 = off; drop tokens with p < min_p * p_max
  float repetition_penalty = 1.0f; // 1 = off; Hugging Face rule: positive logits / penalty, negative * penalty
  int repetition_last_n = 64;      // how many recent tokens the penalty looks at; < 0 = all
  uint64_t seed = 0;

  // Throws qrt::Error naming the field for out-of-range values (negative top_k, top_p outside (0, 1], ...).
  void validate() const;
  std::string describe() const;    // "greedy" or "temp 0.7, top-k 40, top-p 0.9, seed 1"
  bool operator==(const SamplingParams&) const = default;
};

// The greedy choice: the index of the largest of logits[0..vocab), the lowest among equal ones,
// NaN counting as -inf (0 when every logit is NaN or -inf). Sampler::sample at temperature 0
// without a repetition penalty, and what engines that pick the token on the device return.
int32_t greedy_token(const float* logits, int64_t vocab);
// True when `params` pick greedy_token() of the raw logits (greedy, no repetition penalty).
bool is_plain_greedy(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token from logits[0..vocab). `history` = tokens seen so far (prompt + generated), for
  // the repetition penalty. Does not modify `logits`. Never throws on finite input; NaN logits
  // are treated as -inf.
  int32_t sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history);
  const SamplingParams& params() const { return params_; }
  // Uniform double in [0, 1) from the sampler's stream (exposed for tests).
  double next_uniform();

 private:
  SamplingParams params_;
  uint64_t state_;
  std::vector<float> work_;                        // logits after penalty / temperature
  std::vector<std::pair<float, int32_t>> cand_;    // candidate (logit, id), sorted descending
};

}  // namespace qrt
