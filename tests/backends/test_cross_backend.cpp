// THE cross-backend suite (DESIGN.md "Tests and benchmarks", like ggml's test-backend-ops): every
// built backend that passes check() on this machine, against a reference computed in double from
// dequantize_reference, on the same fresh random canonical weights; parameterized by backend row
// (a backend + kernel parameters + a stated tolerance) and weight kind (bits, group, zero kind,
// act-order, FP8 scales, GGUF block types decoded from random blocks by the GGUF codec, so the
// layouts GGUF weights are repacked into are tested on real scale and minimum values, and HIGGS
// rotated codebooks on their Gaussian grids); every kind
// at two shapes (minimum alignment, odd multiples) and M in {1, 3, 8, 16, 17, 64, 129}; outputs are
// poisoned with NaN before each call.
// A new backend or format enters by adding rows here, not a new test file.
#include <gtest/gtest.h>

#include <cstdio>
#include <numeric>

#include "backend_test_util.h"
#include "qrt/plan.h"
#include "qrt/thread_pool.h"
#include "quant/higgs_quantize.h"

#ifdef QRT_WITH_CUDA
#include "support/cuda_test_support.h"
#endif

namespace qrt {
namespace {

// ---- backend rows: parameters worth testing separately, each with its stated tolerance ----
struct BackendRow {
  std::string backend;
  std::string label;        // test-name suffix
  std::string params_json;  // "" = the backend's default_params
  double tolerance;         // bound on ||y - ref|| / ||ref||
  DType act = DType::F32;   // activation (and output) dtype
};

// Stated tolerances: 1e-3 for float-activation paths; cpu_simd's two-level int8 activations
// ("int8x2", its default: 15 bits per 32-value block) 2e-4 (measured ~2e-5); its plain int8
// activations (8 bits per 32-value block) measure ~9e-3 at these shapes, so 1.5e-2; a bf16 output alone rounds at
// ~2.3e-3 RMS, so bf16 rows get 1e-2. cuda_fp8 above its GEMV range is W8A8: activations are
// quantized per token to e4m3 (3 mantissa bits) as torch._scaled_mm / vLLM do; measured
// 2.2e-2 .. 2.6e-2 on an H100 (fp16 out), so 5e-2.
std::vector<BackendRow> rows_for(const Backend& b) {
  if (b.name() == "cpu_ref") return {{"cpu_ref", "cpu_ref", "", 1e-5}};
  if (b.name() == "cpu_simd")
    return {{"cpu_simd", "cpu_simd_default", "", 2e-4},
            {"cpu_simd", "cpu_simd_int8x2act", R"({"activations":"int8x2"})", 2e-4},
            {"cpu_simd", "cpu_simd_f32act", R"({"activations":"f32"})", 1e-3},
            {"cpu_simd", "cpu_simd_int8act", R"({"activations":"int8"})", 1.5e-2}};
  if (b.name() == "cuda_fp8")
    return {{b.name(), b.name() + "_f16", "", 5e-2, DType::F16}, {b.name(), b.name() + "_bf16", "", 5e-2, DType::BF16}};
  // cuda_int8 above its GEMV range is W8A8 (int8 per row; these layers carry no LLM.int8 threshold):
  // with activations uniform in [-1, 1] a row's step is about 1/127, its rounding error s / sqrt(12)
  // against an RMS of 1 / sqrt(3): 3.9e-3 of the output expected, so 1e-2 (bf16 output: 1.5e-2).
  if (b.name() == "cuda_int8")
    return {{b.name(), b.name() + "_f16", "", 1e-2, DType::F16},
            {b.name(), b.name() + "_bf16", "", 1.5e-2, DType::BF16}};
  if (b.capability().device == DeviceKind::Cuda)
    return {{b.name(), b.name() + "_f16", "", 1e-3, DType::F16}, {b.name(), b.name() + "_bf16", "", 1e-2, DType::BF16}};
  return {{b.name(), b.name(), "", 1e-3}};
}

// ---- weight kinds ----
struct Kind {
  std::string label;
  WeightEncoding enc = WeightEncoding::IntAffine;
  int bits = 4, group = 128;
  ZeroKind zero = ZeroKind::Symmetric;
  bool act_order = false;
  int fp8_bn = 0, fp8_bk = 0;  // 0 = per-tensor (the whole dimension)
  std::vector<float> codebook = {};  // WeightEncoding::Codebook: the 2^bits levels
  GgmlType gguf = GgmlType::F32;     // a GGUF block type: the weight is random blocks of it, decoded
  int p = 1, hadamard = 0;           // WeightEncoding::RotatedCodebook (HIGGS): vector size, Hadamard block
};

// A HIGGS kind: the Gaussian grid of (bits, p) that qrt quantize writes, Hadamard blocks of 128
// (they divide every K of shapes_for).
Kind higgs_kind(int bits, int p, int group) {
  Kind k;
  k.label = "higgs" + std::to_string(bits) + "_p" + std::to_string(p) + "_g" + std::to_string(group) + "_h128";
  k.enc = WeightEncoding::RotatedCodebook;
  k.bits = bits;
  k.group = group;
  k.codebook = quant::higgs_gaussian_grid(bits, p, DType::F16);
  k.p = p;
  k.hadamard = 128;
  return k;
}

Kind gguf_kind(GgmlType t) {
  Kind k;
  k.label = "gguf_" + ggml_type_name(t);
  LayerSpec s;
  quant::gguf_canonical_spec(t, &s);
  k.enc = s.encoding;
  k.bits = s.bits;
  k.group = s.group_size;
  k.zero = s.zero_kind;
  k.gguf = t;
  return k;
}

std::vector<Kind> kinds() {
  std::vector<Kind> k;
  for (int bits : {1, 2, 3, 4, 5, 6, 7, 8}) k.push_back({"int" + std::to_string(bits) + "_g128_sym", WeightEncoding::IntAffine, bits, 128});
  k.push_back({"int4_perrow_sym", WeightEncoding::IntAffine, 4, -1});
  k.push_back({"int4_g32_sym", WeightEncoding::IntAffine, 4, 32});
  k.push_back({"int4_g64_asym", WeightEncoding::IntAffine, 4, 64, ZeroKind::Integer});
  k.push_back({"int4_g128_asym_actorder", WeightEncoding::IntAffine, 4, 128, ZeroKind::Integer, true});
  k.push_back({"int4_g32_asym_actorder", WeightEncoding::IntAffine, 4, 32, ZeroKind::Integer, true});
  k.push_back({"int4_g32_sym_actorder", WeightEncoding::IntAffine, 4, 32, ZeroKind::Symmetric, true});
  k.push_back({"int4_g32_floatzero", WeightEncoding::IntAffine, 4, 32, ZeroKind::Float});     // GGUF Q4_1
  k.push_back({"int6_g16_floatzero", WeightEncoding::IntAffine, 6, 16, ZeroKind::Float});     // GGUF Q6_K-like
  k.push_back({"int5_g32_floatzero", WeightEncoding::IntAffine, 5, 32, ZeroKind::Float});     // GGUF Q5_1
  k.push_back({"int8_g32_sym", WeightEncoding::IntAffine, 8, 32});                            // GGUF Q8_0
  k.push_back({"int5_g32_sym", WeightEncoding::IntAffine, 5, 32});                            // GGUF Q5_0
  k.push_back({"int2_g16_floatzero", WeightEncoding::IntAffine, 2, 16, ZeroKind::Float});     // GGUF Q2_K
  k.push_back({"int3_g16_sym", WeightEncoding::IntAffine, 3, 16});                            // GGUF Q3_K
  k.push_back({"iq4_g32_codebook", WeightEncoding::Codebook, 4, 32, ZeroKind::Symmetric, false, 0, 0,
               test::iq4_levels()});                                                           // GGUF IQ4_NL / IQ4_XS
  k.push_back({"nf4_g64_codebook", WeightEncoding::Codebook, 4, 64, ZeroKind::Symmetric, false, 0, 0,
               test::nf4_levels()});                                                           // bitsandbytes NF4
  k.push_back({"fp4_g128_codebook", WeightEncoding::Codebook, 4, 128, ZeroKind::Symmetric, false, 0, 0,
               test::fp4_levels()});                                                           // bitsandbytes FP4
  k.push_back({"int8_perrow_asym", WeightEncoding::IntAffine, 8, -1, ZeroKind::Integer});     // int8 rows
  k.push_back({"int8_perrow_sym", WeightEncoding::IntAffine, 8, -1});                         // LLM.int8's layout
  k.push_back({"int8_g128_asym_actorder", WeightEncoding::IntAffine, 8, 128, ZeroKind::Integer, true});
  k.push_back({"int3_g64_asym_actorder", WeightEncoding::IntAffine, 3, 64, ZeroKind::Integer, true});
  k.push_back({"int2_g64_asym", WeightEncoding::IntAffine, 2, 64, ZeroKind::Integer});
  k.push_back({"fp8_per_tensor", WeightEncoding::Fp8E4M3, 8, 0, ZeroKind::Symmetric, false, 0, 0});
  k.push_back({"fp8_per_channel", WeightEncoding::Fp8E4M3, 8, 0, ZeroKind::Symmetric, false, 1, 0});
  k.push_back({"fp8_block128", WeightEncoding::Fp8E4M3, 8, 0, ZeroKind::Symmetric, false, 128, 128});
  // The GGUF types the fast CUDA paths repack (Q6_K stays on cuda_dequant), from real blocks.
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K})
    k.push_back(gguf_kind(t));
  // HIGGS rotated codebooks (cpu_higgs, cuda_higgs; cpu_ref through W = V H).
  k.push_back(higgs_kind(4, 2, 64));
  k.push_back(higgs_kind(2, 1, 128));
  return k;
}

LayerSpec spec_of(const Kind& kind, int64_t k, int64_t n) {
  if (kind.gguf != GgmlType::F32) {
    LayerSpec s;
    s.name = "cross." + kind.label;
    s.in_features = k;
    s.out_features = n;
    quant::gguf_canonical_spec(kind.gguf, &s);
    s.source_format = "gguf:" + ggml_type_name(kind.gguf);
    return s;
  }
  if (kind.enc == WeightEncoding::Fp8E4M3)
    return test::fp8_layer("cross." + kind.label, k, n, kind.fp8_bn ? kind.fp8_bn : static_cast<int>(n),
                           kind.fp8_bk ? kind.fp8_bk : static_cast<int>(k));
  LayerSpec s = test::int_layer("cross." + kind.label, k, n, kind.bits, kind.group, kind.zero, kind.act_order);
  s.encoding = kind.enc;
  s.codebook = kind.codebook;
  if (kind.enc == WeightEncoding::Codebook) s.source_format = kind.label;
  if (kind.enc == WeightEncoding::RotatedCodebook) {
    s.codebook_dim = kind.p;
    s.hadamard_size = kind.hadamard;
    s.source_format = "higgs";
  }
  return s;
}

// The weight of `kind` for `spec`: fresh random data from `seed` (GGUF kinds: random blocks decoded
// by the GGUF codec, plus a bias when asked).
QuantizedWeight weight_of(const Kind& kind, const LayerSpec& spec, uint32_t seed, bool with_bias) {
  if (kind.gguf == GgmlType::F32) return test::random_weight(spec, seed, with_bias);
  QuantizedWeight w = test::random_gguf_weight(kind.gguf, spec.in_features, spec.out_features, seed, spec.name);
  if (with_bias) {
    std::mt19937 rng(seed + 1);
    std::uniform_real_distribution<float> b(-0.5f, 0.5f);
    w.bias.resize(static_cast<size_t>(spec.out_features));
    for (auto& v : w.bias) v = b(rng);
    w.spec.has_bias = true;
  }
  return w;
}

// Two shapes per backend and kind: the minimum alignment and odd multiples of it (K in multiples
// of 128, and of the block of a GGUF kind, so every group size divides it; N in the backend's own
// step, at least 8).
std::vector<std::pair<int64_t, int64_t>> shapes_for(const Backend& b, const Kind& kind) {
  int64_t kstep = std::lcm<int64_t>(b.capability().k_multiple, 128);
  if (kind.gguf != GgmlType::F32) kstep = std::lcm<int64_t>(kstep, ggml_block_size(kind.gguf));
  const int64_t nstep = std::max<int64_t>(b.capability().n_multiple, 8);
  return {{kstep, nstep * 2}, {kstep * 5, nstep * 5}};
}

DeviceInfo local_device_for(const Backend& b) {
#ifdef QRT_WITH_CUDA
  std::string why;
  if (b.capability().device == DeviceKind::Cuda && cuda_test::gpu_available(&why)) return cuda_test::gpu0();
#endif
  return probe_cpu();
}

bool device_usable(const Backend& b, std::string* why) {
  if (!b.built()) {
    *why = "not built in this binary";
    return false;
  }
  if (b.capability().device == DeviceKind::Cuda) {
#ifdef QRT_WITH_CUDA
    return cuda_test::gpu_available(why);
#else
    *why = "CUDA cross-backend rows need a GPU build";
    return false;
#endif
  }
  return true;
}

struct Case {
  BackendRow row;
  Kind kind;
  std::string name() const { return row.label + "__" + kind.label; }
};

// Every (row, kind) whose backend is usable here and passes check for the kind at both shapes.
std::vector<Case> cases(std::vector<std::string>* skipped = nullptr) {
  std::vector<Case> out;
  for (const Backend* b : BackendRegistry::global().all()) {
    std::string why;
    if (!device_usable(*b, &why)) {
      if (skipped) skipped->push_back(b->name() + ": " + why);
      continue;
    }
    const DeviceInfo dev = local_device_for(*b);
    for (const auto& kind : kinds()) {
      std::string reason;
      for (auto [k, n] : shapes_for(*b, kind)) {
        const Verdict v = b->check(spec_of(kind, k, n), dev);
        if (!v.ok) reason = v.reason;
      }
      if (!reason.empty()) {
        if (skipped) skipped->push_back(b->name() + " x " + kind.label + ": " + reason);
        continue;
      }
      for (const auto& row : rows_for(*b)) out.push_back({row, kind});
    }
  }
  return out;
}

class CrossBackend : public ::testing::TestWithParam<Case> {};

TEST_P(CrossBackend, MatchesDoubleReference) {
  const Case& c = GetParam();
  const Backend* b = BackendRegistry::global().find(c.row.backend);
  ASSERT_NE(b, nullptr);
  const DeviceInfo dev = local_device_for(*b);
  const KernelParams params =
      c.row.params_json.empty() ? KernelParams{} : KernelParams::from_json(c.row.params_json);
  ThreadPool pool(2);
  uint32_t seed = 1234;
  for (auto [k, n] : shapes_for(*b, c.kind)) {
    const LayerSpec spec = spec_of(c.kind, k, n);
    // A bias on the odd shape (GGUF kinds: K is a multiple of 256 there too).
    const bool with_bias = c.kind.gguf == GgmlType::F32 ? k % 256 != 0 : k > 256;
    const QuantizedWeight w = weight_of(c.kind, spec, seed++, with_bias);
    KernelParams p = b->default_params(spec, 1, dev).merged(params);
    ASSERT_TRUE(b->validate_params(spec, p).ok) << b->validate_params(spec, p).reason;
    auto prepared = b->prepare(w, p, dev);
    const std::vector<float> deq = dequantize_reference(w);
    for (int64_t m : {1, 3, 8, 16, 17, 64, 129}) {
      if (m > b->capability().max_m) continue;
      SCOPED_TRACE("K=" + std::to_string(k) + " N=" + std::to_string(n) + " M=" + std::to_string(m));
      std::mt19937 rng(seed++);
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      std::vector<float> x(static_cast<size_t>(m * k));
      for (auto& v : x) v = dist(rng);
      std::vector<float> y(static_cast<size_t>(m * n), NAN);
      if (b->capability().device == DeviceKind::Cpu) {
        prepared->forward({x.data(), DType::F32, m, k, DeviceKind::Cpu}, {y.data(), DType::F32, m, n, DeviceKind::Cpu},
                          {&pool, nullptr});
      } else {
#ifdef QRT_WITH_CUDA
        x = cuda_test::round_to(x, c.row.act);  // the reference sees what the device sees
        auto dx = cuda_test::DeviceTensor::upload(x, m, k, c.row.act);
        auto dy = cuda_test::DeviceTensor::upload(y, m, n, c.row.act);  // NaN-poisoned
        cuda_test::run_on_stream(
            [&](void* stream) { prepared->forward(dx.act(), dy.act(), {nullptr, stream}); }, false);
        y = dy.download();
#else
        FAIL() << "CUDA row in a CPU-only build";
#endif
      }
      const double err = test::relative_error(y, test::reference_forward(w, deq, x, m));
      EXPECT_LT(err, c.row.tolerance) << c.name() << ": relative error " << err;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllBackends, CrossBackend, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name(); });

// What the suite does not cover on this machine, printed so that nothing is skipped silently.
TEST(CrossBackendCoverage, EveryUsableBackendHasRowsAndGapsAreListed) {
  std::vector<std::string> skipped;
  const auto all = cases(&skipped);
  for (const auto& s : skipped) std::printf("[cross-backend] not covered here: %s\n", s.c_str());
  bool ref = false, simd = false;
  for (const auto& c : all) {
    ref |= c.row.backend == "cpu_ref";
    simd |= c.row.backend == "cpu_simd";
  }
  EXPECT_TRUE(ref);
  if (probe_cpu().cpu.features.avx2) {
    EXPECT_TRUE(simd) << "cpu_simd must run on an AVX2 machine";
  }
  // cpu_ref is the oracle: it must run every kind.
  size_t ref_rows = 0;
  for (const auto& c : all) ref_rows += c.row.backend == "cpu_ref";
  EXPECT_EQ(ref_rows, kinds().size());
}

TEST(CrossBackendCoverage, CudaRows) {
#ifndef QRT_WITH_CUDA
  GTEST_SKIP() << "CUDA cross-backend rows need a GPU build";
#else
  std::string why;
  if (!cuda_test::gpu_available(&why)) GTEST_SKIP() << "CUDA cross-backend rows need a GPU: " << why;
  size_t n = 0;
  for (const auto& c : cases()) n += BackendRegistry::global().find(c.row.backend)->capability().device == DeviceKind::Cuda;
  EXPECT_GT(n, 0u);
#endif
}

}  // namespace
}  // namespace qrt
