// QuantLinear's fallback on a FIRST-RUN failure: a kernel that prepared fine but throws on its
// first forward (a workspace that does not fit, parameters found unsupported at run time) is
// replaced by the next backend of the fallback list, the call is rerun, the output equals the
// reference, and the failure is logged. When every backend fails, the error names the layer and
// every reason.
#include <gtest/gtest.h>

#include <cmath>

#include "backend_test_util.h"
#include "backends/backend_factories.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"

namespace qrt {
namespace {

using test::int_layer;

// A CPU backend that prepares like the reference but whose forward throws `fail_runs` times
// (then works). It writes garbage into y before throwing, as a kernel that dies midway would.
class FailingRunBackend final : public Backend {
 public:
  FailingRunBackend(std::string name, int fail_runs, ErrorKind kind = ErrorKind::OutOfMemory)
      : name_(std::move(name)), fail_runs_(fail_runs), kind_(kind) {
    cap_.device = DeviceKind::Cpu;
    cap_.encodings = {WeightEncoding::IntAffine};
    cap_.bits = {4, 8};
    cap_.activation_dtypes = {DType::F32};
  }
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return summary_; }
  const BackendCapability& capability() const override { return cap_; }
  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& w, const KernelParams&,
                                          const PrepareContext&) const override {
    ++prepare_calls;
    return std::make_unique<Prepared>(*this, w);
  }
  mutable int prepare_calls = 0;
  mutable int forward_calls = 0;

 private:
  struct Prepared final : PreparedLinear {
    Prepared(const FailingRunBackend& b, const QuantizedWeight& w)
        : owner(b), n(w.N()), k(w.K()), deq(dequantize_reference(w)) {}
    void forward(const ActTensor& x, const ActTensor& y, const ExecContext&) override {
      const int call = owner.forward_calls++;
      float* ys = static_cast<float*>(y.data);
      if (call < owner.fail_runs_) {
        for (int64_t i = 0; i < y.rows * y.cols / 2; ++i) ys[i] = 1e30f;  // half-written output
        throw Error(owner.kind_, owner.name_ + ": injected first-run failure (workspace of 1 GiB does not fit)");
      }
      const float* xs = static_cast<const float*>(x.data);
      for (int64_t r = 0; r < x.rows; ++r)
        for (int64_t c = 0; c < n; ++c) {
          float acc = 0.f;
          for (int64_t i = 0; i < k; ++i) acc += xs[r * k + i] * deq[c * k + i];
          ys[r * n + c] = acc;
        }
    }
    int64_t weight_bytes() const override { return static_cast<int64_t>(deq.size() * 4); }
    const FailingRunBackend& owner;
    int64_t n, k;
    std::vector<float> deq;
  };
  std::string name_, summary_ = "test backend whose first runs fail";
  int fail_runs_;
  ErrorKind kind_;
  BackendCapability cap_;
};

std::vector<float> ramp(int64_t m, int64_t k) {
  std::vector<float> x(static_cast<size_t>(m * k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.31f * static_cast<float>(i)) - 0.1f;
  return x;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(FirstRunFallback, FailingFirstForwardFallsBackRerunsAndLogs) {
  BackendRegistry reg;
  auto f = std::make_unique<FailingRunBackend>("run_fail", /*fail_runs=*/1000);
  FailingRunBackend* failing = f.get();
  reg.add(std::move(f));
  reg.add(make_cpu_ref_backend());
  reg.set_auto_order("cpu", {"run_fail", "cpu_ref"});
  const LayerSpec spec = int_layer("model.layers.2.mlp.up_proj", 96, 40, 4, 32, ZeroKind::Integer);
  const QuantizedWeight w = test::random_weight(spec, 21);
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, cpu, nullptr, reg);
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  ASSERT_EQ(plans[0].choices.size(), 1u);
  EXPECT_EQ(plans[0].choices[0].backend, "run_fail");
  EXPECT_EQ(plans[0].fallback, std::vector<std::string>{"cpu_ref"});

  std::vector<std::string> log;
  auto ql = QuantLinear::build(w, plans[0], PrepareContext(cpu, 2048, [&](const std::string& m) { log.push_back(m); }), reg);
  EXPECT_EQ(ql->backends_used(), std::vector<std::string>{"run_fail"}) << "prepare succeeded: nothing fell back yet";
  EXPECT_TRUE(log.empty());

  const int64_t m = 3;
  auto x = ramp(m, 96);
  std::vector<float> y(static_cast<size_t>(m * 40), NAN);
  ASSERT_NO_THROW(ql->forward({x.data(), DType::F32, m, 96, DeviceKind::Cpu},
                              {y.data(), DType::F32, m, 40, DeviceKind::Cpu}, {}));
  EXPECT_EQ(failing->forward_calls, 1);
  EXPECT_EQ(ql->backends_used(), std::vector<std::string>{"cpu_ref"});
  // The rerun rewrote y fully: nothing of the failed kernel's half-written output is left.
  EXPECT_LT(test::relative_error(y, test::reference_forward(w, x, m)), 1e-5);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_TRUE(contains(log[0], "model.layers.2.mlp.up_proj")) << log[0];
  EXPECT_TRUE(contains(log[0], "run_fail failed on its first run at M=3")) << log[0];
  EXPECT_TRUE(contains(log[0], "injected first-run failure")) << log[0];
  EXPECT_TRUE(contains(log[1], "using fallback backend cpu_ref instead of run_fail")) << log[1];

  // Later calls go to the fallback kernel directly: the failed one is never called again.
  std::fill(y.begin(), y.end(), NAN);
  ql->forward({x.data(), DType::F32, m, 96, DeviceKind::Cpu}, {y.data(), DType::F32, m, 40, DeviceKind::Cpu}, {});
  EXPECT_EQ(failing->forward_calls, 1);
  EXPECT_EQ(log.size(), 2u);
  EXPECT_LT(test::relative_error(y, test::reference_forward(w, x, m)), 1e-5);
}

// Activations that do not match the layer are the caller's error, found on the first run of a
// range (kernels trust their arguments): no fallback is tried, and a correct call still runs.
TEST(FirstRunFallback, MismatchedActivationsAreAnErrorNotAFallback) {
  BackendRegistry reg;
  auto f = std::make_unique<FailingRunBackend>("run_fail", /*fail_runs=*/0);
  FailingRunBackend* kernel = f.get();
  reg.add(std::move(f));
  reg.add(make_cpu_ref_backend());
  reg.set_auto_order("cpu", {"run_fail", "cpu_ref"});
  const LayerSpec spec = int_layer("model.layers.0.mlp.down_proj", 64, 32, 4, 32, ZeroKind::Integer);
  const QuantizedWeight w = test::random_weight(spec, 3);
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, cpu, nullptr, reg);
  std::vector<std::string> log;
  auto ql = QuantLinear::build(w, plans[0], PrepareContext(cpu, 16, [&](const std::string& m) { log.push_back(m); }), reg);
  auto x = ramp(2, 64);
  std::vector<float> y(2 * 33, NAN);
  try {
    ql->forward({x.data(), DType::F32, 2, 64, DeviceKind::Cpu}, {y.data(), DType::F32, 2, 33, DeviceKind::Cpu}, {});
    ADD_FAILURE() << "a 2x33 output for a 64 -> 32 layer ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    EXPECT_TRUE(contains(e.what(), "model.layers.0.mlp.down_proj")) << e.what();
    EXPECT_TRUE(contains(e.what(), "y is 2x33")) << e.what();
  }
  EXPECT_THROW(ql->forward({x.data(), DType::F16, 2, 64, DeviceKind::Cpu}, {y.data(), DType::F16, 2, 32, DeviceKind::Cpu}, {}),
               Error);
  EXPECT_EQ(kernel->forward_calls, 0);
  EXPECT_TRUE(log.empty());
  ql->forward({x.data(), DType::F32, 2, 64, DeviceKind::Cpu}, {y.data(), DType::F32, 2, 32, DeviceKind::Cpu}, {});
  EXPECT_EQ(kernel->forward_calls, 1);
  EXPECT_EQ(ql->backends_used(), std::vector<std::string>{"run_fail"});
}

// With a way to re-read the canonical weight, QuantLinear lets go of it right after build, and a
// first-run fallback re-reads it.
TEST(FirstRunFallback, ReleasedWeightIsReReadForTheFallback) {
  BackendRegistry reg;
  reg.add(std::make_unique<FailingRunBackend>("run_fail", 1000));
  reg.add(make_cpu_ref_backend());
  reg.set_auto_order("cpu", {"run_fail", "cpu_ref"});
  const LayerSpec spec = int_layer("l", 64, 24, 4, 32, ZeroKind::Integer);
  const QuantizedWeight copy = test::random_weight(spec, 9);
  auto w = std::make_shared<const QuantizedWeight>(copy);
  int reloads = 0;
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, cpu, nullptr, reg);
  auto ql = QuantLinear::build(w, plans[0], cpu, reg, [&] {
    ++reloads;
    return copy;
  });
  EXPECT_EQ(w.use_count(), 1) << "the canonical weight is released after build";
  w.reset();
  EXPECT_EQ(reloads, 0);
  auto x = ramp(2, 64);
  std::vector<float> y(48, NAN);
  ql->forward({x.data(), DType::F32, 2, 64, DeviceKind::Cpu}, {y.data(), DType::F32, 2, 24, DeviceKind::Cpu}, {});
  EXPECT_EQ(reloads, 1);
  EXPECT_EQ(ql->backends_used(), std::vector<std::string>{"cpu_ref"});
  EXPECT_LT(test::relative_error(y, test::reference_forward(copy, x, 2)), 1e-5);
}

TEST(FirstRunFallback, WorksThroughTheOwningOverloadAndAfterTheWeightIsDropped) {
  BackendRegistry reg;
  reg.add(std::make_unique<FailingRunBackend>("run_fail", 1000));
  reg.add(make_cpu_ref_backend());
  reg.set_auto_order("cpu", {"run_fail", "cpu_ref"});
  const LayerSpec spec = int_layer("l", 64, 24, 8, -1, ZeroKind::Symmetric);
  auto w = std::make_shared<const QuantizedWeight>(test::random_weight(spec, 5));
  const QuantizedWeight copy = *w;
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, cpu, nullptr, reg);
  auto ql = QuantLinear::build(w, plans[0], cpu, reg);
  w.reset();  // QuantLinear keeps its own reference until every range has run
  auto x = ramp(1, 64);
  std::vector<float> y(24, NAN);
  ql->forward({x.data(), DType::F32, 1, 64, DeviceKind::Cpu}, {y.data(), DType::F32, 1, 24, DeviceKind::Cpu}, {});
  EXPECT_EQ(ql->backends_used(), std::vector<std::string>{"cpu_ref"});
  EXPECT_LT(test::relative_error(y, test::reference_forward(copy, x, 1)), 1e-5);
}

TEST(FirstRunFallback, OnlyTheFirstRunIsAProbe) {
  // A kernel that succeeds on its first run keeps the range even if it were to misbehave later:
  // the probe happens once per M range, and each range probes on its own first call.
  BackendRegistry reg;
  reg.add(std::make_unique<test::FakeBackend>("small", false, 4));
  auto f = std::make_unique<FailingRunBackend>("run_fail", 1);  // fails its first call only
  FailingRunBackend* failing = f.get();
  reg.add(std::move(f));
  reg.add(make_cpu_ref_backend());
  reg.set_auto_order("cpu", {"small", "run_fail", "cpu_ref"});
  const LayerSpec spec = int_layer("l", 32, 16, 4, 32, ZeroKind::Symmetric);
  const QuantizedWeight w = test::random_weight(spec, 9);
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, cpu, nullptr, reg);
  ASSERT_EQ(plans[0].choices.size(), 2u);
  std::vector<std::string> log;
  auto ql = QuantLinear::build(w, plans[0], PrepareContext(cpu, 2048, [&](const std::string& m) { log.push_back(m); }), reg);
  for (int64_t m : {2, 2, 7, 7, 3}) {
    auto x = ramp(m, 32);
    std::vector<float> y(static_cast<size_t>(m * 16), NAN);
    ql->forward({x.data(), DType::F32, m, 32, DeviceKind::Cpu}, {y.data(), DType::F32, m, 16, DeviceKind::Cpu}, {});
    EXPECT_LT(test::relative_error(y, test::reference_forward(w, x, m)), 1e-5) << "M=" << m;
  }
  EXPECT_EQ(ql->backends_used(), (std::vector<std::string>{"small", "cpu_ref"}));
  EXPECT_EQ(failing->forward_calls, 1) << "the failed kernel is not retried";
  ASSERT_EQ(log.size(), 2u);
  EXPECT_TRUE(contains(log[0], "run_fail failed on its first run at M=7")) << log[0];
}

TEST(FirstRunFallback, EveryBackendFailingIsAnErrorNamingTheLayerAndEveryReason) {
  BackendRegistry reg;
  reg.add(std::make_unique<FailingRunBackend>("run_fail_a", 1000));
  reg.add(std::make_unique<test::FakeBackend>("prep_fail", /*fail_prepare=*/true));
  reg.add(std::make_unique<FailingRunBackend>("run_fail_b", 1000, ErrorKind::Unsupported));
  reg.set_auto_order("cpu", {"run_fail_a", "prep_fail", "run_fail_b"});
  const LayerSpec spec = int_layer("model.layers.0.self_attn.o_proj", 64, 32, 4, 32, ZeroKind::Symmetric);
  const QuantizedWeight w = test::random_weight(spec, 13);
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, cpu, nullptr, reg);
  ASSERT_EQ(plans[0].fallback, (std::vector<std::string>{"prep_fail", "run_fail_b"}));
  std::vector<std::string> log;
  auto ql = QuantLinear::build(w, plans[0], PrepareContext(cpu, 2048, [&](const std::string& m) { log.push_back(m); }), reg);
  auto x = ramp(2, 64);
  std::vector<float> y(64);
  try {
    ql->forward({x.data(), DType::F32, 2, 64, DeviceKind::Cpu}, {y.data(), DType::F32, 2, 32, DeviceKind::Cpu}, {});
    FAIL() << "expected an error when every backend fails";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::NoBackend);
    EXPECT_TRUE(contains(what, "model.layers.0.self_attn.o_proj: no backend could run M 1..")) << what;
    EXPECT_TRUE(contains(what, "run_fail_a: run_fail_a: injected first-run failure")) << what;
    EXPECT_TRUE(contains(what, "prep_fail: model.layers.0.self_attn.o_proj: prep_fail: injected prepare failure"))
        << what;
    EXPECT_TRUE(contains(what, "run_fail_b: run_fail_b: injected first-run failure")) << what;
  }
  // Every failure was also logged as it happened: two first runs and one prepare.
  ASSERT_EQ(log.size(), 4u);
  EXPECT_TRUE(contains(log[0], "run_fail_a failed on its first run")) << log[0];
  EXPECT_TRUE(contains(log[1], "prep_fail failed to prepare")) << log[1];
  EXPECT_TRUE(contains(log[2], "using fallback backend run_fail_b")) << log[2];
  EXPECT_TRUE(contains(log[3], "run_fail_b failed on its first run")) << log[3];
}

}  // namespace
}  // namespace qrt
