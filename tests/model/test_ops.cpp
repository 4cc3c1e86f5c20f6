// CPU primitives of the model against direct formulas: RoPE (plain, linear, llama3 scaling),
// RMSNorm, dense matmul at awkward shapes, attention against a naive softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/cpu_attention.h"
#include "model/ops.h"
#include "model/ops_avx2.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

ModelConfig rope_config(int64_t head_dim, double theta) {
  ModelConfig c;
  c.head_dim = head_dim;
  c.rope_theta = theta;
  return c;
}

TEST(Rope, InvFreqPlainMatchesFormula) {
  auto c = rope_config(64, 10000.0);
  auto inv = ops::rope_inv_freq(c);
  ASSERT_EQ(inv.size(), 32u);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(inv[i], std::pow(10000.0, -2.0 * i / 64), 1e-6 * std::pow(10000.0, -2.0 * i / 64));
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
}

TEST(Rope, LinearScalingDividesFrequencies) {
  auto c = rope_config(16, 500000.0);
  auto base = ops::rope_inv_freq(c);
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 4.0;
  auto scaled = ops::rope_inv_freq(c);
  for (size_t i = 0; i < base.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], base[i] / 4.0f);
}

// Llama 3.1 parameters: factor 8, low 1, high 4, original context 8192, theta 500000, head_dim 128.
TEST(Rope, Llama3ScalingMatchesDirectFormula) {
  auto c = rope_config(128, 500000.0);
  auto base = ops::rope_inv_freq(c);
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  auto scaled = ops::rope_inv_freq(c);
  int high = 0, low = 0, mid = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    const double f = base[i];
    const double wavelen = 2 * M_PI / f;
    double expect;
    if (wavelen < 8192.0 / 4.0) {
      expect = f;
      ++high;
    } else if (wavelen > 8192.0 / 1.0) {
      expect = f / 8.0;
      ++low;
    } else {
      const double s = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expect = (1 - s) * f / 8.0 + s * f;
      ++mid;
    }
    EXPECT_NEAR(scaled[i], expect, 1e-6 * expect) << "i=" << i;
  }
  // The three regimes all occur for these parameters.
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
}

TEST(Rope, UnknownScalingIsAClearError) {
  auto c = rope_config(64, 10000.0);
  c.rope_scaling.type = "yarn";
  c.rope_scaling.factor = 2;
  try {
    ops::rope_inv_freq(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("yarn"), std::string::npos);
  }
}

TEST(Rope, ApplyRotatesHalvesAtPosition) {
  const int64_t d = 8, heads = 2;
  auto c = rope_config(d, 10000.0);
  auto inv = ops::rope_inv_freq(c);
  ops::RopeTable table;
  table.build(inv, 50);
  auto x = random_vec(heads * d, 1);
  auto y = x;
  const int64_t pos = 37;
  ops::apply_rope(y.data(), heads, d, table.half, table.cos.data() + pos * 4, table.sin.data() + pos * 4);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = std::pow(10000.0, -2.0 * i / d) * pos;
      const double x1 = x[h * d + i], x2 = x[h * d + i + d / 2];
      EXPECT_NEAR(y[h * d + i], x1 * std::cos(a) - x2 * std::sin(a), 2e-5);
      EXPECT_NEAR(y[h * d + i + d / 2], x2 * std::cos(a) + x1 * std::sin(a), 2e-5);
    }
  // Position 0 is the identity.
  auto z = x;
  ops::apply_rope(z.data(), heads, d, table.half, table.cos.data(), table.sin.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_FLOAT_EQ(z[i], x[i]);
}

// partial_rotary_factor: the first rotary_dim dimensions of each head rotate as a head of that
// size would (frequencies base^(-2i / rotary_dim), pairs i and i + rotary_dim / 2); the rest pass
// through unchanged.
TEST(Rope, PartialRotatesTheLeadingDimensionsOnly) {
  const int64_t d = 12, rot = 8, heads = 2;
  auto c = rope_config(d, 10000.0);
  c.rotary_dim = rot;
  auto inv = ops::rope_inv_freq(c);
  ASSERT_EQ(inv.size(), static_cast<size_t>(rot / 2));
  ops::RopeTable table;
  table.build(inv, 50);
  auto x = random_vec(heads * d, 4);
  auto y = x;
  const int64_t pos = 21;
  ops::apply_rope(y.data(), heads, d, table.half, table.cos.data() + pos * table.half,
                  table.sin.data() + pos * table.half);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < rot / 2; ++i) {
      const double a = std::pow(10000.0, -2.0 * i / rot) * pos;
      const double x1 = x[h * d + i], x2 = x[h * d + i + rot / 2];
      EXPECT_NEAR(y[h * d + i], x1 * std::cos(a) - x2 * std::sin(a), 2e-5);
      EXPECT_NEAR(y[h * d + i + rot / 2], x2 * std::cos(a) + x1 * std::sin(a), 2e-5);
    }
    for (int64_t i = rot; i < d; ++i) EXPECT_EQ(y[h * d + i], x[h * d + i]) << "pass-through dimension " << i;
  }
}

TEST(RmsNorm, MatchesFormula) {
  const int64_t rows = 3, dim = 13;
  auto x = random_vec(rows * dim, 2, -3, 3);
  auto w = random_vec(dim, 3, 0.5, 1.5);
  std::vector<float> y(rows * dim);
  ops::rms_norm(x.data(), w.data(), y.data(), rows, dim, 1e-5f);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double inv = 1 / std::sqrt(ss / dim + 1e-5);
    for (int64_t i = 0; i < dim; ++i) EXPECT_NEAR(y[r * dim + i], x[r * dim + i] * inv * w[i], 1e-5);
  }
}

void naive_matmul(const std::vector<float>& x, int64_t M, int64_t K, const std::vector<float>& W, int64_t N,
                  const float* bias, std::vector<double>& y) {
  y.assign(M * N, 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = bias ? bias[n] : 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[m * K + k]) * W[n * K + k];
      y[m * N + n] = s;
    }
}

class DenseMatmulShapes : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(DenseMatmulShapes, MatchesNaive) {
  const auto [M, K, N] = GetParam();
  auto x = random_vec(M * K, 10 + M);
  auto W = random_vec(N * K, 20 + K);
  auto b = random_vec(N, 30 + N);
  std::vector<double> ref;
  naive_matmul(x, M, K, W, N, b.data(), ref);
  ThreadPool pool(2);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    std::vector<float> y(M * N, NAN);
    ops::dense_matmul(x.data(), M, K, W.data(), N, b.data(), y.data(), N, p);
    for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(y[i], ref[i], 1e-4 * std::sqrt(K)) << "i=" << i;
  }
  // fp16 weights: the reference is the product with the fp16-rounded weights.
  std::vector<uint16_t> W16(W.size());
  std::vector<float> Wr(W.size());
  for (size_t i = 0; i < W.size(); ++i) {
    W16[i] = f32_to_fp16(W[i]);
    Wr[i] = fp16_to_f32(W16[i]);
  }
  naive_matmul(x, M, K, Wr, N, b.data(), ref);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    std::vector<float> y(M * N, NAN);
    ops::dense_matmul_f16(x.data(), M, K, W16.data(), N, b.data(), y.data(), N, p);
    for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(y[i], ref[i], 1e-4 * std::sqrt(K)) << "f16 i=" << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Awkward, DenseMatmulShapes,
                         ::testing::Values(std::make_tuple(1, 576, 49), std::make_tuple(1, 7, 3),
                                           std::make_tuple(3, 64, 17), std::make_tuple(17, 33, 130),
                                           std::make_tuple(2, 16, 4), std::make_tuple(64, 96, 96),
                                           std::make_tuple(1, 1536, 576)));

TEST(DenseMatmul, StridedOutputLeavesGapsUntouched) {
  const int64_t M = 3, K = 24, N = 5, ldy = 9;
  auto x = random_vec(M * K, 5);
  auto W = random_vec(N * K, 6);
  std::vector<float> y(M * ldy, 7.0f);
  ops::dense_matmul(x.data(), M, K, W.data(), N, nullptr, y.data(), ldy, nullptr);
  std::vector<double> ref;
  naive_matmul(x, M, K, W, N, nullptr, ref);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) EXPECT_NEAR(y[m * ldy + n], ref[m * N + n], 1e-4);
    for (int64_t n = N; n < ldy; ++n) EXPECT_EQ(y[m * ldy + n], 7.0f);
  }
}

// A row's result is the same whatever the other rows of the product are (M = 1, odd and even M,
// on the thread pool or not, float32 and fp16 weights): the batched engine runs a sequence's rows
// next to other sequences' and must give what a step of its own gives, bit for bit.
TEST(DenseMatmul, ARowsResultDoesNotDependOnTheOtherRows) {
  const int64_t K = 75, N = 143, M = 7;  // K and N with tails past the vector widths; M N K past the pool threshold
  auto x = random_vec(M * K, 8);
  auto W = random_vec(N * K, 9);
  std::vector<uint16_t> W16(W.size());
  for (size_t i = 0; i < W.size(); ++i) W16[i] = f32_to_fp16(W[i]);
  auto bias = random_vec(N, 10);
  ThreadPool pool(2);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool})
    for (bool f16 : {false, true}) {
      auto run = [&](const float* xs, int64_t m) {
        std::vector<float> y(static_cast<size_t>(m * N));
        if (f16) ops::dense_matmul_f16(xs, m, K, W16.data(), N, bias.data(), y.data(), N, p);
        else ops::dense_matmul(xs, m, K, W.data(), N, bias.data(), y.data(), N, p);
        return y;
      };
      const auto all = run(x.data(), M);
      for (int64_t m0 = 0; m0 < M; ++m0)
        for (int64_t rows : {int64_t{1}, int64_t{2}, int64_t{3}}) {
          if (m0 + rows > M) continue;
          const auto part = run(x.data() + m0 * K, rows);
          for (int64_t i = 0; i < rows * N; ++i)
            ASSERT_EQ(part[static_cast<size_t>(i)], all[static_cast<size_t>(m0 * N + i)])
                << "rows [" << m0 << ", " << m0 + rows << ")" << (f16 ? " f16" : " f32") << (p ? " pool" : "");
        }
    }
}

TEST(SiluMul, MatchesFormula) {
  std::vector<float> g = {-3, -0.5, 0, 0.5, 4}, u = {1, 2, 3, -1, 0.5};
  std::vector<float> expect(5);
  for (int i = 0; i < 5; ++i) expect[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
  ops::silu_mul(g.data(), u.data(), 5);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(g[i], expect[i], 1e-6);
}

// The vector path over a wide range of inputs and lengths that are not multiples of the vector:
// close to the formula (in double) relative to the size of the result, and an element's result the
// same whatever the length of the call it is in (the batched engine splits rows across threads).
TEST(SiluMul, WideRangeAndAwkwardLengths) {
  const int64_t n = 203;
  std::vector<float> g0(n), u(n);
  for (int64_t i = 0; i < n; ++i) {
    g0[static_cast<size_t>(i)] = -90.0f + 180.0f * static_cast<float>(i) / static_cast<float>(n - 1);
    u[static_cast<size_t>(i)] = 0.5f + static_cast<float>(i % 7);
  }
  g0[100] = 1e-3f, g0[101] = -1e-3f, g0[102] = 0.0f;
  std::vector<float> all = g0;
  ops::silu_mul(all.data(), u.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = g0[static_cast<size_t>(i)];
    const double expect = g / (1.0 + std::exp(-g)) * u[static_cast<size_t>(i)];
    EXPECT_NEAR(all[static_cast<size_t>(i)], expect, 4e-7 * std::abs(expect) + 1e-30) << "g = " << g;
  }
  for (int64_t len : {1, 3, 7, 9, 17}) {
    for (int64_t start : {0, 5, 190}) {
      if (start + len > n) continue;
      std::vector<float> part(g0.begin() + start, g0.begin() + start + len);
      ops::silu_mul(part.data(), u.data() + start, len);
      for (int64_t i = 0; i < len; ++i)
        ASSERT_EQ(part[static_cast<size_t>(i)], all[static_cast<size_t>(start + i)]) << start << " + " << i;
    }
  }
}

// The KV cache's F16C conversion gives qrt::f32_to_fp16's bits: normal values, the subnormal
// range, the rounding ties at both ends, overflow to infinity; lengths with a scalar tail.
TEST(F32ToFp16, VectorMatchesScalarBits) {
  if (best_cpu_isa() < CpuIsa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 65519.0f, 65520.0f, -70000.0f, 1e-8f,
                          std::ldexp(1.0f, -25), std::ldexp(1.5f, -25), std::ldexp(1.0f, -24), 6.1e-5f,
                          std::ldexp(3.0f, -26), INFINITY, -INFINITY, 0.1f, 1.0f / 3.0f};
  for (int i = 0; i < 4000; ++i) x.push_back(std::ldexp(1.0f + static_cast<float>(i % 997) / 997.0f, i % 50 - 30) *
                                             (i % 2 ? -1.0f : 1.0f));
  std::vector<uint16_t> y(x.size());
  ops::f32_to_fp16_avx2(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], f32_to_fp16(x[i])) << "x = " << x[i];
}

void naive_attention(const float* q, const float* keys, const float* values, int64_t first, int64_t last,
                     int64_t d, std::vector<double>& out) {
  std::vector<double> s;
  double mx = -1e300;
  for (int64_t j = first; j <= last; ++j) {
    double v = 0;
    for (int64_t i = 0; i < d; ++i) v += static_cast<double>(q[i]) * keys[j * d + i];
    v /= std::sqrt(static_cast<double>(d));
    s.push_back(v);
    mx = std::max(mx, v);
  }
  double sum = 0;
  for (double& v : s) sum += (v = std::exp(v - mx));
  out.assign(d, 0);
  for (int64_t j = first; j <= last; ++j)
    for (int64_t i = 0; i < d; ++i) out[i] += s[j - first] / sum * values[j * d + i];
}

TEST(Attention, MatchesNaiveSoftmax) {
  const int64_t d = 64, T = 37;
  auto q = random_vec(d, 40, -2, 2);
  auto k = random_vec(T * d, 41, -2, 2);
  auto v = random_vec(T * d, 42);
  for (auto [first, last] : {std::pair<int64_t, int64_t>{0, 0}, {0, 36}, {5, 20}}) {
    std::vector<double> ref;
    naive_attention(q.data(), k.data(), v.data(), first, last, d, ref);
    std::vector<float> scores(T), out(d);
    ops::attend_one(q.data(), k.data(), v.data(), first, last, d, 1.0f / 8.0f, scores.data(), out.data());
    for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(out[i], ref[i], 1e-5) << first << ".." << last;
  }
}

// The engine's kernels over the blocked key layout, every ISA this CPU runs, float32 and fp16
// caches, head sizes that hit every vector path (multiples of 16, of 8 only, neither) and windows
// that start and end inside a block. Key slots outside [first, last] hold NaN: the kernel computes
// whole blocks, and those lanes must never reach the result.
TEST(Attention, BlockedKernelsMatchNaiveOnEveryIsa) {
  namespace ca = cpu_attention;
  const int64_t T = 53;
  std::vector<CpuIsa> isas{CpuIsa::Scalar};
  if (best_cpu_isa() >= CpuIsa::Avx2) isas.push_back(CpuIsa::Avx2);
  if (best_cpu_isa() >= CpuIsa::Avx512) isas.push_back(CpuIsa::Avx512);
  for (int64_t d : {64, 128, 80, 72, 6, 200}) {
    auto q = random_vec(d, 50 + d, -2, 2);
    auto k = random_vec(T * d, 51 + d, -2, 2);
    auto v = random_vec(T * d, 52 + d);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    for (auto [first, last] : {std::pair<int64_t, int64_t>{0, 0}, {0, 52}, {5, 20}, {17, 47}, {16, 31}, {52, 52}}) {
      // Reference on the values the caches hold (fp16 rounding is not the kernel's error).
      std::vector<float> k_r16(k.size()), v_r16(v.size());
      for (size_t i = 0; i < k.size(); ++i) {
        k_r16[i] = fp16_to_f32(f32_to_fp16(k[i]));
        v_r16[i] = fp16_to_f32(f32_to_fp16(v[i]));
      }
      std::vector<double> ref, ref16;
      naive_attention(q.data(), k.data(), v.data(), first, last, d, ref);
      naive_attention(q.data(), k_r16.data(), v_r16.data(), first, last, d, ref16);
      const float nan = std::nanf("");
      std::vector<float> kb(ca::head_key_elems(T, d), nan), vb(T * d, nan);
      std::vector<uint16_t> kb16(kb.size(), f32_to_fp16(nan)), vb16(vb.size(), f32_to_fp16(nan));
      for (int64_t j = first; j <= last; ++j)
        for (int64_t i = 0; i < d; ++i) {
          kb[ca::key_index(j, i, d)] = k[j * d + i];
          kb16[ca::key_index(j, i, d)] = f32_to_fp16(k[j * d + i]);
          vb[j * d + i] = v[j * d + i];
          vb16[j * d + i] = f32_to_fp16(v[j * d + i]);
        }
      for (ca::Isa isa : isas) {
        std::vector<float> scores(ca::round_up_to_block(T)), out(d, nan);
        ca::attend(q.data(), kb.data(), vb.data(), first, last, d, scale, scores.data(), out.data(), isa);
        for (int64_t i = 0; i < d; ++i)
          ASSERT_NEAR(out[i], ref[i], 1e-5) << cpu_isa_name(isa) << " d " << d << " " << first << ".." << last;
        std::fill(out.begin(), out.end(), nan);
        ca::attend(q.data(), kb16.data(), vb16.data(), first, last, d, scale, scores.data(), out.data(), isa);
        for (int64_t i = 0; i < d; ++i)
          ASSERT_NEAR(out[i], ref16[i], 1e-5) << "f16 " << cpu_isa_name(isa) << " d " << d << " " << first << ".."
                                              << last;
      }
    }
  }
}

// A GQA group (3 query heads on one KV head) over positions split into parts, one of them empty,
// merged: equal to the naive attention of each head, on every ISA, float32 and fp16 caches.
TEST(Attention, GroupedPartsMergeToNaiveOnEveryIsa) {
  namespace ca = cpu_attention;
  std::vector<CpuIsa> isas{CpuIsa::Scalar};
  if (best_cpu_isa() >= CpuIsa::Avx2) isas.push_back(CpuIsa::Avx2);
  if (best_cpu_isa() >= CpuIsa::Avx512) isas.push_back(CpuIsa::Avx512);
  const int64_t T = 90, d = 64, heads = 3, first = 7, last = 85;
  auto q = random_vec(heads * d, 60, -2, 2);
  auto k = random_vec(T * d, 61, -2, 2);
  auto v = random_vec(T * d, 62);
  std::vector<float> kb(ca::head_key_elems(T, d), 0.0f);
  std::vector<uint16_t> kb16(kb.size(), 0), v16(v.size());
  for (int64_t j = 0; j < T; ++j)
    for (int64_t i = 0; i < d; ++i) {
      kb[ca::key_index(j, i, d)] = k[j * d + i];
      kb16[ca::key_index(j, i, d)] = f32_to_fp16(k[j * d + i]);
    }
  for (size_t i = 0; i < v.size(); ++i) v16[i] = f32_to_fp16(v[i]);
  std::vector<float> k_r16(k.size()), v_r16(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k_r16[i] = fp16_to_f32(f32_to_fp16(k[i]));
    v_r16[i] = fp16_to_f32(f32_to_fp16(v[i]));
  }
  // Parts [7, 40], [41, 85] and an empty third part (sum 0), in that order.
  const std::pair<int64_t, int64_t> ranges[] = {{first, 40}, {41, last}};
  const float scale = 1.0f / 8.0f;
  for (ca::Isa isa : isas)
    for (bool f16 : {false, true}) {
      std::vector<float> out(3 * heads * d, 0.0f), mx(3 * heads, 0.0f), sum(3 * heads, 0.0f);
      std::vector<float> scores(heads * ca::round_up_to_block(T));
      for (int part = 0; part < 2; ++part) {
        float* o = out.data() + part * heads * d;
        if (f16)
          ca::attend_partial(q.data(), d, heads, kb16.data(), v16.data(), ranges[part].first, ranges[part].second, d,
                             scale, scores.data(), o, mx.data() + part * heads, sum.data() + part * heads, isa);
        else
          ca::attend_partial(q.data(), d, heads, kb.data(), v.data(), ranges[part].first, ranges[part].second, d,
                             scale, scores.data(), o, mx.data() + part * heads, sum.data() + part * heads, isa);
      }
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<float> result(d);
        ca::merge_partials(out.data() + h * d, mx.data() + h, sum.data() + h, 3, heads, d, result.data());
        std::vector<double> ref;
        naive_attention(q.data() + h * d, f16 ? k_r16.data() : k.data(), f16 ? v_r16.data() : v.data(), first, last,
                        d, ref);
        for (int64_t i = 0; i < d; ++i)
          ASSERT_NEAR(result[i], ref[i], 1e-5) << cpu_isa_name(isa) << (f16 ? " f16" : " f32") << " head " << h;
      }
    }
}

// The AVX-512 loops feed every head of a GQA group from one read of each key and value row; each
// head's result must equal that head run alone, bit for bit (so batching heads changes no token).
TEST(Attention, GroupedHeadsEqualEachHeadAloneBitForBit) {
  namespace ca = cpu_attention;
  if (best_cpu_isa() < CpuIsa::Avx512) GTEST_SKIP() << "no AVX-512 on this CPU";
  const int64_t T = 70, first = 3, last = 66;
  for (int64_t d : {64, 80, 128})
    for (int64_t heads : {1, 2, 3, 4, 5, 7, 9}) {
      auto q = random_vec(heads * d, 70 + d + heads, -2, 2);
      auto k = random_vec(T * d, 71 + d, -2, 2);
      auto v = random_vec(T * d, 72 + d);
      std::vector<uint16_t> kb16(ca::head_key_elems(T, d), 0), v16(v.size());
      for (int64_t j = 0; j < T; ++j)
        for (int64_t i = 0; i < d; ++i) kb16[ca::key_index(j, i, d)] = f32_to_fp16(k[j * d + i]);
      for (size_t i = 0; i < v.size(); ++i) v16[i] = f32_to_fp16(v[i]);
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      std::vector<float> scores(heads * ca::round_up_to_block(T)), out(heads * d), mx(heads), sum(heads);
      ca::attend_partial(q.data(), d, heads, kb16.data(), v16.data(), first, last, d, scale, scores.data(),
                         out.data(), mx.data(), sum.data(), CpuIsa::Avx512);
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<float> s1(ca::round_up_to_block(T)), o1(d);
        float m1 = 0, z1 = 0;
        ca::attend_partial(q.data() + h * d, d, 1, kb16.data(), v16.data(), first, last, d, scale, s1.data(),
                           o1.data(), &m1, &z1, CpuIsa::Avx512);
        EXPECT_EQ(mx[h], m1) << "d " << d << " heads " << heads << " head " << h;
        EXPECT_EQ(sum[h], z1) << "d " << d << " heads " << heads << " head " << h;
        for (int64_t i = 0; i < d; ++i)
          ASSERT_EQ(out[h * d + i], o1[i]) << "d " << d << " heads " << heads << " head " << h << " dim " << i;
      }
    }
}

}  // namespace
}  // namespace qrt
