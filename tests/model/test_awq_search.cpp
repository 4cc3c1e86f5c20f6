// AWQ scale search: on inputs with a few strong channels it lowers the layer-output error below
// round-to-nearest, and the error it reports is ||X W^T - (X / s) Q(W s)^T||^2 computed directly
// from X; with equal channel means every alpha gives scales of 1 (round-to-nearest); bad
// arguments are errors.
#include <gtest/gtest.h>

#include <random>

#include "model/awq_search.h"
#include "qrt/error.h"
#include "qrt/quantized_weight.h"
#include "qrt/thread_pool.h"
#include "quant/rtn.h"

namespace qrt {
namespace {

struct Problem {
  int64_t K = 64, T = 300;
  std::vector<int64_t> outs = {16, 8};
  std::vector<std::vector<float>> W;  // per linear [out][K]
  std::vector<float> X;               // [T][K]
  std::vector<float> H;               // X^T X
  std::vector<double> mean_abs;
};

Problem make_problem(uint32_t seed, bool outliers) {
  Problem p;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  for (int64_t n : p.outs) {
    std::vector<float> w(n * p.K);
    for (auto& v : w) v = nd(rng) * 0.05f;
    p.W.push_back(std::move(w));
  }
  p.X.resize(p.T * p.K);
  for (int64_t t = 0; t < p.T; ++t)
    for (int64_t k = 0; k < p.K; ++k) p.X[t * p.K + k] = nd(rng) * (outliers && k % 11 == 3 ? 20.0f : 1.0f);
  p.H.assign(p.K * p.K, 0);
  p.mean_abs.assign(p.K, 0);
  for (int64_t t = 0; t < p.T; ++t)
    for (int64_t i = 0; i < p.K; ++i) {
      p.mean_abs[i] += std::abs(p.X[t * p.K + i]) / p.T;
      for (int64_t j = 0; j < p.K; ++j) p.H[i * p.K + j] += p.X[t * p.K + i] * p.X[t * p.K + j];
    }
  return p;
}

std::vector<AwqLinearView> views(const Problem& p) {
  std::vector<AwqLinearView> v;
  for (size_t i = 0; i < p.W.size(); ++i) v.push_back({p.W[i].data(), p.outs[i]});
  return v;
}

// sum over the linears of ||X W^T - (X / s) Q(W s)^T||^2, straight from X.
double direct_error(const Problem& p, const std::vector<float>& s, int group) {
  double e = 0;
  for (size_t l = 0; l < p.W.size(); ++l) {
    const int64_t N = p.outs[l];
    std::vector<float> ws(N * p.K);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < p.K; ++k) ws[n * p.K + k] = p.W[l][n * p.K + k] * s[k];
    const auto d = dequantize_reference(quant::rtn_quantize("w", ws.data(), N, p.K, 4, group, false, quant::RtnStyle::Awq));
    for (int64_t t = 0; t < p.T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double r = 0;
        for (int64_t k = 0; k < p.K; ++k)
          r += double(p.X[t * p.K + k]) * (p.W[l][n * p.K + k] - double(d[n * p.K + k]) / s[k]);
        e += r * r;
      }
  }
  return e;
}

TEST(AwqSearch, StrongChannelsGetLargerScalesAndLessOutputError) {
  ThreadPool pool(2);
  const Problem p = make_problem(1, true);
  for (int group : {32, -1}) {
    const AwqScales r = awq_search_scales(views(p), p.K, p.H, p.mean_abs, 4, group, 20, pool);
    EXPECT_GT(r.alpha, 0.0f) << "group " << group;
    EXPECT_LT(r.error, 0.9 * r.rtn_error) << "group " << group;
    EXPECT_NEAR(r.error, direct_error(p, r.scales, group), 1e-3 * r.error) << "group " << group;
    EXPECT_NEAR(r.rtn_error, direct_error(p, std::vector<float>(p.K, 1.0f), group), 1e-3 * r.rtn_error);
    EXPECT_GT(r.scales[3], 2.0f * r.scales[4]) << "the strong channel 3 is scaled up";
  }
}

TEST(AwqSearch, EqualChannelMeansGiveRoundToNearest) {
  ThreadPool pool(1);
  Problem p = make_problem(2, false);
  p.mean_abs.assign(p.K, 0.7);
  const AwqScales r = awq_search_scales(views(p), p.K, p.H, p.mean_abs, 4, 32, 10, pool);
  EXPECT_EQ(r.alpha, 0.0f);
  EXPECT_EQ(r.error, r.rtn_error);
  for (float s : r.scales) EXPECT_FLOAT_EQ(s, 1.0f);
}

TEST(AwqSearch, BadArgumentsAreErrors) {
  ThreadPool pool(1);
  const Problem p = make_problem(3, true);
  EXPECT_THROW(awq_search_scales(views(p), p.K, std::vector<float>(10), p.mean_abs, 4, 32, 20, pool), Error);
  EXPECT_THROW(awq_search_scales(views(p), p.K, p.H, std::vector<double>(3), 4, 32, 20, pool), Error);
  EXPECT_THROW(awq_search_scales(views(p), p.K, p.H, p.mean_abs, 4, 32, 0, pool), Error);
  EXPECT_THROW(awq_search_scales({{nullptr, 4}}, p.K, p.H, p.mean_abs, 4, 32, 20, pool), Error);
}

}  // namespace
}  // namespace qrt
