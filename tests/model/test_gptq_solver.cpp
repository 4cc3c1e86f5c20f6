// GPTQ solver: with correlated calibration inputs it beats round-to-nearest on the layer-output
// error it minimizes; with an identity Hessian it is round-to-nearest exactly; act-order
// produces a valid g_idx; bad inputs are errors.
#include <gtest/gtest.h>

#include <random>

#include "qrt/error.h"
#include "quant/gptq_solver.h"
#include "quant/rtn.h"

namespace qrt {
namespace {

struct Problem {
  int64_t N = 24, K = 128, T = 400;
  std::vector<float> W, X;  // W [N][K], X [T][K]
  std::vector<double> H;    // X^T X
};

Problem make_problem(uint32_t seed) {
  Problem p;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  p.W.resize(p.N * p.K);
  for (auto& w : p.W) w = nd(rng) * 0.1f;
  // Correlated inputs with uneven scales: X = Z * M, a few columns much more active.
  std::vector<float> M(p.K * p.K);
  for (auto& m : M) m = nd(rng) / std::sqrt(float(p.K));
  for (int64_t i = 0; i < p.K; ++i) M[i * p.K + i] += 1.0f;
  std::vector<float> Z(p.T * p.K);
  for (auto& z : Z) z = nd(rng);
  p.X.assign(p.T * p.K, 0);
  for (int64_t t = 0; t < p.T; ++t)
    for (int64_t j = 0; j < p.K; ++j) {
      float s = 0;
      for (int64_t i = 0; i < p.K; ++i) s += Z[t * p.K + i] * M[i * p.K + j];
      p.X[t * p.K + j] = s * (j % 7 == 0 ? 4.0f : 1.0f);
    }
  p.H.assign(p.K * p.K, 0);
  for (int64_t t = 0; t < p.T; ++t)
    for (int64_t i = 0; i < p.K; ++i)
      for (int64_t j = 0; j < p.K; ++j) p.H[i * p.K + j] += double(p.X[t * p.K + i]) * p.X[t * p.K + j];
  return p;
}

// ||X W^T - X Q^T||^2
double output_error(const Problem& p, const QuantizedWeight& q) {
  const auto D = dequantize_reference(q);
  double e = 0;
  for (int64_t t = 0; t < p.T; ++t)
    for (int64_t n = 0; n < p.N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < p.K; ++k) s += double(p.X[t * p.K + k]) * (p.W[n * p.K + k] - D[n * p.K + k]);
      e += s * s;
    }
  return e;
}

TEST(GptqSolver, BeatsRoundToNearestOnCorrelatedInputs) {
  const Problem p = make_problem(1);
  for (bool sym : {true, false})
    for (int gs : {32, -1}) {
      quant::GptqSolverOptions o;
      o.bits = 4;
      o.group_size = gs;
      o.sym = sym;
      const auto g = quant::gptq_quantize("layer", p.W.data(), p.N, p.K, p.H, o);
      const auto r = quant::rtn_quantize("layer", p.W.data(), p.N, p.K, 4, gs, sym);
      const double eg = output_error(p, g), er = output_error(p, r);
      EXPECT_LT(eg, 0.8 * er) << "sym " << sym << " gs " << gs << ": gptq " << eg << " rtn " << er;
      o.act_order = true;
      const auto a = quant::gptq_quantize("layer", p.W.data(), p.N, p.K, p.H, o);
      EXPECT_LT(output_error(p, a), 0.8 * er) << "act-order sym " << sym << " gs " << gs;
    }
}

TEST(GptqSolver, IdentityHessianIsRoundToNearest) {
  const Problem p = make_problem(2);
  std::vector<double> I(p.K * p.K, 0.0);
  for (int64_t i = 0; i < p.K; ++i) I[i * p.K + i] = 1.0;
  for (bool sym : {true, false}) {
    quant::GptqSolverOptions o;
    o.group_size = 32;
    o.sym = sym;
    const auto g = quant::gptq_quantize("layer", p.W.data(), p.N, p.K, I, o);
    const auto r = quant::rtn_quantize("layer", p.W.data(), p.N, p.K, 4, 32, sym);
    EXPECT_EQ(g.codes, r.codes) << "sym " << sym;
    ASSERT_EQ(g.scales.size(), r.scales.size());
    for (size_t i = 0; i < g.scales.size(); ++i) EXPECT_NEAR(g.scales[i], r.scales[i], 1e-6f * std::abs(r.scales[i]));
  }
}

TEST(GptqSolver, ActOrderGivesAValidGroupIndex) {
  const Problem p = make_problem(3);
  quant::GptqSolverOptions o;
  o.group_size = 32;
  o.act_order = true;
  const auto q = quant::gptq_quantize("layer", p.W.data(), p.N, p.K, p.H, o);
  ASSERT_EQ(q.g_idx.size(), size_t(p.K));
  std::vector<int> per_group(p.K / 32, 0);
  for (int32_t g : q.g_idx) {
    ASSERT_GE(g, 0);
    ASSERT_LT(g, p.K / 32);
    ++per_group[g];
  }
  for (int c : per_group) EXPECT_EQ(c, 32);
  // The most active column (largest diag H) is in group 0.
  int64_t best = 0;
  for (int64_t i = 1; i < p.K; ++i)
    if (p.H[i * p.K + i] > p.H[best * p.K + best]) best = i;
  EXPECT_EQ(q.g_idx[best], 0);
  EXPECT_TRUE(q.spec.act_order);
}

TEST(GptqSolver, DeadInputsAndBadArguments) {
  Problem p = make_problem(4);
  // Column 5 never active: its weights quantize to (near) zero instead of breaking the Cholesky.
  for (int64_t i = 0; i < p.K; ++i) p.H[5 * p.K + i] = p.H[i * p.K + 5] = 0;
  quant::GptqSolverOptions o;
  o.group_size = 32;
  const auto q = quant::gptq_quantize("layer", p.W.data(), p.N, p.K, p.H, o);
  const auto d = dequantize_reference(q);
  for (int64_t n = 0; n < p.N; ++n) EXPECT_EQ(d[n * p.K + 5], 0.0f);
  o.group_size = 48;  // does not divide 128
  EXPECT_THROW(quant::gptq_quantize("layer", p.W.data(), p.N, p.K, p.H, o), Error);
  o.group_size = 32;
  std::vector<double> small(10, 1.0);
  EXPECT_THROW(quant::gptq_quantize("layer", p.W.data(), p.N, p.K, small, o), Error);
  std::vector<double> negative(p.K * p.K, 0.0);
  for (int64_t i = 0; i < p.K; ++i) negative[i * p.K + i] = -1.0;
  EXPECT_THROW(quant::gptq_quantize("layer", p.W.data(), p.N, p.K, negative, o), Error);
}

}  // namespace
}  // namespace qrt
