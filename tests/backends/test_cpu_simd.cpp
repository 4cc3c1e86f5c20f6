// cpu_simd against a float reference built from qrt::dequantize_reference, on fresh seeded random
// weights and activations, for every ISA path this CPU runs (scalar, AVX2, AVX-512 VNNI), all three
// activation modes, every bits / group / zero kind / act-order combination it declares, FP8, bias,
// and the awkward shapes (M = 1, 3, 8, 17, 64, 129; K and N not multiples of the tile).
//
// Bounds (relative error ||y - ref|| / ||ref||):
//   float activations ("activations": "f32"):  < 1e-3  (measured ~1e-7)
//   two-level int8 ("activations": "int8x2", the default): < 2e-4 (x rounded to 15 bits per
//     32-block, step max|x| / 32385: ~256x finer than int8; measured ~2e-5)
//   int8 activations  ("activations": "int8"): < 1.5e-2 (measured 4e-3 .. 7e-3: the error is that of
//     rounding x to int8 per 32-block, ~ max|x| / 254 / sqrt(3) per element; ggml's q8_0 has the same)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "backends/backend_factories.h"
#include "backends/cpu_simd/cpu_simd_kernels.h"
#include "qrt/backend.h"
#include "qrt/checkpoint.h"
#include "qrt/device.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

constexpr double kF32Bound = 1e-3;
constexpr double kInt8Bound = 1.5e-2;
constexpr double kInt8x2Bound = 2e-4;

// The bound of an activation mode (FP8 weights always run float activations).
double bound_of(const std::string& act, const QuantizedWeight& w) {
  if (act == "f32" || w.spec.encoding == WeightEncoding::Fp8E4M3) return kF32Bound;
  return act == "int8x2" ? kInt8x2Bound : kInt8Bound;
}

struct LayerCase {
  int64_t k, n;
  int bits;
  int group;
  ZeroKind zero;
  bool act_order;
  bool bias = false;
  bool fp16_scales = false;  // scales (and float zeros) exactly representable in fp16, as in checkpoints
};

QuantizedWeight make_weight(const LayerCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedWeight w;
  w.spec.name = "test.layer";
  w.spec.in_features = c.k;
  w.spec.out_features = c.n;
  w.spec.bits = c.bits;
  w.spec.group_size = c.group;
  w.spec.zero_kind = c.zero;
  w.spec.act_order = c.act_order;
  w.spec.has_bias = c.bias;
  const int64_t g = w.spec.effective_group_size();
  const int64_t groups = (c.k + g - 1) / g;
  std::uniform_int_distribution<int> code(0, (1 << c.bits) - 1);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f), unit(-1.f, 1.f);
  w.codes.resize(c.k * c.n);
  for (auto& v : w.codes) v = static_cast<uint8_t>(code(rng));
  w.scales.resize(c.n * groups);
  for (auto& v : w.scales) v = scale(rng);
  if (c.zero == ZeroKind::Integer) {
    w.zeros.resize(c.n * groups);
    for (auto& v : w.zeros) v = static_cast<float>(code(rng));
  } else if (c.zero == ZeroKind::Float) {
    w.zeros.resize(c.n * groups);
    for (size_t i = 0; i < w.zeros.size(); ++i)
      w.zeros[i] = -w.scales[i] * static_cast<float>(1 << (c.bits - 1)) * (1.f + 0.2f * unit(rng));
  }
  if (c.fp16_scales) {
    for (auto& v : w.scales) v = fp16_to_f32(f32_to_fp16(v));
    for (auto& v : w.zeros)
      if (c.zero == ZeroKind::Float) v = fp16_to_f32(f32_to_fp16(v));
  }
  if (c.act_order) {
    // GPTQ act-order: group of column k = (position of k in a random order) / group size.
    std::vector<int32_t> perm(c.k);
    for (int64_t i = 0; i < c.k; ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    w.g_idx.resize(c.k);
    for (int64_t i = 0; i < c.k; ++i) w.g_idx[perm[i]] = static_cast<int32_t>(i / g);
  }
  if (c.bias) {
    w.bias.resize(c.n);
    for (auto& v : w.bias) v = unit(rng);
  }
  w.validate();
  return w;
}

QuantizedWeight make_fp8_weight(int64_t k, int64_t n, int bn, int bk, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> scale(0.01f, 0.1f);
  QuantizedWeight w;
  w.spec.name = "test.fp8";
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::Fp8E4M3;
  w.spec.bits = 8;
  w.spec.scale_block_n = bn;
  w.spec.scale_block_k = bk;
  w.codes.resize(k * n);
  for (auto& v : w.codes) v = f32_to_fp8_e4m3(normal(rng) * 40.f);  // covers subnormals to ~150
  w.scales.resize(((n + bn - 1) / bn) * ((k + bk - 1) / bk));
  for (auto& v : w.scales) v = scale(rng);
  w.validate();
  return w;
}

std::vector<float> random_x(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(m * k);
  for (auto& v : x) v = normal(rng);
  return x;
}

std::vector<float> reference(const QuantizedWeight& w, const std::vector<float>& x, int64_t m) {
  const std::vector<float> dq = dequantize_reference(w);
  const int64_t k = w.K(), n = w.N();
  std::vector<float> y(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = w.bias.empty() ? 0.0 : w.bias[j];
      for (int64_t kk = 0; kk < k; ++kk) acc += static_cast<double>(dq[j * k + kk]) * x[i * k + kk];
      y[i * n + j] = static_cast<float>(acc);
    }
  return y;
}

double rel_error(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    num += (static_cast<double>(y[i]) - ref[i]) * (static_cast<double>(y[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

std::vector<std::string> isas_here() {
  std::vector<std::string> out = {"scalar"};
  const cpu_simd::Isa best = best_cpu_isa();
  if (best >= cpu_simd::Isa::Avx2) out.push_back("avx2");
  if (best >= cpu_simd::Isa::Avx512) out.push_back("avx512_vnni");
  return out;
}

std::vector<float> run(const Backend& be, const QuantizedWeight& w, const KernelParams& p,
                       const std::vector<float>& x, int64_t m, ThreadPool* pool) {
  auto prepared = be.prepare(w, p, probe_cpu());
  std::vector<float> y(m * w.N(), std::nanf(""));
  ActTensor xt{const_cast<float*>(x.data()), DType::F32, m, w.K()};
  ActTensor yt{y.data(), DType::F32, m, w.N()};
  ExecContext ctx;
  ctx.pool = pool;
  prepared->forward(xt, yt, ctx);
  return y;
}

KernelParams params(const std::string& isa, const std::string& act, int64_t m_tile = 8, int64_t m_block = 64) {
  KernelParams p;
  p.values["isa"] = isa;
  p.values["activations"] = act;
  p.values["m_tile"] = m_tile;
  p.values["m_block"] = m_block;
  return p;
}

class CpuSimdTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_simd_backend();
  ThreadPool pool{2};

  // Checks every ISA x activation mode at the given M values; records the worst error per mode.
  void check_all(const QuantizedWeight& w, const std::vector<int64_t>& ms, uint32_t seed) {
    for (int64_t m : ms) {
      const auto x = random_x(m, w.K(), seed + static_cast<uint32_t>(m));
      const auto ref = reference(w, x, m);
      for (const auto& isa : isas_here())
        for (const char* act : {"f32", "int8x2", "int8"}) {
          const auto y = run(*be, w, params(isa, act), x, m, m % 2 ? &pool : nullptr);
          const double err = rel_error(y, ref);
          EXPECT_LT(err, bound_of(act, w))
              << w.spec.describe() << " K=" << w.K() << " N=" << w.N() << " M=" << m << " isa=" << isa
              << " activations=" << act;
          if (w.spec.encoding != WeightEncoding::Fp8E4M3) worst[act] = std::max(worst[act], err);
        }
    }
  }
  std::map<std::string, double> worst;
};

// Every declared combination of bits (4, 8), group size (32, 64, 128, per-row, and 48, which is
// not a multiple of the 32-block), zero kind, act-order and scale storage (fp16-exact scales take
// the fp16 layout), at K = 320 (10 blocks: a partial last group for g128) and N = 40 (not a
// multiple of the 16-row tile).
TEST_F(CpuSimdTest, EveryBitsGroupZeroActOrderCombination) {
  uint32_t seed = 1;
  for (int bits : {4, 8})
    for (int group : {32, 64, 128, -1, 48})
      for (ZeroKind zero : {ZeroKind::Symmetric, ZeroKind::Integer, ZeroKind::Float})
        for (bool act_order : {false, true})
          for (bool fp16 : {false, true}) {
            if (act_order && group == -1) continue;
            const auto w = make_weight({320, 40, bits, group, zero, act_order, false, fp16}, seed++);
            check_all(w, {1, 3, 17}, seed * 7);
          }
  for (const auto& [act, err] : worst) std::printf("worst relative error, activations=%s: %.2e\n", act.c_str(), err);
  // The two-level mode is far closer to exact than plain int8 (15 vs 8 bits per 32-block).
  EXPECT_LT(worst["int8x2"] * 20, worst["int8"]);
}

TEST_F(CpuSimdTest, Fp16ExactScalesAreStoredAsFp16) {
  const auto w32 = make_weight({256, 64, 4, 32, ZeroKind::Float, false}, 800);
  const auto w16 = make_weight({256, 64, 4, 32, ZeroKind::Float, false, false, true}, 800);
  const DeviceInfo dev = probe_cpu();
  const int64_t b32 = be->prepare(w32, {}, dev)->weight_bytes();
  const int64_t b16 = be->prepare(w16, {}, dev)->weight_bytes();
  // 64 x 256 4-bit codes = 8 KiB; 64 rows x 8 groups x (scale, min) = 4 KiB in fp32, 2 KiB in fp16.
  EXPECT_EQ(b32 - b16, 64 * 8 * 2 * 2);
  check_all(w16, {1, 8}, 801);
}

TEST_F(CpuSimdTest, AwkwardRowCountsAndAlignment) {
  // Minimum alignment (K = 32, N = 16), odd multiples, K not a multiple of 32, a single output.
  const LayerCase cases[] = {
      {32, 16, 4, 32, ZeroKind::Symmetric, false},  {96, 48, 4, -1, ZeroKind::Integer, false},
      {256, 48, 4, 128, ZeroKind::Integer, true},   {33, 1, 4, -1, ZeroKind::Float, false},
      {200, 24, 8, -1, ZeroKind::Symmetric, false},
  };
  uint32_t seed = 100;
  for (const auto& c : cases) {
    const uint32_t s = seed++;  // one seed per case, evaluated before the call
    check_all(make_weight(c, s), {1, 3, 8, 17, 64, 129}, (s + 1) * 13);
  }
}

TEST_F(CpuSimdTest, OtherBitWidthsAndBias) {
  uint32_t seed = 200;
  for (int bits : {2, 3, 5, 6}) {
    const uint32_t s = seed++;
    check_all(make_weight({192, 24, bits, 64, ZeroKind::Integer, false}, s), {1, 5}, s + 1);
  }
  const uint32_t s_bias = seed++;
  check_all(make_weight({160, 20, 4, 32, ZeroKind::Float, false, true}, s_bias), {1, 9}, s_bias + 1);
}

TEST_F(CpuSimdTest, Fp8WeightsPerTensorPerChannelAndBlock) {
  check_all(make_fp8_weight(256, 40, 40, 256, 300), {1, 3, 17}, 301);    // per-tensor
  check_all(make_fp8_weight(256, 40, 1, 256, 302), {1, 4}, 303);         // per-channel
  check_all(make_fp8_weight(320, 48, 16, 128, 304), {1, 3, 17}, 305);    // block 16 x 128
  check_all(make_fp8_weight(100, 20, 8, 50, 306), {2}, 307);             // block K not a multiple of 32
}

// The int8 and int8x2 kernels of every ISA do the same integer arithmetic on the same quantized
// activations, so they agree with the scalar one to float rounding, far tighter than with the
// reference (4- and 8-bit codes, every register tile height).
TEST_F(CpuSimdTest, SimdInt8MatchesScalarInt8) {
  for (int bits : {4, 8}) {
    const auto w = make_weight({512, 64, bits, 128, ZeroKind::Integer, true}, 400 + bits);
    for (int64_t m : {1, 7, 20})
      for (const char* act : {"int8", "int8x2"}) {
        const auto x = random_x(m, w.K(), 401);
        const auto ys = run(*be, w, params("scalar", act), x, m, nullptr);
        for (const auto& isa : isas_here())
          for (int64_t mt : {1, 2, 4, 8}) {
            const auto y = run(*be, w, params(isa, act, mt, 16), x, m, &pool);
            EXPECT_LT(rel_error(y, ys), 1e-6) << isa << " " << act << " bits=" << bits << " M=" << m << " m_tile=" << mt;
          }
      }
  }
}

// Two-level quantization of a hand-made block: v = round(x / d) with d = max|x| / (127 * 255),
// v = 255 q + q2 with both halves in [-127, 127], dsum = d * sum(v); the AVX2 version gives the
// same bytes as the scalar one.
TEST_F(CpuSimdTest, TwoLevelQuantizationOfABlock) {
  float x[40];
  for (int i = 0; i < 40; ++i) x[i] = std::sin(0.7f * static_cast<float>(i)) * (i == 5 ? 3.f : 1.f);
  x[5] = -3.f;  // max |x|: v = -32385 -> q = -127, q2 = 0
  x[6] = 0.f;
  x[7] = 3.f * 128.f / 32385.f;  // v = 128: q = round(128 / 255) = 1, q2 = 128 - 255 = -127
  const int64_t blocks = 2;          // K = 40: the second block is padded with zeros
  int8_t q[64], q2[64];
  float d[2], ds[2];
  cpu_simd::quantize_row_x2_scalar(x, nullptr, 40, blocks, q, q2, d, ds);
  EXPECT_FLOAT_EQ(d[0], 3.f / (127.f * 255.f));
  EXPECT_EQ(q[5], -127);
  EXPECT_EQ(q2[5], 0);
  EXPECT_EQ(q[6], 0);
  EXPECT_EQ(q2[6], 0);
  EXPECT_EQ(q[7], 1);
  EXPECT_EQ(q2[7], -127);
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int64_t p = b * 32 + i;
      const int v = 255 * q[p] + q2[p];
      EXPECT_LE(std::abs(q2[p]), 127);
      EXPECT_LE(std::abs(q[p]), 127);
      const float xv = p < 40 ? x[p] : 0.f;
      EXPECT_LE(std::fabs(xv - d[b] * static_cast<float>(v)), 0.51f * d[b]) << p;
      sum += v;
    }
    EXPECT_NEAR(ds[b], d[b] * static_cast<float>(sum), 1e-6f * (std::fabs(ds[b]) + 1e-6f));
  }
  if (best_cpu_isa() >= cpu_simd::Isa::Avx2) {
    std::mt19937 rng(77);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> xs(999);
    for (auto& v : xs) v = nd(rng) * (std::uniform_int_distribution<int>(0, 9)(rng) == 0 ? 50.f : 1.f);
    const int64_t nb = (999 + 31) / 32;
    std::vector<int8_t> a1(nb * 32), b1(nb * 32), a2(nb * 32), b2(nb * 32);
    std::vector<float> d1(nb), s1(nb), d2(nb), s2(nb);
    cpu_simd::quantize_row_x2_scalar(xs.data(), nullptr, 999, nb, a1.data(), b1.data(), d1.data(), s1.data());
    cpu_simd::quantize_row_x2_avx2(xs.data(), nullptr, 999, nb, a2.data(), b2.data(), d2.data(), s2.data());
    EXPECT_EQ(a1, a2);
    EXPECT_EQ(b1, b2);
    EXPECT_EQ(d1, d2);
    for (int64_t b = 0; b < nb; ++b) EXPECT_NEAR(s1[b], s2[b], 1e-6f * std::fabs(s1[b]) + 1e-9f);
  }
}

TEST_F(CpuSimdTest, TileAndBlockParamsGiveTheSameResult) {
  const auto w = make_weight({256, 80, 4, 64, ZeroKind::Symmetric, false}, 500);
  const int64_t m = 37;
  const auto x = random_x(m, w.K(), 501);
  const auto ref = run(*be, w, params("auto", "int8", 1, 16), x, m, nullptr);
  for (int64_t mt : {1, 2, 4, 8})
    for (int64_t mb : {16, 32, 64, 128, 256}) {
      const auto y = run(*be, w, params("auto", "int8", mt, mb), x, m, &pool);
      EXPECT_LT(rel_error(y, ref), 1e-5) << "m_tile=" << mt << " m_block=" << mb;
    }
}

// One packed weight serves every M range: forward() honours ExecContext::call_params.
TEST_F(CpuSimdTest, CallParamsSelectKernelWithoutRepacking) {
  EXPECT_TRUE(be->reads_call_params());
  EXPECT_TRUE(be->packing_params(params("avx2", "f32", 2, 16)).empty());
  const auto w = make_weight({256, 48, 4, 64, ZeroKind::Integer, false}, 650);
  const int64_t m = 5;
  const auto x = random_x(m, w.K(), 651);
  const auto y_f32 = run(*be, w, params("auto", "f32", 2, 16), x, m, &pool);
  const auto y_int8 = run(*be, w, params("auto", "int8", 8, 64), x, m, &pool);
  auto prepared = be->prepare(w, params("auto", "int8", 8, 64), probe_cpu());
  std::vector<float> y(m * w.N());
  ActTensor xt{const_cast<float*>(x.data()), DType::F32, m, w.K()};
  ActTensor yt{y.data(), DType::F32, m, w.N()};
  const KernelParams call = params("auto", "f32", 2, 16);
  ExecContext ctx;
  ctx.pool = &pool;
  ctx.call_params = &call;
  prepared->forward(xt, yt, ctx);
  EXPECT_EQ(y, y_f32);
  ctx.call_params = nullptr;
  prepared->forward(xt, yt, ctx);
  EXPECT_EQ(y, y_int8);
}

// Big enough for the thread pool (dynamic chunks over tiles, activation rows split across threads):
// results equal the single-thread ones exactly, and the reference within the bound.
TEST_F(CpuSimdTest, ThreadedPathMatchesSingleThread) {
  const auto w = make_weight({1024, 200, 4, 128, ZeroKind::Integer, true}, 660);
  for (int64_t m : {1, 64}) {
    const auto x = random_x(m, w.K(), 661);
    const auto ref = reference(w, x, m);
    for (const auto& isa : isas_here()) {
      if (isa == "scalar") continue;
      for (const char* act : {"int8", "int8x2", "f32"}) {
        const auto y1 = run(*be, w, params(isa, act), x, m, nullptr);
        const auto y2 = run(*be, w, params(isa, act), x, m, &pool);
        EXPECT_EQ(y1, y2) << isa << " " << act << " M=" << m;
        EXPECT_LT(rel_error(y2, ref), bound_of(act, w));
      }
    }
  }
}

TEST_F(CpuSimdTest, EnvironmentForcesTheAvx2Path) {
  if (best_cpu_isa() < cpu_simd::Isa::Avx2) GTEST_SKIP() << "CPU has no AVX2";
  EXPECT_EQ(resolve_cpu_isa("avx2"), cpu_simd::Isa::Avx2);
  setenv("QRT_CPU_ISA", "avx2", 1);
  EXPECT_EQ(resolve_cpu_isa("auto"), cpu_simd::Isa::Avx2);
  const auto w = make_weight({128, 32, 4, 32, ZeroKind::Float, false}, 600);
  const auto x = random_x(3, w.K(), 601);
  KernelParams p;  // no "isa": the environment decides; default activations (int8x2)
  const auto y = run(*be, w, p, x, 3, &pool);
  unsetenv("QRT_CPU_ISA");
  EXPECT_LT(rel_error(y, reference(w, x, 3)), kInt8x2Bound);
  EXPECT_EQ(resolve_cpu_isa("auto"), best_cpu_isa());
}

TEST_F(CpuSimdTest, ParamsAreValidatedAndTuningSpaceIsValid) {
  LayerSpec spec;
  spec.in_features = 4096;
  spec.out_features = 4096;
  spec.group_size = 128;
  KernelParams bad;
  bad.values["m_tile"] = int64_t{3};
  EXPECT_FALSE(be->validate_params(spec, bad).ok);
  EXPECT_NE(be->validate_params(spec, bad).reason.find("m_tile"), std::string::npos);
  KernelParams unknown;
  unknown.values["warps"] = int64_t{4};
  EXPECT_FALSE(be->validate_params(spec, unknown).ok);
  KernelParams isa;
  isa.values["isa"] = std::string("neon");
  EXPECT_FALSE(be->validate_params(spec, isa).ok);
  KernelParams act;
  act.values["activations"] = std::string("int16");
  EXPECT_FALSE(be->validate_params(spec, act).ok);
  EXPECT_NE(be->validate_params(spec, act).reason.find("int8x2"), std::string::npos);
  for (const char* ok : {"int8x2", "f32", "int8"}) {
    act.values["activations"] = std::string(ok);
    EXPECT_TRUE(be->validate_params(spec, act).ok) << ok;
  }
  const DeviceInfo dev = probe_cpu();
  for (int64_t m : {1, 16, 512}) {
    const KernelParams def = be->default_params(spec, m, dev);
    EXPECT_TRUE(be->validate_params(spec, def).ok);
    ASSERT_TRUE(def.values.count("activations"));
    EXPECT_EQ(std::get<std::string>(def.values.at("activations")), "int8x2");
    const auto space = be->tuning_space(spec, m, dev);
    EXPECT_FALSE(space.empty());
    for (const auto& p : space) {
      EXPECT_TRUE(be->validate_params(spec, p).ok) << p.to_json();
      // Plain int8 activations flip near-tied answers: never a tuning candidate.
      EXPECT_NE(std::get<std::string>(p.values.at("activations")), "int8") << p.to_json();
    }
  }
}

TEST_F(CpuSimdTest, MalformedWeightsAreRejectedWithAMessage) {
  const DeviceInfo dev = probe_cpu();
  auto w = make_weight({64, 16, 4, 32, ZeroKind::Integer, true}, 850);
  w.g_idx[3] = 7;  // only 2 groups
  try {
    be->prepare(w, {}, dev);
    FAIL() << "g_idx out of range accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("g_idx"), std::string::npos) << e.what();
  }
  auto w2 = make_weight({64, 16, 4, 32, ZeroKind::Integer, false}, 851);
  w2.codes.pop_back();
  EXPECT_THROW(be->prepare(w2, {}, dev), Error);
  auto w3 = make_weight({64, 16, 4, 32, ZeroKind::Integer, false}, 852);
  w3.zeros.clear();
  EXPECT_THROW(be->prepare(w3, {}, dev), Error);
  KernelParams bad;
  bad.values["m_block"] = int64_t{7};
  EXPECT_THROW(be->prepare(make_weight({64, 16, 4, 32, ZeroKind::Symmetric, false}, 853), bad, dev), Error);
}

// The default model is GGUF Q4_1: 4-bit, g32, float "min" zeros. cpu_simd must accept it.
TEST_F(CpuSimdTest, AcceptsGgufQ41Layers) {
  LayerSpec spec;
  spec.in_features = 576;
  spec.out_features = 1536;
  spec.bits = 4;
  spec.group_size = 32;
  spec.zero_kind = ZeroKind::Float;
  spec.source_format = "gguf:Q4_1";
  DeviceInfo dev = probe_cpu();
  if (!dev.cpu.features.avx2) GTEST_SKIP() << "CPU has no AVX2: cpu_simd declares avx2";
  const Verdict v = be->check(spec, dev);
  EXPECT_TRUE(v.ok) << v.reason;
  DeviceInfo baseline = dev;
  baseline.cpu.features = CpuFeatures{};
  EXPECT_FALSE(be->check(spec, baseline).ok);
}

TEST_F(CpuSimdTest, DenseBaselineMatchesNaiveProduct) {
  const int64_t k = 300, n = 37, m = 11;
  const auto w = random_x(n, k, 700);
  const auto x = random_x(m, k, 701);
  std::vector<float> packed(((n + 15) / 16) * 16 * k);
  cpu_simd::pack_dense(w.data(), n, k, packed.data());
  std::vector<float> ref(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t kk = 0; kk < k; ++kk) acc += static_cast<double>(w[j * k + kk]) * x[i * k + kk];
      ref[i * n + j] = static_cast<float>(acc);
    }
  for (const auto& name : isas_here()) {
    cpu_simd::Isa isa;
    ASSERT_TRUE(parse_cpu_isa(name, &isa));
    std::vector<float> y(m * n, std::nanf(""));
    cpu_simd::dense_sgemm(isa, &pool, packed.data(), n, k, x.data(), m, y.data());
    EXPECT_LT(rel_error(y, ref), 1e-5) << name;
  }
}

}  // namespace
}  // namespace qrt

namespace qrt {
namespace {

// The real default model (GGUF Q4_1, g32 float mins): every distinct linear shape, every activation
// mode, against the reference dequantizer.
TEST(CpuSimdDefaultModel, RealQ41LayersMatchReference) {
  const char* path = std::getenv("QRT_DEFAULT_MODEL");
  if (!path || !std::ifstream(path).good())
    GTEST_SKIP() << "QRT_DEFAULT_MODEL unset or missing (scripts/fetch-model.sh prints the path)";
  const auto ckpt = open_checkpoint(path);
  auto be = make_cpu_simd_backend();
  ThreadPool pool(2);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const auto& lin : ckpt->linears()) {
    if (!lin.quantized || !seen.insert({lin.spec.in_features, lin.spec.out_features}).second) continue;
    const QuantizedWeight w = ckpt->load_quantized(lin.spec.name);
    for (int64_t m : {1, 5}) {
      const auto x = random_x(m, w.K(), 900);
      const auto ref = reference(w, x, m);
      for (const char* act : {"f32", "int8x2", "int8"})
        EXPECT_LT(rel_error(run(*be, w, params("auto", act), x, m, &pool), ref), bound_of(act, w)) << lin.spec.name << " " << act;
    }
  }
  EXPECT_FALSE(seen.empty());
}

}  // namespace
}  // namespace qrt
