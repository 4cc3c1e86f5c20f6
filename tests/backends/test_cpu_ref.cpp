// cpu_ref, the oracle: hand-computed tiny cases for each zero kind, act-order and FP8, and the
// same answer on one thread and on a pool.
#include <gtest/gtest.h>

#include "backend_test_util.h"
#include "backends/backend_factories.h"
#include "qrt/dtype.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

std::vector<float> run(const QuantizedWeight& w, std::vector<float> x, int64_t m, ThreadPool* pool = nullptr) {
  auto b = make_cpu_ref_backend();
  auto p = b->prepare(w, {}, probe_cpu());
  std::vector<float> y(static_cast<size_t>(m * w.N()), NAN);
  p->forward({x.data(), DType::F32, m, w.K(), DeviceKind::Cpu}, {y.data(), DType::F32, m, w.N(), DeviceKind::Cpu},
             {pool, nullptr});
  return y;
}

TEST(CpuRef, HandComputedSymmetricIntegerAndFloatZeros) {
  // W is 2 x 4, two groups of 2 along K, 2-bit codes.
  QuantizedWeight w;
  w.spec = test::int_layer("hand", 4, 2, 2, 2, ZeroKind::Symmetric);
  w.codes = {0, 1, 2, 3,   3, 3, 0, 0};
  w.scales = {1.0f, 0.5f,   2.0f, 0.25f};   // [N][G]
  // sym: (code - 2) * scale -> row0: -2 -1 0 0.5 ; row1: 2 2 -0.5 -0.5
  const std::vector<float> x = {1, 2, 3, 4};
  auto y = run(w, x, 1);
  EXPECT_FLOAT_EQ(y[0], -2 - 2 + 0 + 2);
  EXPECT_FLOAT_EQ(y[1], 2 + 4 - 1.5f - 2);

  w.spec.zero_kind = ZeroKind::Integer;
  w.zeros = {1, 3,   0, 2};
  // int: (code - z) * s -> row0: -1 0 -0.5 0 ; row1: 6 6 -0.5 -0.5
  y = run(w, x, 1);
  EXPECT_FLOAT_EQ(y[0], -1 + 0 - 1.5f + 0);
  EXPECT_FLOAT_EQ(y[1], 6 + 12 - 1.5f - 2);

  w.spec.zero_kind = ZeroKind::Float;
  w.zeros = {0.5f, -1.0f,   0.0f, 1.0f};
  // float: code * s + z -> row0: 0.5 1.5 0 0.5 ; row1: 6 6 1 1
  w.bias = {10.0f, -10.0f};
  y = run(w, x, 1);
  EXPECT_FLOAT_EQ(y[0], 0.5f + 3 + 0 + 2 + 10);
  EXPECT_FLOAT_EQ(y[1], 6 + 12 + 3 + 4 - 10);
}

TEST(CpuRef, ActOrderUsesGIdx) {
  QuantizedWeight w;
  w.spec = test::int_layer("ao", 4, 1, 4, 2, ZeroKind::Symmetric, true);
  w.codes = {9, 9, 9, 9};                 // (9 - 8) = 1 everywhere
  w.scales = {1.0f, 10.0f};
  w.g_idx = {1, 0, 0, 1};                  // columns 0 and 3 in group 1
  const auto y = run(w, {1, 1, 1, 1}, 1);
  EXPECT_FLOAT_EQ(y[0], 10 + 1 + 1 + 10);
}

TEST(CpuRef, Fp8BlockScales) {
  QuantizedWeight w;
  w.spec = test::fp8_layer("f8", 4, 2, 1, 2);   // one scale per row per 2 columns
  w.codes = {f32_to_fp8_e4m3(1.0f), f32_to_fp8_e4m3(2.0f), f32_to_fp8_e4m3(-0.5f), f32_to_fp8_e4m3(4.0f),
             f32_to_fp8_e4m3(1.5f), f32_to_fp8_e4m3(0.0f), f32_to_fp8_e4m3(-3.0f), f32_to_fp8_e4m3(1.0f)};
  w.scales = {2.0f, 0.5f, 1.0f, 3.0f};
  const auto y = run(w, {1, 1, 2, 1}, 1);
  EXPECT_FLOAT_EQ(y[0], 2 + 4 + (-0.5f * 0.5f * 2) + 2);
  EXPECT_FLOAT_EQ(y[1], 1.5f + 0 + (-9.0f * 2) + 3);
}

TEST(CpuRef, PoolAndHalfActivationsAgree) {
  const LayerSpec spec = test::int_layer("pool", 256, 96, 4, 64, ZeroKind::Integer, true);
  const QuantizedWeight w = test::random_weight(spec, 99, true);
  const int64_t m = 17;
  std::vector<float> x(static_cast<size_t>(m * 256));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.1f * static_cast<float>(i));
  ThreadPool pool(3);
  const auto a = run(w, x, m), b = run(w, x, m, &pool);
  EXPECT_EQ(a, b) << "the split over N must not change a single bit";
  EXPECT_LT(test::relative_error(a, test::reference_forward(w, x, m)), 1e-5);

  // F16 activations in and out: the same answer up to fp16 rounding.
  std::vector<uint16_t> xh(x.size()), yh(static_cast<size_t>(m * 96));
  std::vector<float> xr(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    xh[i] = f32_to_fp16(x[i]);
    xr[i] = fp16_to_f32(xh[i]);
  }
  auto p = make_cpu_ref_backend()->prepare(w, {}, probe_cpu());
  p->forward({xh.data(), DType::F16, m, 256, DeviceKind::Cpu}, {yh.data(), DType::F16, m, 96, DeviceKind::Cpu},
             {&pool, nullptr});
  std::vector<float> y(yh.size());
  for (size_t i = 0; i < y.size(); ++i) y[i] = fp16_to_f32(yh[i]);
  EXPECT_LT(test::relative_error(y, test::reference_forward(w, xr, m)), 1e-3);
}

TEST(CpuRef, RejectsParametersAndOtherDevices) {
  auto b = make_cpu_ref_backend();
  const QuantizedWeight w = test::random_weight(test::int_layer("p", 32, 8, 4, -1, ZeroKind::Symmetric), 1);
  KernelParams p;
  p.values["tile"] = int64_t{8};
  EXPECT_FALSE(b->validate_params(w.spec, p).ok);
  EXPECT_THROW(b->prepare(w, p, probe_cpu()), Error);
  EXPECT_THROW(b->prepare(w, {}, target_profile("h100")), Error);
}

}  // namespace
}  // namespace qrt
