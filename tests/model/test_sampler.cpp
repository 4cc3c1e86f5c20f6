// Sampler: greedy, determinism per seed, and each filter on hand-made logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "qrt/error.h"
#include "qrt/sampler.h"

namespace qrt {
namespace {

// Draw many times and return the set of ids produced.
std::set<int32_t> support(SamplingParams p, const std::vector<float>& logits, int draws = 2000,
                          const std::vector<int32_t>& history = {}) {
  Sampler s(p);
  std::set<int32_t> seen;
  for (int i = 0; i < draws; ++i) seen.insert(s.sample(logits.data(), static_cast<int64_t>(logits.size()), history));
  return seen;
}

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  SamplingParams p;  // temperature 0
  Sampler s(p);
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(s.sample(l.data(), 5, {}), 1);
  std::vector<float> nan = {NAN, -5.0f, NAN};
  EXPECT_EQ(s.sample(nan.data(), 3, {}), 1);
}

// The same rule over vocabularies long enough for the vector passes: ties, NaN, the maximum in a
// vector or in the tail, +infinity, nothing above -infinity; against the rule's plain loop.
TEST(Sampler, GreedyTokenRuleAtVocabularySizes) {
  auto rule = [](const std::vector<float>& v) {
    int64_t best = 0;
    float best_v = -INFINITY;
    for (size_t i = 0; i < v.size(); ++i)
      if (v[i] > best_v) best_v = v[i], best = static_cast<int64_t>(i);
    return static_cast<int32_t>(best);
  };
  for (size_t n : {8u, 9u, 31u, 49152u, 49155u}) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7919) % 1000) / 100.0f - 5.0f;
    EXPECT_EQ(greedy_token(v.data(), static_cast<int64_t>(n)), rule(v)) << n;
    v[n / 2] = 20.0f, v[n - 1] = 20.0f;  // a tie: the lower id
    EXPECT_EQ(greedy_token(v.data(), static_cast<int64_t>(n)), static_cast<int32_t>(n / 2)) << n;
    v[n - 1] = 21.0f;  // the maximum last (in the scalar tail when n % 8 != 0)
    EXPECT_EQ(greedy_token(v.data(), static_cast<int64_t>(n)), static_cast<int32_t>(n - 1)) << n;
    for (size_t i = 0; i < n; i += 3) v[i] = NAN;
    EXPECT_EQ(greedy_token(v.data(), static_cast<int64_t>(n)), rule(v)) << n;
    v[1] = INFINITY;
    EXPECT_EQ(greedy_token(v.data(), static_cast<int64_t>(n)), 1) << n;
    std::fill(v.begin(), v.end(), -INFINITY);
    v[n - 2] = NAN;
    EXPECT_EQ(greedy_token(v.data(), static_cast<int64_t>(n)), 0) << n;
  }
}

// The rule GPU engines reproduce when they pick the token on the device.
TEST(Sampler, GreedyTokenRule) {
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(greedy_token(l.data(), 5), 1);
  std::vector<float> nan = {NAN, -5.0f, NAN, -5.0f};
  EXPECT_EQ(greedy_token(nan.data(), 4), 1);
  std::vector<float> none = {NAN, -INFINITY, NAN};
  EXPECT_EQ(greedy_token(none.data(), 3), 0);
  std::vector<float> neg = {-INFINITY, -INFINITY, -7.0f};
  EXPECT_EQ(greedy_token(neg.data(), 3), 2);
  std::vector<float> zeros = {-0.0f, 0.0f};
  EXPECT_EQ(greedy_token(zeros.data(), 2), 0);
  SamplingParams p;
  EXPECT_TRUE(is_plain_greedy(p));
  p.repetition_penalty = 1.1f;
  EXPECT_FALSE(is_plain_greedy(p));
  p.repetition_penalty = 1.0f;
  p.temperature = 0.5f;
  EXPECT_FALSE(is_plain_greedy(p));
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDiffers) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[i] = std::sin(i * 0.37f) * 2;
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) out.push_back(s.sample(l.data(), 100, out));
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, FrequenciesFollowSoftmax) {
  std::vector<float> l = {0.0f, std::log(3.0f)};  // probabilities 1/4, 3/4
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  Sampler s(p);
  int ones = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ones += s.sample(l.data(), 2, {});
  EXPECT_NEAR(ones / double(n), 0.75, 0.015);
}

TEST(Sampler, TopKKeepsOnlyKBest) {
  std::vector<float> l = {1.0f, 5.0f, 4.9f, 0.5f, 4.8f, 0.0f};
  SamplingParams p;
  p.temperature = 5.0f;  // flat: without the filter every id would appear
  p.top_k = 2;
  EXPECT_EQ(support(p, l), (std::set<int32_t>{1, 2}));
  p.top_k = 0;
  EXPECT_EQ(support(p, l).size(), 6u);
}

TEST(Sampler, TopPKeepsSmallestNucleus) {
  // softmax at temperature 1 of log-probabilities: 0.5, 0.3, 0.15, 0.05
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.75f;  // 0.5 < 0.75 <= 0.8 -> ids 0, 1
  EXPECT_EQ(support(p, l), (std::set<int32_t>{0, 1}));
  p.top_p = 0.85f;  // -> ids 0, 1, 2
  EXPECT_EQ(support(p, l), (std::set<int32_t>{0, 1, 2}));
  p.top_p = 0.1f;  // always at least one
  EXPECT_EQ(support(p, l), (std::set<int32_t>{0}));
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.25f;  // threshold 0.125: keeps 0.5, 0.3, 0.15
  EXPECT_EQ(support(p, l), (std::set<int32_t>{0, 1, 2}));
  p.min_p = 0.7f;  // threshold 0.35: keeps 0.5
  EXPECT_EQ(support(p, l), (std::set<int32_t>{0}));
}

TEST(Sampler, RepetitionPenaltyFollowsHuggingFaceRule) {
  // Greedy: id 0 (2.0) beats id 1 (1.5) until 0 is penalized: 2.0 / 2 = 1.0 < 1.5.
  std::vector<float> l = {2.0f, 1.5f, -0.5f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  EXPECT_EQ(s.sample(l.data(), 3, {}), 0);
  EXPECT_EQ(s.sample(l.data(), 3, {0}), 1);
  // A negative logit is multiplied: -0.5 * 2 = -1.0 (still last); positive ones are divided.
  std::vector<float> neg = {-0.6f, -0.5f};
  EXPECT_EQ(s.sample(neg.data(), 2, {1}), 0);
  // Only the last repetition_last_n tokens count.
  p.repetition_last_n = 1;
  Sampler s2(p);
  EXPECT_EQ(s2.sample(l.data(), 3, {0, 2}), 0);
  // The caller's logits are not modified.
  EXPECT_EQ(l[0], 2.0f);
}

TEST(Sampler, RejectsBadParameters) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.temperature = -1;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.top_k = -3;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.min_p = 1.5f;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_THROW(Sampler{p}, Error);
}

// A temperature a float32 cannot divide by is refused; a tiny one it can is the greedy limit, even
// with large logits (scaled relative to the largest, so no inf - inf NaN picks the least likely id).
TEST(Sampler, TinyTemperatures) {
  SamplingParams p;
  p.temperature = 1e-45f;
  try {
    Sampler s(p);
    FAIL() << "temperature 1e-45 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too small to divide by in float32"), std::string::npos) << e.what();
  }
  const std::vector<float> logits = {3000.0f, -2000.0f, 2999.0f, 5.0f, -30000.0f};
  for (float t : {1e-30f, 1e-20f, 1e-6f}) {
    p.temperature = t;
    EXPECT_EQ(support(p, logits, 200), std::set<int32_t>{0}) << "temperature " << t;
  }
}

TEST(Sampler, UniformStreamIsInUnitInterval) {
  SamplingParams p;
  p.seed = 123;
  Sampler s(p);
  double mean = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = s.next_uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    mean += u;
  }
  EXPECT_NEAR(mean / 10000, 0.5, 0.02);
}

}  // namespace
}  // namespace qrt
