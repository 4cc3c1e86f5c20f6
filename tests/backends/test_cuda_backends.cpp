// GPU tests of the CUDA runtime and of the cuda_dequant / cuda_fp8 / cuda_higgs / cuda_int8 backends
// against the CPU reference dequantizer (and, for cuda_int8, a host model of LLM.int8's
// decomposition), on fresh seeded random weights. Skipped (with the reason) where no GPU is present
// or in a CPU-only build.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "qrt/error.h"
#include "qrt/plan.h"
#include "qrt/quantized_weight.h"

#ifdef QRT_WITH_CUDA
#include "backend_test_util.h"
#include "backends/backend_factories.h"
#include "backends/cuda/higgs/higgs_weight.h"
#include "quant/higgs_quantize.h"
#include "qrt/thread_pool.h"
#include "support/cuda_test_support.h"

namespace qrt {
namespace {

using cuda_test::DeviceTensor;

#define QRT_SKIP_WITHOUT_GPU()                                   \
  do {                                                           \
    std::string why_;                                            \
    if (!cuda_test::gpu_available(&why_)) GTEST_SKIP() << why_;  \
  } while (0)

QuantizedWeight make_int_weight(int64_t n, int64_t k, int bits, int group, ZeroKind zk, bool act_order, bool bias,
                                std::mt19937& rng) {
  QuantizedWeight w;
  w.spec.name = "test.int" + std::to_string(bits);
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::IntAffine;
  w.spec.bits = bits;
  w.spec.group_size = group;
  w.spec.zero_kind = zk;
  w.spec.act_order = act_order;
  w.spec.has_bias = bias;
  const int64_t gs = group <= 0 ? k : group;
  const int64_t groups = (k + gs - 1) / gs;
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  std::uniform_real_distribution<float> scale(0.004f, 0.02f), fz(-0.05f, 0.05f), b(-0.5f, 0.5f);
  w.codes.resize(static_cast<size_t>(n * k));
  for (auto& c : w.codes) c = static_cast<uint8_t>(code(rng));
  w.scales.resize(static_cast<size_t>(n * groups));
  for (auto& s : w.scales) s = scale(rng);
  if (zk == ZeroKind::Integer) {
    w.zeros.resize(w.scales.size());
    for (auto& z : w.zeros) z = static_cast<float>(code(rng));
  } else if (zk == ZeroKind::Float) {
    w.zeros.resize(w.scales.size());
    for (auto& z : w.zeros) z = fz(rng);
  }
  if (act_order) {
    std::vector<int32_t> perm(static_cast<size_t>(k));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    w.g_idx.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) w.g_idx[i] = static_cast<int32_t>(perm[i] / gs);
  }
  if (bias) {
    w.bias.resize(static_cast<size_t>(n));
    for (auto& v : w.bias) v = b(rng);
  }
  w.validate();
  return w;
}

QuantizedWeight make_fp8_weight(int64_t n, int64_t k, int bn, int bk, std::mt19937& rng) {
  QuantizedWeight w;
  w.spec.name = "test.fp8";
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::Fp8E4M3;
  w.spec.bits = 8;
  w.spec.scale_block_n = bn;
  w.spec.scale_block_k = bk;
  w.spec.zero_kind = ZeroKind::Symmetric;
  std::normal_distribution<float> nd(0.f, 40.f);
  std::uniform_real_distribution<float> scale(0.0005f, 0.002f);
  w.codes.resize(static_cast<size_t>(n * k));
  for (auto& c : w.codes) c = f32_to_fp8_e4m3(nd(rng));
  const int64_t gn = (n + bn - 1) / bn, gk = (k + bk - 1) / bk;
  w.scales.resize(static_cast<size_t>(gn * gk));
  for (auto& s : w.scales) s = scale(rng);
  w.validate();
  return w;
}

std::vector<float> random_x(int64_t m, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = nd(rng);
  return x;
}

std::vector<float> reference(const QuantizedWeight& w, const std::vector<float>& x, int64_t m) {
  const std::vector<float> wf = dequantize_reference(w);
  const int64_t n = w.N(), k = w.K();
  std::vector<float> y(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = w.bias.empty() ? 0.0 : w.bias[j];
      for (int64_t q = 0; q < k; ++q) acc += double(x[i * k + q]) * wf[j * k + q];
      y[i * n + j] = static_cast<float>(acc);
    }
  return y;
}

// Activations as cuda_fp8's native path sees them: per-token e4m3 with s = amax / 448.
std::vector<float> fp8_per_token(const std::vector<float>& x, int64_t m, int64_t k) {
  std::vector<float> out(x.size());
  for (int64_t i = 0; i < m; ++i) {
    float amax = 0.f;
    for (int64_t q = 0; q < k; ++q) amax = std::max(amax, std::fabs(x[i * k + q]));
    const float s = amax > 0.f ? amax / 448.f : 1.f, inv = 1.f / s;
    for (int64_t q = 0; q < k; ++q) out[i * k + q] = fp8_e4m3_to_f32(f32_to_fp8_e4m3(x[i * k + q] * inv)) * s;
  }
  return out;
}

// One scale for the whole M x K activation (cuda_fp8's default on GPUs without per-row scale modes).
std::vector<float> fp8_per_tensor(const std::vector<float>& x) {
  float amax = 0.f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  const float s = amax > 0.f ? amax / 448.f : 1.f, inv = 1.f / s;
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = fp8_e4m3_to_f32(f32_to_fp8_e4m3(x[i] * inv)) * s;
  return out;
}

double rel_err(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) return INFINITY;  // unwritten (poisoned) or overflowed outputs
    num += (double(y[i]) - ref[i]) * (double(y[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

double tol_for(DType t) { return t == DType::F16 ? 4e-3 : 2e-2; }

std::vector<float> run_linear(const Backend& be, const QuantizedWeight& w, const KernelParams& params,
                              const std::vector<float>& x, int64_t m, DType dtype, bool graph = false) {
  auto lin = be.prepare(w, params, cuda_test::gpu0());
  EXPECT_GT(lin->weight_bytes(), 0);
  auto dx = DeviceTensor::upload(x, m, w.K(), dtype);
  DeviceTensor dy(m, w.N(), dtype);
  cuda_test::run_on_stream(
      [&](void* stream) {
        ExecContext ctx;
        ctx.cuda_stream = stream;
        lin->forward(dx.act(), dy.act(), ctx);
      },
      graph);
  return dy.download();
}

// Before touching a GPU, every CUDA backend's prepare() refuses a CPU device and parameters it does
// not take, naming the layer and the backend (runs without a GPU: a target profile is enough).
TEST(CudaBackends, PrepareRefusesCpuDevicesAndUnknownParametersByName) {
  std::mt19937 rng(3);
  QuantizedWeight w = make_int_weight(64, 128, 4, 64, ZeroKind::Symmetric, false, false, rng);
  w.spec.name = "model.layers.3.mlp.up_proj";
  KernelParams bogus;
  bogus.values["no_such_param"] = int64_t(1);
  const DeviceInfo h100 = target_profile("h100");
  for (auto make : {make_cuda_dequant_backend, make_cuda_gemv_backend, make_cuda_marlin_backend, make_cuda_fp8_backend,
                    make_cuda_higgs_backend, make_cuda_int8_backend}) {
    const auto b = make();
    try {
      b->prepare(w, {}, probe_cpu());
      FAIL() << b->name() << " prepared on a CPU";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << b->name();
      EXPECT_NE(std::string(e.what()).find("model.layers.3.mlp.up_proj: " + b->name() + " needs a CUDA device"),
                std::string::npos)
          << e.what();
    }
    try {
      b->prepare(w, bogus, h100);
      FAIL() << b->name() << " took an unknown parameter";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << b->name() << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("no_such_param"), std::string::npos) << e.what();
    }
  }
}

TEST(CudaRuntime, CheckedCallThrowsNamingTheStatement) {
  QRT_SKIP_WITHOUT_GPU();
  try {
    cuda_test::failing_checked_call();
    FAIL() << "expected a qrt::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Device);
    EXPECT_NE(std::string(e.what()).find("cudaSetDevice(-7)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cuda_test_support.cpp"), std::string::npos) << e.what();
  }
}

TEST(CudaRuntime, AbsurdAllocationIsOutOfMemoryNotACrash) {
  QRT_SKIP_WITHOUT_GPU();
  try {
    cuda_test::allocate_and_free(int64_t(1) << 50);
    FAIL() << "expected a qrt::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory) << e.what();
    EXPECT_NE(std::string(e.what()).find("test allocation"), std::string::npos) << e.what();
  }
  cuda_test::allocate_and_free(1 << 20);  // the device still works
}

struct IntCase {
  int bits, group;
  ZeroKind zk;
  bool act_order, bias;
  int64_t n, k;
};

TEST(CudaDequant, MatchesReferenceAcrossFormatsAndM) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_dequant_backend();
  std::mt19937 rng(1234);
  const IntCase cases[] = {
      {4, 128, ZeroKind::Symmetric, false, false, 128, 256}, {4, 32, ZeroKind::Integer, false, true, 96, 256},
      {4, 128, ZeroKind::Integer, true, false, 64, 384},     {8, -1, ZeroKind::Symmetric, false, false, 72, 200},
      {2, 64, ZeroKind::Float, false, false, 64, 128},       {3, 128, ZeroKind::Integer, false, true, 40, 256},
      {5, 32, ZeroKind::Symmetric, false, false, 33, 96},    {6, 16, ZeroKind::Float, false, false, 48, 160},
      {1, 64, ZeroKind::Integer, false, false, 24, 128},     {7, 128, ZeroKind::Symmetric, true, false, 32, 256},
      {4, 128, ZeroKind::Symmetric, false, false, 64, 100},  // K not a multiple of 8: generic kernels
  };
  for (const IntCase& c : cases) {
    QuantizedWeight w = make_int_weight(c.n, c.k, c.bits, c.group, c.zk, c.act_order, c.bias, rng);
    for (int64_t m : {1, 3, 8, 17, 64}) {
      for (DType dt : {DType::F16, DType::BF16}) {
        SCOPED_TRACE(w.spec.describe() + " zero=" + zero_kind_name(c.zk) + " act_order=" + std::to_string(c.act_order) +
                     " N=" + std::to_string(c.n) + " K=" + std::to_string(c.k) + " M=" + std::to_string(m) + " " +
                     std::string(dtype_name(dt)));
        std::vector<float> x = cuda_test::round_to(random_x(m, c.k, rng), dt);
        std::vector<float> y = run_linear(*be, w, {}, x, m, dt);
        EXPECT_LT(rel_err(y, reference(w, x, m)), tol_for(dt));
      }
    }
  }
}

TEST(CudaDequant, ForcedPathsAgreeAndGraphReplayMatches) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_dequant_backend();
  std::mt19937 rng(99);
  QuantizedWeight w = make_int_weight(256, 512, 4, 128, ZeroKind::Integer, false, true, rng);
  const int64_t m = 5;
  std::vector<float> x = cuda_test::round_to(random_x(m, 512, rng), DType::F16);
  std::vector<float> ref = reference(w, x, m);
  KernelParams gemv, gemm, tiled;
  gemv.values["gemv_max_m"] = int64_t(8);
  gemm.values["gemv_max_m"] = int64_t(0);
  tiled.values["gemv_max_m"] = int64_t(0);
  tiled.values["tile_n"] = int64_t(64);
  EXPECT_LT(rel_err(run_linear(*be, w, gemv, x, m, DType::F16), ref), 4e-3);
  EXPECT_LT(rel_err(run_linear(*be, w, gemm, x, m, DType::F16), ref), 4e-3);
  EXPECT_LT(rel_err(run_linear(*be, w, tiled, x, m, DType::F16), ref), 4e-3);
  EXPECT_LT(rel_err(run_linear(*be, w, gemv, x, m, DType::F16, /*graph=*/true), ref), 4e-3);
  EXPECT_LT(rel_err(run_linear(*be, w, gemm, x, m, DType::F16, /*graph=*/true), ref), 4e-3);
  KernelParams bad;
  bad.values["tile_rows"] = int64_t(3);
  EXPECT_FALSE(be->validate_params(w.spec, bad).ok);
  EXPECT_THROW(be->prepare(w, bad, cuda_test::gpu0()), Error);
}

// Kernels trust their arguments; the first run of each M range checks them (QuantLinear).
TEST(CudaDequant, RejectsMismatchedActivations) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  QuantizedWeight w = make_int_weight(64, 128, 4, 128, ZeroKind::Symmetric, false, false, rng);
  LinearPlan plan;
  plan.layer = w.spec;
  plan.choices.push_back(KernelChoice{1, INT64_MAX, "cuda_dequant", {}, ParamSource::Default});
  auto lin = QuantLinear::build(w, plan, cuda_test::gpu0());
  DeviceTensor x(2, 128, DType::F16), y_wrong(2, 65, DType::F16), y_bf(2, 64, DType::BF16), y(2, 64, DType::F16);
  ExecContext ctx;
  EXPECT_THROW(lin->forward(x.act(), y_wrong.act(), ctx), Error);
  EXPECT_THROW(lin->forward(x.act(), y_bf.act(), ctx), Error);
  EXPECT_NO_THROW(lin->forward(x.act(), y.act(), ctx));
}

// Code-book weights (bitsandbytes NF4 / FP4, GGUF IQ4's integer grid) on cuda_dequant against
// cpu_ref, the backend that runs them on the CPU: every group size bitsandbytes and GGUF use up to
// 128, shapes with N not a multiple of the GEMV's 4 rows, and M through both paths (the fused GEMV
// forced up to 64 rows, the dequantized tiles + cuBLAS forced down to 1 row, several tiles at once).
TEST(CudaDequant, CodebooksMatchCpuRefAcrossGroupsShapesAndM) {
  QRT_SKIP_WITHOUT_GPU();
  const auto gpu = make_cuda_dequant_backend();
  const auto cpu = make_cpu_ref_backend();
  ThreadPool pool(2);
  const struct {
    const char* source;
    const std::vector<float>& levels;
  } books[] = {{"bnb_nf4", test::nf4_levels()}, {"bnb_fp4", test::fp4_levels()}, {"gguf:IQ4_NL", test::iq4_levels()}};
  const struct {
    int64_t n, k;
  } shapes[] = {{64, 256}, {33, 384}, {200, 1152}};
  KernelParams gemv, tiles, small_tiles;
  gemv.values["gemv_max_m"] = int64_t(64);
  tiles.values["gemv_max_m"] = int64_t(0);
  small_tiles.values["gemv_max_m"] = int64_t(0);
  small_tiles.values["tile_n"] = int64_t(64);
  uint32_t seed = 4242;
  std::mt19937 rng(17);
  for (const auto& b : books)
    for (int group : {32, 64, 128})
      for (const auto& sh : shapes) {
        const LayerSpec spec = test::codebook_layer("test.codebook", sh.k, sh.n, b.levels, group, b.source);
        const QuantizedWeight w = test::random_weight(spec, seed++, /*with_bias=*/sh.n == 33);
        const auto ref_linear = cpu->prepare(w, {}, probe_cpu());
        for (int64_t m : {1, 4, 33, 256}) {
          for (DType dt : {DType::F16, DType::BF16}) {
            SCOPED_TRACE(std::string(b.source) + " " + w.spec.describe() + " N=" + std::to_string(sh.n) +
                         " K=" + std::to_string(sh.k) + " M=" + std::to_string(m) + " " + std::string(dtype_name(dt)));
            std::vector<float> x = cuda_test::round_to(random_x(m, sh.k, rng), dt);
            std::vector<float> ref(static_cast<size_t>(m * sh.n), NAN);
            ref_linear->forward({x.data(), DType::F32, m, sh.k, DeviceKind::Cpu},
                                {ref.data(), DType::F32, m, sh.n, DeviceKind::Cpu}, {&pool, nullptr});
            EXPECT_LT(rel_err(run_linear(*gpu, w, {}, x, m, dt), ref), tol_for(dt)) << "default parameters";
            if (m <= 64) {
              EXPECT_LT(rel_err(run_linear(*gpu, w, gemv, x, m, dt), ref), tol_for(dt)) << "fused GEMV";
            }
            EXPECT_LT(rel_err(run_linear(*gpu, w, tiles, x, m, dt), ref), tol_for(dt)) << "tiles + cuBLAS";
            if (sh.n > 64) {
              EXPECT_LT(rel_err(run_linear(*gpu, w, small_tiles, x, m, dt), ref), tol_for(dt)) << "64-row tiles";
            }
          }
        }
      }
}

// The code-book layers the unrolled run kernels do not take decode code by code: act-order, groups
// of 16 (not whole runs of 32), K not a multiple of 8 (a partial last run and unaligned GEMV rows),
// and code books of other widths (3 bits: 8 levels; 8 bits: 256 levels, the largest table).
TEST(CudaDequant, CodebooksOnThePerCodeKernelsMatchCpuRef) {
  QRT_SKIP_WITHOUT_GPU();
  const auto gpu = make_cuda_dequant_backend();
  const auto cpu = make_cpu_ref_backend();
  ThreadPool pool(2);
  std::vector<float> levels3(test::nf4_levels().begin(), test::nf4_levels().begin() + 8);
  std::vector<float> levels8(256);
  for (size_t i = 0; i < levels8.size(); ++i) levels8[i] = std::sinh((static_cast<float>(i) - 127.5f) / 40.f);
  const LayerSpec specs[] = {
      test::codebook_layer("test.nf4_actorder", 384, 64, test::nf4_levels(), 128, "bnb_nf4", /*act_order=*/true),
      test::codebook_layer("test.iq4_g16", 256, 48, test::iq4_levels(), 16, "gguf:IQ4_NL"),
      test::codebook_layer("test.fp4_k100", 100, 40, test::fp4_levels(), -1, "bnb_fp4"),
      test::codebook_layer("test.cb3", 256, 36, levels3, 64, "test 3-bit"),
      test::codebook_layer("test.cb8", 256, 36, levels8, 32, "test 8-bit"),
  };
  KernelParams gemv, tiles;
  gemv.values["gemv_max_m"] = int64_t(64);
  tiles.values["gemv_max_m"] = int64_t(0);
  uint32_t seed = 777;
  std::mt19937 rng(23);
  for (const LayerSpec& spec : specs) {
    const QuantizedWeight w = test::random_weight(spec, seed++, /*with_bias=*/true);
    EXPECT_TRUE(gpu->check(spec, cuda_test::gpu0()).ok) << gpu->check(spec, cuda_test::gpu0()).reason;
    const auto ref_linear = cpu->prepare(w, {}, probe_cpu());
    for (int64_t m : {1, 4, 33}) {
      for (DType dt : {DType::F16, DType::BF16}) {
        SCOPED_TRACE(spec.name + " " + spec.describe() + " M=" + std::to_string(m) + " " + std::string(dtype_name(dt)));
        std::vector<float> x = cuda_test::round_to(random_x(m, spec.in_features, rng), dt);
        std::vector<float> ref(static_cast<size_t>(m * spec.out_features), NAN);
        ref_linear->forward({x.data(), DType::F32, m, spec.in_features, DeviceKind::Cpu},
                            {ref.data(), DType::F32, m, spec.out_features, DeviceKind::Cpu}, {&pool, nullptr});
        EXPECT_LT(rel_err(run_linear(*gpu, w, gemv, x, m, dt), ref), tol_for(dt)) << "fused GEMV";
        EXPECT_LT(rel_err(run_linear(*gpu, w, tiles, x, m, dt), ref), tol_for(dt)) << "tiles + cuBLAS";
      }
    }
  }
}

// cuda_gemv's fused prologues (the RMS norm of float residual rows, with or without the
// producer's partial sums of squares; SiLU(gate) x up) and its residual epilogue against the
// unfused computation: the input rows built on the host, rounded to the activation dtype, through
// the plain kernel. Inputs 16-byte aligned take the wide loads; shifted by 8 bytes (and, for gate /
// up, rows 4 bytes apart) the two-column loop.
TEST(CudaGemv, FusedProloguesAndResidualEpilogueMatchTheUnfusedOps) {
  QRT_SKIP_WITHOUT_GPU();
  const auto be = make_cuda_gemv_backend();
  std::mt19937 rng(91);
  std::uniform_real_distribution<float> nwd(0.5f, 1.5f);
  const float eps = 1e-5f;
  const struct {
    int64_t n, k;
  } shapes[] = {{64, 576}, {208, 1600}, {48, 4096}};
  for (const auto& sh : shapes) {
    const int64_t n = sh.n, k = sh.k;
    const QuantizedWeight w = make_int_weight(n, k, 4, 64, ZeroKind::Integer, false, false, rng);
    auto lin = be->prepare(w, {}, cuda_test::gpu0());
    auto run = [&](const std::vector<float>& x, int64_t m, DType dt, const LinearFusion* f) {
      auto dx = DeviceTensor::upload(x, m, k, dt);
      DeviceTensor dy(m, n, dt);
      cuda_test::run_on_stream(
          [&](void* stream) {
            ExecContext ctx;
            ctx.cuda_stream = stream;
            ctx.fusion = f;
            lin->forward(dx.act(), dy.act(), ctx);
          },
          false);
      return dy.download();
    };
    for (int64_t m : {1, 3, 8})
      for (DType dt : {DType::F16, DType::BF16})
        for (bool shifted : {false, true}) {
          SCOPED_TRACE("N=" + std::to_string(n) + " K=" + std::to_string(k) + " M=" + std::to_string(m) + " " +
                       std::string(dtype_name(dt)) + (shifted ? " shifted" : " aligned"));
          const int64_t off = shifted ? 2 : 0;  // floats (8 bytes)
          const double tol = dt == DType::F16 ? 1e-3 : 8e-3;

          // RMS norm prologue.
          const std::vector<float> res = random_x(m, k, rng);
          std::vector<float> nw(static_cast<size_t>(k)), xn(res.size()), sumsq(static_cast<size_t>(m * k / 16), 0.f);
          for (auto& v : nw) v = nwd(rng);
          for (int64_t r = 0; r < m; ++r) {
            double ss = 0;
            for (int64_t c = 0; c < k; ++c) {
              const float v = res[r * k + c];
              ss += double(v) * v;
              sumsq[r * (k / 16) + c / 16] += v * v;
            }
            const float inv = static_cast<float>(1.0 / std::sqrt(ss / k + eps));
            for (int64_t c = 0; c < k; ++c) xn[r * k + c] = res[r * k + c] * inv * nw[c];
          }
          const std::vector<float> plain_norm = run(cuda_test::round_to(xn, dt), m, dt, nullptr);
          std::vector<float> res_buf(static_cast<size_t>(off), 0.f), nw_buf(static_cast<size_t>(off), 0.f);
          res_buf.insert(res_buf.end(), res.begin(), res.end());
          nw_buf.insert(nw_buf.end(), nw.begin(), nw.end());
          auto d_res = DeviceTensor::upload(res_buf, 1, off + m * k, DType::F32);
          auto d_nw = DeviceTensor::upload(nw_buf, 1, off + k, DType::F32);
          auto d_ss = DeviceTensor::upload(sumsq, m, k / 16, DType::F32);
          for (bool with_sumsq : {false, true}) {
            LinearFusion f;
            f.input = LinearFusion::Input::RmsNorm;
            f.norm_residual = static_cast<const float*>(d_res.data()) + off;
            f.norm_weight = static_cast<const float*>(d_nw.data()) + off;
            f.norm_eps = eps;
            f.norm_sumsq = with_sumsq ? static_cast<const float*>(d_ss.data()) : nullptr;
            ASSERT_TRUE(lin->fuses(f, m, dt));
            const std::vector<float> poison(static_cast<size_t>(m * k), NAN);  // x is not read
            EXPECT_LT(rel_err(run(poison, m, dt, &f), plain_norm), tol) << "RMS norm, sumsq=" << with_sumsq;
          }

          // SiLU(gate) x up prologue: gate at column 0, up after it, rows `stride` apart.
          const int64_t gap = shifted ? 2 : 0, stride = 2 * k + gap, up_col = k + gap;
          std::vector<float> gu = cuda_test::round_to(random_x(m, stride, rng), dt), xs(static_cast<size_t>(m * k));
          for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < k; ++c) {
              const float g = gu[r * stride + c], u = gu[r * stride + up_col + c];
              xs[r * k + c] = g / (1.f + std::exp(-g)) * u;
            }
          const std::vector<float> plain_silu = run(cuda_test::round_to(xs, dt), m, dt, nullptr);
          auto d_gu = DeviceTensor::upload(gu, m, stride, dt);
          LinearFusion fs;
          fs.input = LinearFusion::Input::SiluMul;
          fs.gate = d_gu.data();
          fs.up = static_cast<const unsigned char*>(d_gu.data()) + up_col * 2;
          fs.gate_up_stride = stride;
          ASSERT_TRUE(lin->fuses(fs, m, dt));
          const std::vector<float> poison(static_cast<size_t>(m * k), NAN);
          EXPECT_LT(rel_err(run(poison, m, dt, &fs), plain_silu), tol) << "SiLU x up";

          // Residual epilogue: residual += y (as rounded to dt), and its sums of squares by 16.
          const std::vector<float> x = cuda_test::round_to(random_x(m, k, rng), dt);
          const std::vector<float> y = run(x, m, dt, nullptr);
          const std::vector<float> r0 = random_x(m, n, rng);
          auto d_r = DeviceTensor::upload(r0, m, n, DType::F32);
          DeviceTensor d_rss(m, n / 16, DType::F32);
          LinearFusion fe;
          fe.residual_out = static_cast<float*>(d_r.data());
          fe.residual_sumsq_out = static_cast<float*>(d_rss.data());
          ASSERT_TRUE(lin->fuses(fe, m, dt));
          run(x, m, dt, &fe);
          const std::vector<float> r1 = d_r.download(), rss = d_rss.download();
          std::vector<float> want(r0.size()), want_ss(static_cast<size_t>(m * n / 16), 0.f);
          for (size_t i = 0; i < r0.size(); ++i) want[i] = r0[i] + y[i];
          EXPECT_LT(rel_err(r1, want), 1e-4) << "residual epilogue";
          for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < n; ++c) want_ss[r * (n / 16) + c / 16] += r1[r * n + c] * r1[r * n + c];
          EXPECT_LT(rel_err(rss, want_ss), 1e-5) << "sums of squares by 16 columns";
        }
  }
}

TEST(CudaFp8, MatchesReferencePerTensorChannelAndBlock) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_fp8_backend();
  std::mt19937 rng(77);
  struct Fp8Case {
    int64_t n, k;
    int bn, bk;
  } cases[] = {{256, 512, 256, 512}, {128, 256, 1, 256}, {256, 384, 128, 128}, {80, 96, 80, 96}};
  for (const auto& c : cases) {
    QuantizedWeight w = make_fp8_weight(c.n, c.k, c.bn, c.bk, rng);
    for (int per_token : {0, 1})
    for (int64_t m : {1, 8, 17, 64, 130}) {
      for (DType dt : {DType::BF16, DType::F16}) {
        SCOPED_TRACE(w.spec.describe() + " N=" + std::to_string(c.n) + " K=" + std::to_string(c.k) +
                     " M=" + std::to_string(m) + " " + std::string(dtype_name(dt)) +
                     " per_token=" + std::to_string(per_token));
        KernelParams p;
        p.values["per_token"] = int64_t(per_token);
        std::vector<float> x = cuda_test::round_to(random_x(m, c.k, rng), dt);
        std::vector<float> y = run_linear(*be, w, p, x, m, dt);
        const double weight_only = rel_err(y, reference(w, x, m));
        const double token = rel_err(y, reference(w, fp8_per_token(x, m, c.k), m));
        const double tensor = rel_err(y, reference(w, fp8_per_tensor(x), m));
        // Native FP8 (M > 8) quantizes the activations: per token when asked (or when the GPU has
        // per-row scale modes), else per tensor; the weight-only paths do not.
        const bool native_ok = m > 8 && (token < 1e-2 + tol_for(dt) || (!per_token && tensor < 1e-2 + tol_for(dt)));
        EXPECT_TRUE(weight_only < tol_for(dt) || native_ok)
            << "weight-only error " << weight_only << ", per-token-fp8 error " << token << ", per-tensor-fp8 error "
            << tensor;
      }
    }
  }
}

TEST(CudaFp8, GraphReplayMatchesEager) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_fp8_backend();
  std::mt19937 rng(8);
  QuantizedWeight w = make_fp8_weight(256, 256, 1, 256, rng);
  for (int64_t m : {1, 48}) {
    std::vector<float> x = cuda_test::round_to(random_x(m, 256, rng), DType::BF16);
    std::vector<float> a = run_linear(*be, w, {}, x, m, DType::BF16, false);
    std::vector<float> b = run_linear(*be, w, {}, x, m, DType::BF16, true);
    EXPECT_LT(rel_err(b, a), 1e-6) << "M=" << m;
  }
}

TEST(CudaFp8, AbsurdMaxInputLengthIsACleanError) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_fp8_backend();
  std::mt19937 rng(3);
  QuantizedWeight w = make_fp8_weight(128, 4096, 1, 4096, rng);
  bool threw_oom = false;
  try {
    // 64 G rows x 4096 bytes of activation workspace.
    auto lin = be->prepare(w, {}, PrepareContext(cuda_test::gpu0(), int64_t(1) << 36));
    // A GPU whose cuBLASLt path is unavailable needs no activation workspace: still a valid layer.
    EXPECT_GT(lin->weight_bytes(), 0);
  } catch (const Error& e) {
    threw_oom = e.kind() == ErrorKind::OutOfMemory;
    EXPECT_TRUE(threw_oom) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.fp8"), std::string::npos) << e.what();
  }
  if (cuda_test::gpu0().gpu.compute_capability() >= 89) {
    EXPECT_TRUE(threw_oom);
  }
  // The device is still usable afterwards.
  std::vector<float> x = cuda_test::round_to(random_x(20, 4096, rng), DType::BF16);
  // Default activation scaling is per tensor on Hopper (one scale for the 20 x 4096 input).
  const std::vector<float> y = run_linear(*be, w, {}, x, 20, DType::BF16);
  EXPECT_LT(std::min(rel_err(y, reference(w, fp8_per_token(x, 20, 4096), 20)),
                     rel_err(y, reference(w, fp8_per_tensor(x), 20))),
            3e-2);
}

// ---- cuda_higgs ----

// A HIGGS weight as `qrt quantize --method higgs` makes one: seeded Gaussian floats rotated, grouped
// and rounded to the fp16 Gaussian grid of (bits, p).
QuantizedWeight make_higgs_weight(int bits, int p, int group, int hadamard, int64_t n, int64_t k, bool bias,
                                  std::mt19937& rng) {
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = normal(rng);
  quant::HiggsQuantizeSettings s;
  s.bits = bits;
  s.p = p;
  s.group_size = group;
  s.hadamard_size = hadamard;
  s.grid = quant::higgs_gaussian_grid(bits, p, DType::F16);
  QuantizedWeight q = quant::higgs_quantize("test.higgs", w.data(), n, k, s);
  if (bias) {
    q.bias.resize(static_cast<size_t>(n));
    for (auto& v : q.bias) v = normal(rng) * 10;
    q.spec.has_bias = true;
  }
  q.validate();
  return q;
}

KernelParams higgs_params(std::initializer_list<std::pair<const char*, int64_t>> kv) {
  KernelParams p;
  for (const auto& [k, v] : kv) p.values[k] = v;
  return p;
}

struct HiggsCase {
  int bits, p, group, hadamard;
  int64_t n, k;
  bool bias;
};

// Both paths forced on every weight kind the format has (2 and 4 bits, p 1 and 2, Hadamard blocks
// of 16 .. 8192), at M = 1, 3, 16, 64 and 200: the lookup kernel (the default tile and FLUTE's
// 128 rows split in 3 along K), cuBLAS over the kept fp16 copy and over tiles decoded per call.
TEST(CudaHiggs, BothPathsMatchTheReferenceAcrossFormatsAndM) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_higgs_backend();
  std::mt19937 rng(2026);
  const HiggsCase cases[] = {
      {4, 2, 64, 128, 100, 256, true},     // N not a multiple of the tiles
      {4, 1, 128, 128, 40, 384, false},
      {2, 2, 64, 64, 72, 64, true},        // two runs of 16 codes per row
      {2, 1, 256, 512, 24, 512, false},
      {4, 2, 16, 16, 33, 80, true},        // groups of 16 inside a run of 32 values; K ends mid-run
      {4, 1, 8, 16, 17, 48, false},        // groups of 8 values (per-code scales); K ends mid-run
      {4, 2, 256, 8192, 24, 8192, false},  // hadamard_size 8192: the two-pass rotation
  };
  for (const HiggsCase& c : cases) {
    const QuantizedWeight w = make_higgs_weight(c.bits, c.p, c.group, c.hadamard, c.n, c.k, c.bias, rng);
    for (int64_t m : {1, 3, 16, 64, 200}) {
      std::vector<std::pair<const char*, KernelParams>> variants;
      if (m <= 64) {
        variants.emplace_back("lookup", higgs_params({{"lut_max_m", 64}}));
        variants.emplace_back("lookup tile 128 split 3", higgs_params({{"lut_max_m", 64}, {"tile_n", 128}, {"split", 3}}));
      }
      variants.emplace_back("cuBLAS, fp16 copy", higgs_params({{"lut_max_m", 0}, {"keep_fp16", 1}}));
      variants.emplace_back("cuBLAS, tiles", higgs_params({{"lut_max_m", 0}, {"keep_fp16", 0}}));
      for (DType dt : {DType::F16, DType::BF16}) {
        if (dt == DType::BF16 && m != 3 && m != 64) continue;
        const std::vector<float> x = cuda_test::round_to(random_x(m, c.k, rng), dt);
        const std::vector<float> ref = reference(w, x, m);
        for (const auto& [label, params] : variants) {
          SCOPED_TRACE(w.spec.describe() + " N=" + std::to_string(c.n) + " K=" + std::to_string(c.k) +
                       " M=" + std::to_string(m) + " " + std::string(dtype_name(dt)) + " " + label + " " + params.to_json());
          EXPECT_LT(rel_err(run_linear(*be, w, params, x, m, dt), ref), tol_for(dt));
        }
      }
    }
  }
}

TEST(CudaHiggs, GraphReplayMatchesEagerOnBothPaths) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_higgs_backend();
  std::mt19937 rng(17);
  const QuantizedWeight w = make_higgs_weight(4, 2, 64, 128, 256, 512, true, rng);
  const std::pair<int64_t, KernelParams> runs[] = {
      {1, {}},
      {5, higgs_params({{"tile_n", 128}})},
      {16, higgs_params({{"lut_max_m", 16}, {"split", 4}})},
      {48, higgs_params({{"lut_max_m", 0}})},
      {48, higgs_params({{"lut_max_m", 0}, {"keep_fp16", 0}})},
  };
  for (const auto& [m, params] : runs) {
    SCOPED_TRACE("M=" + std::to_string(m) + " " + params.to_json());
    const std::vector<float> x = cuda_test::round_to(random_x(m, 512, rng), DType::F16);
    const std::vector<float> eager = run_linear(*be, w, params, x, m, DType::F16, false);
    const std::vector<float> graph = run_linear(*be, w, params, x, m, DType::F16, true);
    EXPECT_LT(rel_err(graph, eager), 1e-6);
    EXPECT_LT(rel_err(eager, reference(w, x, m)), 4e-3);
  }
}

// What the device holds: one byte per grid vector plus the scales, and the fp16 copy of V only
// where the cuBLAS path will run (more rows than the lookup kernel takes) and keep_fp16 allows it.
TEST(CudaHiggs, TheFp16CopyIsKeptOnlyWhereTheCublasPathRuns) {
  QRT_SKIP_WITHOUT_GPU();
  auto be = make_cuda_higgs_backend();
  std::mt19937 rng(5);
  const int64_t n = 256, k = 1024;
  const QuantizedWeight w = make_higgs_weight(4, 2, 64, 256, n, k, false, rng);
  const int64_t compact = n * k / 2 + n * (k / 64) * 4 + 4096;
  auto decode_only = be->prepare(w, {}, PrepareContext(cuda_test::gpu0(), 8));  // max_rows = lut_max_m
  EXPECT_LT(decode_only->weight_bytes(), compact);
  auto no_copy = be->prepare(w, higgs_params({{"keep_fp16", 0}}), cuda_test::gpu0());
  EXPECT_LT(no_copy->weight_bytes(), compact);
  auto with_copy = be->prepare(w, {}, cuda_test::gpu0());
  EXPECT_GE(with_copy->weight_bytes(), n * k * 2);
}

// Parameters and verdicts (no GPU needed: a target profile).
TEST(CudaHiggs, ParametersAndWhatItRuns) {
  auto be = make_cuda_higgs_backend();
  std::mt19937 rng(9);
  const QuantizedWeight w = make_higgs_weight(4, 2, 64, 64, 32, 64, false, rng);
  const DeviceInfo h100 = target_profile("h100");
  EXPECT_TRUE(be->check(w.spec, h100).ok) << be->check(w.spec, h100).reason;
  EXPECT_FALSE(be->check(w.spec, probe_cpu()).ok);
  EXPECT_FALSE(be->check(make_int_weight(64, 128, 4, 64, ZeroKind::Symmetric, false, false, rng).spec, h100).ok);
  EXPECT_NE(be->validate_params(w.spec, higgs_params({{"tile_n", 48}})).reason.find("'tile_n' = 48"), std::string::npos);
  EXPECT_NE(be->validate_params(w.spec, higgs_params({{"template_id", 16}})).reason.find("unknown parameter 'template_id'"),
            std::string::npos);
  EXPECT_FALSE(be->validate_params(w.spec, higgs_params({{"lut_max_m", 65}})).ok);
  EXPECT_TRUE(be->validate_params(w.spec, higgs_params({{"tile_n", 128}, {"split", 0}, {"keep_fp16", 0}})).ok);
  const KernelParams d = be->default_params(w.spec, 1, h100);
  EXPECT_EQ(d.get_int("tile_n", 0), 16);
  EXPECT_EQ(d.get_int("lut_max_m", 0), 8);
  EXPECT_FALSE(be->tuning_space(w.spec, 1, h100).empty());
}

// The lookup kernel's launch geometry: enough blocks for the SMs from the rows first, then from K
// slices of at least the lanes a tile needs; every slice non-empty; an explicit split honoured.
TEST(CudaHiggs, LookupGeometryFillsTheGpuWithoutEmptySlices) {
  cuda::HiggsView v;
  v.n = 4096;
  v.k = 4096;
  v.p = 2;
  cuda::HiggsLutGeometry g = cuda::higgs_lut_geometry(v, 128, 0, 132);  // FLUTE's tile at 4 bits
  EXPECT_EQ(g.chunks, 128);
  EXPECT_EQ(g.split, 16);
  EXPECT_EQ(g.chunk_slice, 8);
  EXPECT_EQ(g.tk_log2, 3);
  g = cuda::higgs_lut_geometry(v, 16, 0, 132);  // the default tile
  EXPECT_EQ(g.split, 3);
  EXPECT_EQ(g.tk_log2, 5);
  v.n = 128256;  // a vocabulary: rows alone fill the GPU
  EXPECT_EQ(cuda::higgs_lut_geometry(v, 16, 0, 132).split, 1);
  v.n = 256;
  v.k = 80;  // 3 runs of 16 codes
  g = cuda::higgs_lut_geometry(v, 8, 7, 132);
  EXPECT_EQ(g.split, 3);
  EXPECT_EQ(g.chunk_slice, 1);
  EXPECT_EQ(g.tk_log2, 5);  // a tile of 8 rows needs 32 lanes a row
}


// ---- cuda_int8: LLM.int8 on int8 tensor cores ----

// An LLM.int8 layer as the bitsandbytes reader builds it: CB in [-127, 127] (code = CB + 128), one
// scale SCB / 127 per row, the checkpoint's threshold on the spec.
QuantizedWeight make_llm_int8_weight(int64_t n, int64_t k, float threshold, bool bias, std::mt19937& rng) {
  QuantizedWeight w;
  w.spec.name = "test.llm_int8";
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::IntAffine;
  w.spec.bits = 8;
  w.spec.group_size = -1;
  w.spec.zero_kind = ZeroKind::Symmetric;
  w.spec.has_bias = bias;
  w.spec.source_format = "int8";
  w.spec.llm_int8_threshold = threshold;
  std::uniform_int_distribution<int> cb(-127, 127);
  std::uniform_real_distribution<float> scb(0.02f, 0.2f), b(-0.5f, 0.5f);
  w.codes.resize(static_cast<size_t>(n * k));
  for (auto& c : w.codes) c = static_cast<uint8_t>(cb(rng) + 128);
  w.scales.resize(static_cast<size_t>(n));
  for (auto& v : w.scales) v = scb(rng) / 127.f;
  if (bias) {
    w.bias.resize(static_cast<size_t>(n));
    for (auto& v : w.bias) v = b(rng);
  }
  w.validate();
  return w;
}

// Outlier features as LLM.int8 describes them: a few hidden dimensions with large values. Column
// `cols[i]` gets +-magnitudes[i] in the rows of `rows_of[i]` (every row when empty).
void plant_outliers(std::vector<float>& x, int64_t m, int64_t k, const std::vector<int64_t>& cols,
                    const std::vector<float>& magnitudes, const std::vector<std::vector<int64_t>>& rows_of) {
  for (size_t i = 0; i < cols.size(); ++i) {
    std::vector<int64_t> rows = rows_of[i];
    if (rows.empty())
      for (int64_t r = 0; r < m; ++r) rows.push_back(r);
    for (int64_t r : rows)
      if (r < m) x[r * k + cols[i]] = (r % 2 ? -1.f : 1.f) * magnitudes[i];
  }
}

// The decomposition on the host, in double except where the GPU rounds on purpose (the int8
// codes: float x * (127 / amax), rounded half to even). Per chunk of `chunk` rows: the columns whose
// max |x| >= threshold (the max_out largest when more, ties to the lower column) stay float; each
// row's rest becomes int8 with scale amax / 127 over the other columns. `predicted_sq_err` gets the
// expected squared error of that rounding against the exact product: a rounding error uniform in
// [-s/2, s/2] has variance s^2 / 12, times the squared weights it meets.
std::vector<float> llm_int8_model(const QuantizedWeight& w, const std::vector<float>& x, int64_t m, float threshold,
                                  int max_out, int64_t chunk, double* predicted_sq_err) {
  const int64_t n = w.N(), k = w.K();
  std::vector<float> y(static_cast<size_t>(m * n));
  double sq = 0;
  for (int64_t c0 = 0; c0 < m; c0 += chunk) {
    const int64_t c1 = std::min(m, c0 + chunk);
    std::vector<char> out(static_cast<size_t>(k), 0);
    if (threshold > 0 && max_out > 0) {
      std::vector<float> colmax(static_cast<size_t>(k), 0.f);
      for (int64_t r = c0; r < c1; ++r)
        for (int64_t c = 0; c < k; ++c) colmax[c] = std::max(colmax[c], std::fabs(x[r * k + c]));
      std::vector<int64_t> cand;
      for (int64_t c = 0; c < k; ++c)
        if (colmax[c] >= threshold) cand.push_back(c);
      std::stable_sort(cand.begin(), cand.end(), [&](int64_t a, int64_t b) { return colmax[a] > colmax[b]; });
      if (cand.size() > static_cast<size_t>(max_out)) cand.resize(static_cast<size_t>(max_out));
      for (int64_t c : cand) out[c] = 1;
    }
    for (int64_t r = c0; r < c1; ++r) {
      float amax = 0.f;
      for (int64_t c = 0; c < k; ++c)
        if (!out[c]) amax = std::max(amax, std::fabs(x[r * k + c]));
      const float inv = amax > 0.f ? 127.f / amax : 0.f, s = amax / 127.f;
      std::vector<int> q(static_cast<size_t>(k), 0);
      for (int64_t c = 0; c < k; ++c)
        if (!out[c]) q[c] = std::clamp(static_cast<int>(std::nearbyint(x[r * k + c] * inv)), -127, 127);
      for (int64_t j = 0; j < n; ++j) {
        int64_t acc = 0;
        double outlier = 0, wsq = 0;
        for (int64_t c = 0; c < k; ++c) {
          const int cb = static_cast<int>(w.codes[j * k + c]) - 128;
          if (out[c]) {
            outlier += double(x[r * k + c]) * cb;
          } else {
            acc += int64_t(q[c]) * cb;
            wsq += double(cb) * cb;
          }
        }
        const double ws = w.scales[j];
        y[r * n + j] = static_cast<float>(ws * (double(acc) * s + outlier) + (w.bias.empty() ? 0.0 : w.bias[j]));
        sq += double(s) * s / 12.0 * wsq * ws * ws;
      }
    }
  }
  if (predicted_sq_err) *predicted_sq_err = sq;
  return y;
}

double sum_sq(const std::vector<float>& v) {
  double s = 0;
  for (float f : v) s += double(f) * f;
  return s;
}

// Against the model only the output rounding differs (fp16: 2^-11, bf16: 2^-8 relative per element;
// accumulation is fp32 on the GPU, double on the host).
double model_tol(DType t) { return t == DType::F16 ? 1e-3 : 8e-3; }

std::vector<float> run_int8(const QuantizedWeight& w, const KernelParams& params, const std::vector<float>& x,
                            int64_t m, DType dtype, bool graph = false, int64_t max_rows = 2048) {
  auto be = make_cuda_int8_backend();
  auto lin = be->prepare(w, params, PrepareContext(cuda_test::gpu0(), max_rows));
  EXPECT_GT(lin->weight_bytes(), 0);
  auto dx = DeviceTensor::upload(x, m, w.K(), dtype);
  DeviceTensor dy(m, w.N(), dtype);
  cuda_test::run_on_stream(
      [&](void* stream) {
        ExecContext ctx;
        ctx.cuda_stream = stream;
        lin->forward(dx.act(), dy.act(), ctx);
      },
      graph);
  return dy.download();
}

KernelParams int8_params(int64_t gemv_max_m, int64_t max_outliers = 256) {
  KernelParams p;
  p.values["gemv_max_m"] = gemv_max_m;
  p.values["max_outliers"] = max_outliers;
  return p;
}

// The tensor-core path (gemv_max_m 0) against the host model of the same decomposition, and
// against the exact product within the bound of int8 activation rounding: the relative L2 error of
// rounding each int8 activation to the nearest step s = amax / 127 is sqrt(predicted) / ||y||
// (uniform rounding errors, variance s^2 / 12); allowed: twice that plus the output rounding. Planted
// outlier columns (|x| 20..45 against N(0, 1) activations) must leave that error where it is at
// threshold 6, and raise it several fold at threshold 0, where they set the rows' scales.
TEST(CudaInt8, DecompositionMatchesTheModelAndTheRoundingBound) {
  QRT_SKIP_WITHOUT_GPU();
  struct Shape {
    int64_t n, k;
    bool bias;
  } shapes[] = {{256, 512, true}, {72, 200, false}, {64, 100, true}};  // N, K padded; K % 8 != 0: scalar loads
  std::mt19937 rng(2208);
  for (const Shape& sh : shapes) {
    QuantizedWeight w = make_llm_int8_weight(sh.n, sh.k, 6.f, sh.bias, rng);
    for (int64_t m : {1, 16, 64, 300}) {
      for (bool outliers : {false, true}) {
        std::vector<float> x0 = random_x(m, sh.k, rng);
        if (outliers) plant_outliers(x0, m, sh.k, {3, sh.k / 2, sh.k - 5}, {20.f, 45.f, 30.f}, {{}, {}, {0}});
        double err_at[2] = {0, 0};
        for (float threshold : {6.f, 0.f}) {
          w.spec.llm_int8_threshold = threshold;
          for (DType dt : {DType::F16, DType::BF16}) {
            SCOPED_TRACE("N=" + std::to_string(sh.n) + " K=" + std::to_string(sh.k) + " M=" + std::to_string(m) +
                         " outliers=" + std::to_string(outliers) + " threshold=" + std::to_string(threshold) + " " +
                         std::string(dtype_name(dt)));
            const std::vector<float> x = cuda_test::round_to(x0, dt);
            const std::vector<float> y = run_int8(w, int8_params(0), x, m, dt);
            double predicted = 0;
            const std::vector<float> model = llm_int8_model(w, x, m, threshold, 256, 2048, &predicted);
            EXPECT_LT(rel_err(y, model), model_tol(dt));
            const std::vector<float> exact = reference(w, x, m);
            const double bound = 2 * std::sqrt(predicted / sum_sq(exact)) + model_tol(dt);
            const double err = rel_err(y, exact);
            EXPECT_LT(err, bound);
            if (dt == DType::F16) err_at[threshold > 0 ? 0 : 1] = err;
          }
        }
        if (outliers) {
          EXPECT_GT(err_at[1], 3 * err_at[0]) << "the decomposition should matter with outliers";
        }
      }
      // The default plan's small M runs the weight-only GEMV: the exact product up to fp16 rounding.
      if (m <= 8) {
        w.spec.llm_int8_threshold = 6.f;
        const std::vector<float> x = cuda_test::round_to(random_x(m, sh.k, rng), DType::F16);
        EXPECT_LT(rel_err(run_int8(w, {}, x, m, DType::F16), reference(w, x, m)), tol_for(DType::F16));
      }
    }
  }
}

// More qualifying columns than max_outliers: the largest are decomposed, ties go to the lower
// column, the others stay in the int8 part (each in its own row, so a different choice would show).
TEST(CudaInt8, OverTheBoundTheLargestColumnsAreTaken) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(77);
  QuantizedWeight w = make_llm_int8_weight(128, 256, 6.f, false, rng);
  const int64_t m = 16;
  std::vector<float> x = random_x(m, 256, rng);
  plant_outliers(x, m, 256, {5, 10, 20, 30}, {50.f, 25.f, 25.f, 10.f}, {{1}, {2}, {3}, {4}});
  x = cuda_test::round_to(x, DType::F16);
  for (int64_t bound : {1, 2, 3, 8}) {
    SCOPED_TRACE("max_outliers=" + std::to_string(bound));
    const std::vector<float> y = run_int8(w, int8_params(0, bound), x, m, DType::F16);
    EXPECT_LT(rel_err(y, llm_int8_model(w, x, m, 6.f, static_cast<int>(bound), 2048, nullptr)), model_tol(DType::F16));
  }
}

// A call larger than the workspace's row budget runs in chunks, each with its own outlier columns;
// a graph replay gives the eager result bit for bit (GEMV, decomposition, and chunks).
TEST(CudaInt8, ChunksAndGraphReplayMatchEager) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  QuantizedWeight w = make_llm_int8_weight(192, 384, 6.f, true, rng);
  const int64_t m = 300;
  std::vector<float> x = random_x(m, 384, rng);
  plant_outliers(x, m, 384, {7, 100}, {12.f, 9.f}, {{0, 1, 2}, {250}});  // column 100 only in the last chunks
  x = cuda_test::round_to(x, DType::BF16);
  const std::vector<float> chunked = run_int8(w, int8_params(0), x, m, DType::BF16, false, /*max_rows=*/64);
  EXPECT_LT(rel_err(chunked, llm_int8_model(w, x, m, 6.f, 256, 64, nullptr)), model_tol(DType::BF16));
  for (int64_t rows : {int64_t(1), int64_t(48), m}) {
    const std::vector<float> xr(x.begin(), x.begin() + rows * 384);
    for (int64_t gemv_max_m : {0, 8}) {
      SCOPED_TRACE("M=" + std::to_string(rows) + " gemv_max_m=" + std::to_string(gemv_max_m));
      const std::vector<float> eager = run_int8(w, int8_params(gemv_max_m), xr, rows, DType::BF16, false, 64);
      const std::vector<float> graph = run_int8(w, int8_params(gemv_max_m), xr, rows, DType::BF16, true, 64);
      EXPECT_EQ(eager, graph);
    }
  }
}

// A NaN activation makes its row's output NaN (as weight-only kernels do), not a quiet zero, and
// leaves the other rows alone.
TEST(CudaInt8, ANanActivationPoisonsItsRowOnly) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  QuantizedWeight w = make_llm_int8_weight(64, 128, 6.f, false, rng);
  const int64_t m = 12;
  std::vector<float> x = cuda_test::round_to(random_x(m, 128, rng), DType::F16);
  x[5 * 128 + 17] = NAN;
  const std::vector<float> y = run_int8(w, int8_params(0), x, m, DType::F16);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < 64; ++j) EXPECT_EQ(std::isnan(y[r * 64 + j]), r == 5) << "row " << r << " col " << j;
}

// Through QuantLinear with the plan's call parameters: one packing serves the GEMV range and the
// tensor-core range.
TEST(CudaInt8, PlanRangesShareOnePacking) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  QuantizedWeight w = make_llm_int8_weight(128, 256, 6.f, false, rng);
  LinearPlan plan;
  plan.layer = w.spec;
  plan.choices.push_back(KernelChoice{1, 4, "cuda_int8", int8_params(8), ParamSource::Default});
  plan.choices.push_back(KernelChoice{5, INT64_MAX, "cuda_int8", int8_params(0), ParamSource::Tuned});
  auto lin = QuantLinear::build(w, plan, cuda_test::gpu0());
  for (int64_t m : {3, 20}) {
    std::vector<float> x = cuda_test::round_to(random_x(m, 256, rng), DType::F16);
    auto dx = DeviceTensor::upload(x, m, 256, DType::F16);
    DeviceTensor dy(m, 128, DType::F16);
    lin->forward(dx.act(), dy.act(), ExecContext{});
    const std::vector<float> y = dy.download();
    if (m <= 4) {
      EXPECT_LT(rel_err(y, reference(w, x, m)), tol_for(DType::F16)) << "GEMV range";
    } else {
      EXPECT_LT(rel_err(y, llm_int8_model(w, x, m, 6.f, 256, 2048, nullptr)), model_tol(DType::F16)) << "int8 range";
    }
  }
  EXPECT_EQ(lin->weight_bytes(), 128 * 256 + 128 * 4) << "one int8 copy and its scales";
}

}  // namespace
}  // namespace qrt

#else  // !QRT_WITH_CUDA

TEST(CudaBackends, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA: the GPU backend tests do not apply"; }

#endif
