// Selection: the matrix of target profiles x layer kinds (auto picks the expected backend per M
// range), explicit impossible choices, disabled backends, fallback on an injected prepare
// failure, per-layer overrides and kernel-parameter precedence, and the plan of a bitsandbytes
// LLM.int8 folder for an H100 (cuda_int8 with the checkpoint's outlier threshold).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "backend_test_util.h"
#include "backends/backend_factories.h"
#include "backends/cuda_capabilities.h"
#include "qrt/checkpoint.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"
#include "qrt/safetensors.h"
#include "qrt/setup.h"
#include "qrt/thread_pool.h"
#include "qrt/tuning_cache.h"

namespace qrt {
namespace {

using test::codebook_layer;
using test::fp8_layer;
using test::int_layer;

constexpr int64_t kInf = INT64_MAX;

// A HIGGS (rotated-codebook) layer as decode_higgs describes one: 4-bit p = 2 by default, the grid
// of 2^(bits*p) p-vectors (values irrelevant to planning).
LayerSpec higgs_layer(const std::string& name, int64_t k, int64_t n, int bits = 4, int p = 2, int group = 64,
                      int hadamard = 128) {
  LayerSpec s;
  s.name = name;
  s.in_features = k;
  s.out_features = n;
  s.encoding = WeightEncoding::RotatedCodebook;
  s.bits = bits;
  s.group_size = group;
  s.codebook_dim = p;
  s.hadamard_size = hadamard;
  s.codebook.assign(static_cast<size_t>((int64_t{1} << (bits * p)) * p), 0.5f);
  s.source_format = "higgs";
  return s;
}

// A bitsandbytes LLM.int8 layer as the checkpoint reader describes it (8-bit per-row symmetric,
// the config's threshold on the spec).
LayerSpec llm_int8_layer(const std::string& name, int64_t k, int64_t n, float threshold) {
  LayerSpec s = int_layer(name, k, n, 8, -1, ZeroKind::Symmetric);
  s.source_format = "int8";
  s.llm_int8_threshold = threshold;
  return s;
}

// The layer kinds of the matrix (Llama-7B-like 4096 x 4096 unless the kind is about shape).
std::map<std::string, LayerSpec> matrix_layers() {
  return {
      {"int4_g128_sym", int_layer("l.int4_g128_sym", 4096, 4096, 4, 128, ZeroKind::Symmetric)},
      {"int4_g32_asym_actorder", int_layer("l.int4_g32_asym_ao", 4096, 4096, 4, 32, ZeroKind::Integer, true)},
      {"int3_g128_sym", int_layer("l.int3", 4096, 4096, 3, 128, ZeroKind::Symmetric)},
      {"int8_perrow_sym", int_layer("l.int8", 4096, 4096, 8, -1, ZeroKind::Symmetric)},
      {"llm_int8", llm_int8_layer("l.llm_int8", 4096, 4096, 6.f)},
      {"fp8_block128", fp8_layer("l.fp8", 4096, 4096, 128, 128)},
      // K a multiple of 32 but not 64, N a multiple of 8 but not 64.
      {"int4_g32_odd_shape", int_layer("l.odd", 4128, 4104, 4, 32, ZeroKind::Symmetric)},
      // GGUF Q4_1 / Q4_K (float zero points) and Q6_K (group 16) as the GGUF reader plans them.
      {"gguf_q4_1", int_layer("l.q4_1", 4096, 4096, 4, 32, ZeroKind::Float)},
      {"gguf_q6_k", int_layer("l.q6_k", 4096, 4096, 6, 16, ZeroKind::Symmetric)},
      // Code books: bitsandbytes NF4 / FP4 (blocksize 64) and GGUF IQ4_NL (integer grid, blocks of 32).
      {"bnb_nf4", codebook_layer("l.nf4", 4096, 4096, test::nf4_levels(), 64, "bnb_nf4")},
      {"bnb_fp4", codebook_layer("l.fp4", 4096, 4096, test::fp4_levels(), 64, "bnb_fp4")},
      {"gguf_iq4_nl", codebook_layer("l.iq4", 4096, 4096, test::iq4_levels(), 32, "gguf:IQ4_NL")},
      // HIGGS 4-bit p = 2 (a transformers HiggsConfig default shape) and 2-bit p = 1, an odd N.
      {"higgs_4bit_p2", higgs_layer("l.higgs4", 4096, 4096)},
      {"higgs_2bit_p1_odd", higgs_layer("l.higgs2", 4096, 4104, 2, 1, 256, 512)},
  };
}

// "backend@lo-hi,backend@lo-" : the backend of each M range (adjacent choices of one backend
// that differ only in parameters, e.g. cpu_simd's row tile per M, count as one range here).
std::string ranges_of(const LinearPlan& p) {
  if (!p.ok()) return "ERROR: " + p.error;
  std::vector<KernelChoice> merged;
  for (const auto& c : p.choices) {
    if (!merged.empty() && merged.back().backend == c.backend && merged.back().m_max + 1 == c.m_min)
      merged.back().m_max = c.m_max;
    else
      merged.push_back(c);
  }
  std::string s;
  for (const auto& c : merged) {
    if (!s.empty()) s += ",";
    s += c.backend + "@" + std::to_string(c.m_min) + "-" + (c.m_max == kInf ? "" : std::to_string(c.m_max));
  }
  return s;
}

struct MatrixRow {
  const char* profile;
  const char* kind;
  const char* expected;
};

// Derived from the declared capabilities: cuda_gemv (sm80+, 4/8-bit, K%64, M<=32), cuda_marlin
// (sm80+, 4/8-bit, g -1/32/64/128, N%64 and K%64, float zero points 4-bit only), cuda_fp8 (sm89+),
// cuda_dequant (anything but HIGGS, code books included, sm70+); cpu_simd (avx2+fma+f16c; 2..8-bit,
// FP8, integer code books), cpu_ref (anything). Turing (t4) and Volta (v100) get cuda_dequant for
// every layer; code books get it on every GPU.
const MatrixRow kMatrix[] = {
    {"h100", "int4_g128_sym", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"h100", "int4_g32_asym_actorder", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"h100", "int3_g128_sym", "cuda_dequant@1-"},
    {"h100", "int8_perrow_sym", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"h100", "fp8_block128", "cuda_fp8@1-"},
    {"h100", "int4_g32_odd_shape", "cuda_dequant@1-"},
    // LLM.int8: cuda_int8 for every M (its GEMV below gemv_max_m is a parameter, not a range).
    {"h100", "llm_int8", "cuda_int8@1-"},
    {"a100", "llm_int8", "cuda_int8@1-"},
    {"rtx3090", "llm_int8", "cuda_int8@1-"},
    {"t4", "llm_int8", "cuda_dequant@1-"},
    {"cpu-avx2", "llm_int8", "cpu_simd@1-"},
    {"a100", "int4_g128_sym", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"a100", "int4_g32_asym_actorder", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"a100", "int3_g128_sym", "cuda_dequant@1-"},
    {"a100", "int8_perrow_sym", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"a100", "fp8_block128", "cuda_dequant@1-"},
    {"a100", "int4_g32_odd_shape", "cuda_dequant@1-"},
    {"rtx3090", "int4_g128_sym", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"rtx3090", "int4_g32_asym_actorder", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"rtx3090", "int3_g128_sym", "cuda_dequant@1-"},
    {"rtx3090", "int8_perrow_sym", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"rtx3090", "fp8_block128", "cuda_dequant@1-"},
    {"rtx3090", "int4_g32_odd_shape", "cuda_dequant@1-"},
    {"h100", "gguf_q4_1", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"a100", "gguf_q4_1", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"rtx3090", "gguf_q4_1", "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-"},
    {"h100", "gguf_q6_k", "cuda_dequant@1-"},
    {"t4", "int4_g128_sym", "cuda_dequant@1-"},
    {"t4", "int4_g32_asym_actorder", "cuda_dequant@1-"},
    {"t4", "int3_g128_sym", "cuda_dequant@1-"},
    {"t4", "int8_perrow_sym", "cuda_dequant@1-"},
    {"t4", "fp8_block128", "cuda_dequant@1-"},
    {"t4", "int4_g32_odd_shape", "cuda_dequant@1-"},
    {"t4", "gguf_q4_1", "cuda_dequant@1-"},
    {"v100", "int4_g128_sym", "cuda_dequant@1-"},
    {"v100", "fp8_block128", "cuda_dequant@1-"},
    {"v100", "gguf_q4_1", "cuda_dequant@1-"},
    {"v100", "gguf_q6_k", "cuda_dequant@1-"},
    {"h100", "bnb_nf4", "cuda_dequant@1-"},
    {"h100", "bnb_fp4", "cuda_dequant@1-"},
    {"h100", "gguf_iq4_nl", "cuda_dequant@1-"},
    {"a100", "bnb_nf4", "cuda_dequant@1-"},
    {"a100", "gguf_iq4_nl", "cuda_dequant@1-"},
    {"rtx4090", "bnb_fp4", "cuda_dequant@1-"},
    {"t4", "bnb_nf4", "cuda_dequant@1-"},
    {"v100", "gguf_iq4_nl", "cuda_dequant@1-"},
    {"cpu-avx2", "bnb_nf4", "cpu_ref@1-"},
    {"cpu-avx2", "gguf_iq4_nl", "cpu_simd@1-"},
    {"cpu-avx2", "int4_g128_sym", "cpu_simd@1-"},
    {"cpu-avx2", "int4_g32_asym_actorder", "cpu_simd@1-"},
    {"cpu-avx2", "int3_g128_sym", "cpu_simd@1-"},
    {"cpu-avx2", "int8_perrow_sym", "cpu_simd@1-"},
    {"cpu-avx2", "fp8_block128", "cpu_simd@1-"},
    {"cpu-avx2", "int4_g32_odd_shape", "cpu_simd@1-"},
    {"cpu-avx512", "int4_g128_sym", "cpu_simd@1-"},
    {"cpu-avx512", "int4_g32_asym_actorder", "cpu_simd@1-"},
    {"cpu-avx512", "int3_g128_sym", "cpu_simd@1-"},
    {"cpu-avx512", "int8_perrow_sym", "cpu_simd@1-"},
    {"cpu-avx512", "fp8_block128", "cpu_simd@1-"},
    {"cpu-avx512", "int4_g32_odd_shape", "cpu_simd@1-"},
    {"cpu-baseline", "int4_g128_sym", "cpu_ref@1-"},
    {"cpu-baseline", "fp8_block128", "cpu_ref@1-"},
    // HIGGS: cuda_higgs on every GPU (plain CUDA, sm_70 on), cpu_higgs on every CPU.
    {"h100", "higgs_4bit_p2", "cuda_higgs@1-"},
    {"h100", "higgs_2bit_p1_odd", "cuda_higgs@1-"},
    {"a100", "higgs_4bit_p2", "cuda_higgs@1-"},
    {"rtx3090", "higgs_4bit_p2", "cuda_higgs@1-"},
    {"t4", "higgs_4bit_p2", "cuda_higgs@1-"},
    {"v100", "higgs_2bit_p1_odd", "cuda_higgs@1-"},
    {"cpu-avx2", "higgs_4bit_p2", "cpu_higgs@1-"},
    {"cpu-avx512", "higgs_2bit_p1_odd", "cpu_higgs@1-"},
    {"cpu-baseline", "higgs_4bit_p2", "cpu_higgs@1-"},
};

TEST(SelectionMatrix, AutoPicksTheExpectedBackendPerMRange) {
  const auto layers = matrix_layers();
  RuntimeConfig config;
  for (const auto& row : kMatrix) {
    SCOPED_TRACE(std::string(row.profile) + " x " + row.kind);
    const DeviceInfo dev = target_profile(row.profile);
    const auto plans = plan_layers({layers.at(row.kind)}, config, dev);
    ASSERT_EQ(plans.size(), 1u);
    // "ERROR": no backend can run the layer on that device, and the plan must say so rather than
    // pick one.
    if (std::string(row.expected) == "ERROR")
      EXPECT_EQ(ranges_of(plans[0]).rfind("ERROR", 0), 0u) << ranges_of(plans[0]);
    else
      EXPECT_EQ(ranges_of(plans[0]), row.expected);
    // Every backend of the registry has a verdict, so nothing is silently absent.
    EXPECT_EQ(plans[0].verdicts.size(), BackendRegistry::global().names().size());
  }
}

TEST(SelectionMatrix, EveryProfileIsKnownAndDescribed) {
  for (const auto& name : target_profile_names()) {
    const DeviceInfo d = target_profile(name);
    EXPECT_TRUE(d.simulated());
    EXPECT_NE(d.describe().find(name), std::string::npos);
    if (d.kind == DeviceKind::Cuda) {
      EXPECT_GE(d.gpu.compute_capability(), 70) << name;
      EXPECT_GT(d.gpu.sm_count, 0) << name;
      EXPECT_GT(d.gpu.memory_bytes, int64_t{8} << 30) << name;
    }
  }
  try {
    target_profile("h1000");
    FAIL() << "unknown profile accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("h100"), std::string::npos) << "the error lists the known names";
  }
}

TEST(SelectionMatrix, RejectionReasonsAreReadable) {
  const auto layers = matrix_layers();
  const auto plans = plan_layers({layers.at("int4_g32_odd_shape")}, RuntimeConfig{}, target_profile("h100"));
  std::map<std::string, std::string> why;
  for (const auto& [n, v] : plans[0].verdicts) why[n] = v.reason;
  EXPECT_EQ(why["cuda_marlin"], "in_features 4128 is not a multiple of 64");
  EXPECT_EQ(why["cuda_fp8"], "int weights unsupported: runs fp8_e4m3 weights");
  EXPECT_EQ(why["cpu_ref"], "runs on cpu, device is cuda:0");
  const auto t4 = plan_layers({layers.at("int4_g128_sym")}, RuntimeConfig{}, target_profile("t4"));
  for (const auto& [n, v] : t4[0].verdicts)
    if (n == "cuda_marlin") {
      EXPECT_EQ(v.reason, "needs compute capability >= 8.0 (sm_80); Tesla T4 is sm_75");
    }
}

// --device auto leaves a GPU for the CPU when some layer has no backend there (a HIGGS layer of
// 4-value grid vectors: cuda_higgs runs p = 1 or 2, the CPU any p), and says which layer; a GPU
// that serves every layer stays.
TEST(AutoDevice, AGpuWithoutABackendForSomeLayerIsLeftWithTheReason) {
  LayerSpec higgs = int_layer("model.layers.0.mlp.down_proj", 4096, 4096, 2, 64, ZeroKind::Symmetric);
  higgs.encoding = WeightEncoding::RotatedCodebook;
  higgs.codebook_dim = 4;
  higgs.hadamard_size = 256;
  higgs.codebook.assign(size_t{4} << 8, 0.f);
  higgs.source_format = "higgs";
  const LayerSpec int4 = int_layer("model.layers.0.mlp.up_proj", 4096, 4096, 4, 128, ZeroKind::Symmetric);
  for (const char* profile : {"h100", "t4"}) {
    SCOPED_TRACE(profile);
    const DeviceInfo gpu = target_profile(profile);
    const ModelPlan served = plan_model({int4}, RuntimeConfig{}, gpu, nullptr);
    EXPECT_EQ(auto_gpu_rejection(served, gpu), "");
    const ModelPlan unserved = plan_model({int4, higgs}, RuntimeConfig{}, gpu, nullptr);
    const std::string why = auto_gpu_rejection(unserved, gpu);
    EXPECT_NE(why.find("auto: cuda:0 "), std::string::npos) << why;
    EXPECT_NE(why.find("model.layers.0.mlp.down_proj"), std::string::npos) << why;
    EXPECT_NE(why.find("running on the CPU"), std::string::npos) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << "one line for the log";
    // The CPU runs every layer, so resolve_setup would switch.
    EXPECT_EQ(plan_failure_message(plan_model({int4, higgs}, RuntimeConfig{}, probe_cpu(), nullptr).layers), "");
  }
}

// cuda_dequant's check accepts code books (NF4, FP4, GGUF IQ4) on sm_80+ GPUs (and sm_70/75), and
// its note says how it runs them; on target profiles, so it runs in CI without a GPU (in a CUDA build
// against the real backend, in a CPU-only build against its declared stub: both must agree).
TEST(Selection, CudaDequantAcceptsCodeBooksWithTheirNote) {
  const Backend* dequant = BackendRegistry::global().find("cuda_dequant");
  ASSERT_NE(dequant, nullptr);
  const struct {
    LayerSpec layer;
    const char* source;
  } books[] = {
      {codebook_layer("l.nf4", 4096, 11008, test::nf4_levels(), 64, "bnb_nf4"), "bnb_nf4"},
      {codebook_layer("l.fp4", 4096, 4096, test::fp4_levels(), 128, "bnb_fp4"), "bnb_fp4"},
      {codebook_layer("l.iq4", 4096, 4096, test::iq4_levels(), 32, "gguf:IQ4_XS"), "gguf:IQ4_XS"},
  };
  for (const char* profile : {"h100", "a100", "rtx4090", "t4"}) {
    const DeviceInfo gpu = target_profile(profile);
    for (const auto& b : books) {
      SCOPED_TRACE(std::string(profile) + " x " + b.source);
      const Verdict v = dequant->check(b.layer, gpu);
      ASSERT_TRUE(v.ok) << v.reason;
      EXPECT_NE(v.note.find(std::string("code book (") + b.source + "): each code maps through the 16-level table"),
                std::string::npos)
          << v.note;
      EXPECT_NE(v.note.find("fused GEMV (M <= gemv_max_m) and the fp16/bf16 tiles for cuBLAS"), std::string::npos)
          << v.note;
      EXPECT_EQ(v.note.find("per-code kernels"), std::string::npos) << v.note;
      // The integer-only CUDA backends still refuse them (by encoding where the GPU is new enough).
      for (const char* name : {"cuda_gemv", "cuda_marlin"}) {
        const Verdict r = BackendRegistry::global().find(name)->check(b.layer, gpu);
        EXPECT_FALSE(r.ok) << name;
        if (gpu.gpu.compute_capability() >= 80) {
          EXPECT_EQ(r.reason, "codebook weights unsupported: runs int weights") << name;
        }
      }
    }
  }
  // Act-order and groups that are not whole runs of 32 run too, on the per-code kernels, and say so.
  const DeviceInfo h100 = target_profile("h100");
  const Verdict ao = dequant->check(codebook_layer("l.ao", 4096, 4096, test::nf4_levels(), 128, "bnb_nf4", true), h100);
  ASSERT_TRUE(ao.ok) << ao.reason;
  EXPECT_NE(ao.note.find("per-code kernels (act-order)"), std::string::npos) << ao.note;
  const Verdict g16 = dequant->check(codebook_layer("l.g16", 4096, 4096, test::iq4_levels(), 16, "gguf:IQ4_NL"), h100);
  ASSERT_TRUE(g16.ok) << g16.reason;
  EXPECT_NE(g16.note.find("per-code kernels (group 16 not a multiple of 32)"), std::string::npos) << g16.note;
  // The plan shows the note on the chosen backend.
  const auto plans = plan_layers({books[0].layer}, RuntimeConfig{}, h100);
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(ranges_of(plans[0]), "cuda_dequant@1-");
  bool noted = false;
  for (const auto& n : plans[0].notes)
    noted = noted || (n.rfind("cuda_dequant: ", 0) == 0 && n.find("code book (bnb_nf4)") != std::string::npos);
  EXPECT_TRUE(noted) << ::testing::PrintToString(plans[0].notes);
  // HIGGS rotated code books stay unsupported.
  LayerSpec higgs = books[0].layer;
  higgs.encoding = WeightEncoding::RotatedCodebook;
  EXPECT_FALSE(dequant->check(higgs, h100).ok);
}

TEST(SelectionMatrix, NotBuiltBackendsAreReportedOnRealDevices) {
#ifdef QRT_WITH_CUDA
  GTEST_SKIP() << "CUDA build: the CUDA backends are built";
#else
  const DeviceInfo cpu = probe_cpu();
  const auto plans = plan_layers({int_layer("x", 256, 256, 4, 128, ZeroKind::Symmetric)}, RuntimeConfig{}, cpu);
  int not_built = 0;
  for (const auto& [n, v] : plans[0].verdicts)
    if (n.rfind("cuda_", 0) == 0) {
      EXPECT_EQ(v.reason, "not built in this binary (CPU-only build)");
      ++not_built;
    }
  EXPECT_EQ(not_built, static_cast<int>(cuda_backend_declarations().size()));
  for (const auto* b : BackendRegistry::global().all())
    if (b->name().rfind("cuda_", 0) == 0) {
      EXPECT_FALSE(b->built());
      // The stub carries the declared capability of the real backend.
      EXPECT_EQ(b->capability().min_compute_capability,
                cuda_backend_declaration(b->name()).capability.min_compute_capability);
    }
  EXPECT_EQ(cuda_unavailable_reason(), "built without CUDA");
  EXPECT_TRUE(probe_cuda_devices().empty());
  EXPECT_THROW(resolve_device("cuda:0"), Error);
#endif
}

TEST(Selection, ExplicitImpossibleBackendFailsWithEveryVerdict) {
  RuntimeConfig config;
  config.backend = "cuda_marlin";
  config.set_provenance("backend", "cli --backend");
  const auto plans = plan_layers({int_layer("model.layers.0.mlp.down_proj", 4096, 4096, 3, 128, ZeroKind::Symmetric)},
                                 config, target_profile("a100"));
  ASSERT_FALSE(plans[0].ok());
  const std::string& e = plans[0].error;
  EXPECT_NE(e.find("backend cuda_marlin (from cli --backend) cannot run model.layers.0.mlp.down_proj"), std::string::npos) << e;
  EXPECT_NE(e.find("3-bit weights unsupported: needs 4 or 8 bits"), std::string::npos) << e;
  EXPECT_NE(e.find("cuda_fp8: needs compute capability >= 8.9 (sm_89); NVIDIA A100-SXM4-80GB is sm_80"),
            std::string::npos) << e;
  EXPECT_NE(e.find("would work: cuda_dequant"), std::string::npos) << e;
}

// A backend that would run a layer differently from what its name promises says so in its
// verdict, and the plan shows it (cuda_fp8 runs 128x128 block scales weight-only above M = 8).
TEST(Selection, SlowerPathOfTheChosenBackendIsAPlanNote) {
  const LayerSpec block = fp8_layer("l.fp8", 4096, 4096, 128, 128);
  const auto plans = plan_layers({block}, RuntimeConfig{}, target_profile("h100"));
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(plans[0].choices[0].backend, "cuda_fp8");
  bool noted = false;
  for (const auto& n : plans[0].notes)
    noted = noted || n == "cuda_fp8: M > gemv_max_m runs weight-only (dequant + cuBLAS), not on FP8 tensor cores: "
                          "block scales 128x128";
  EXPECT_TRUE(noted) << ::testing::PrintToString(plans[0].notes);
  // Per-channel scales run on the tensor cores: no note.
  const auto channel = plan_layers({fp8_layer("l.fp8", 4096, 4096, 1, 4096)}, RuntimeConfig{}, target_profile("h100"));
  for (const auto& n : channel[0].notes) EXPECT_EQ(n.find("weight-only"), std::string::npos) << n;
}

TEST(Selection, LastResortIsAnnouncedWithTheReasons) {
  const auto plans = plan_layers({int_layer("l", 4096, 4096, 3, 128, ZeroKind::Symmetric)}, RuntimeConfig{},
                                 target_profile("h100"));
  ASSERT_EQ(plans[0].notes.size(), 1u);
  EXPECT_NE(plans[0].notes[0].find("cuda_dequant is the last-resort backend on cuda:0"), std::string::npos);
  EXPECT_NE(plans[0].notes[0].find("cuda_marlin: 3-bit weights unsupported"), std::string::npos) << plans[0].notes[0];
  RuntimeConfig no_simd;
  no_simd.disabled = {"cpu_simd"};
  const auto cpu = plan_layers({int_layer("l", 256, 256, 4, 32, ZeroKind::Symmetric)}, no_simd, target_profile("cpu-avx2"));
  ASSERT_EQ(cpu[0].notes.size(), 1u) << "disabled by the user still deserves the note";
  EXPECT_NE(cpu[0].notes[0].find("cpu_simd: disabled"), std::string::npos) << cpu[0].notes[0];
  const auto fine = plan_layers({int_layer("l", 256, 256, 4, 32, ZeroKind::Symmetric)}, RuntimeConfig{},
                                target_profile("cpu-avx2"));
  EXPECT_TRUE(fine[0].notes.empty());
}

TEST(Selection, ExplicitBackendWithBoundedMHandsTheRestToAuto) {
  RuntimeConfig config;
  config.backend = "cuda_gemv";
  const auto plans = plan_layers({int_layer("x", 4096, 4096, 4, 128, ZeroKind::Symmetric)}, config, target_profile("h100"));
  EXPECT_EQ(ranges_of(plans[0]), "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-");
  ASSERT_FALSE(plans[0].notes.empty());
  EXPECT_NE(plans[0].notes[0].find("cuda_gemv serves M 1..16 only"), std::string::npos);
}

TEST(Selection, CheckpointHintThatCannotRunFallsBackToAutoWithANote) {
  RuntimeConfig config;
  EXPECT_EQ(config.apply_checkpoint_backend("marlin"), "");
  EXPECT_EQ(config.backend, "cuda_marlin");
  const auto plans = plan_layers({int_layer("x", 256, 256, 4, 128, ZeroKind::Symmetric)}, config,
                                 target_profile("cpu-avx2"));
  EXPECT_EQ(ranges_of(plans[0]), "cpu_simd@1-");
  ASSERT_EQ(plans[0].notes.size(), 1u);
  EXPECT_NE(plans[0].notes[0].find("hint"), std::string::npos);
}

TEST(Selection, DisabledBackendsAreSkipped) {
  RuntimeConfig config;
  config.disabled = {"cuda_gemv", "cuda_marlin"};
  config.set_provenance("disabled", "env QRT_DISABLE_BACKENDS");
  const auto plans = plan_layers({int_layer("x", 4096, 4096, 4, 128, ZeroKind::Symmetric)}, config, target_profile("h100"));
  EXPECT_EQ(ranges_of(plans[0]), "cuda_dequant@1-");
  for (const auto& [n, v] : plans[0].verdicts)
    if (n == "cuda_marlin") {
      EXPECT_EQ(v.reason, "disabled (env QRT_DISABLE_BACKENDS)");
    }

  RuntimeConfig cpu_config;
  cpu_config.disabled = {"cpu_simd"};
  EXPECT_EQ(ranges_of(plan_layers({int_layer("x", 256, 256, 4, 32, ZeroKind::Integer)}, cpu_config,
                                  target_profile("cpu-avx512"))[0]),
            "cpu_ref@1-");

  RuntimeConfig everything;
  everything.disabled = {"cpu_simd", "cpu_ref"};
  const auto none = plan_layers({int_layer("x", 256, 256, 4, 32, ZeroKind::Integer)}, everything, target_profile("cpu-avx512"));
  EXPECT_FALSE(none[0].ok());
  EXPECT_NE(none[0].error.find("no backend can run x"), std::string::npos) << none[0].error;
  EXPECT_NE(none[0].error.find("cpu_ref: disabled"), std::string::npos) << none[0].error;
}

TEST(Selection, PerLayerOverrideBackendWins) {
  RuntimeConfig config;
  config.overrides.push_back({"model.layers.*.mlp.down_proj", "cpu_ref", {}});
  const auto plans = plan_layers({int_layer("model.layers.3.mlp.down_proj", 256, 256, 4, 128, ZeroKind::Symmetric),
                                  int_layer("model.layers.3.mlp.up_proj", 256, 256, 4, 128, ZeroKind::Symmetric)},
                                 config, target_profile("cpu-avx2"));
  EXPECT_EQ(ranges_of(plans[0]), "cpu_ref@1-");
  EXPECT_EQ(ranges_of(plans[1]), "cpu_simd@1-");
}

// An override naming a backend that serves some M only (cuda_gemv: M <= 16) carries that backend's
// parameters: the other ranges are planned by auto with their own, not handed parameters another
// backend rejects ({"backend": "exllama_v2", "wt": 2} on an RTX 4090 used to fail every layer).
TEST(Selection, OverrideParamsApplyOnlyToTheOverridesBackend) {
  const RuntimeConfig config = RuntimeConfig::from_json_text(
      R"({"layers": {"model.layers.*.self_attn.q_proj": {"backend": "exllama_v2", "wt": 2}}})", "test.json",
      RuntimeConfig{});
  const auto plans = plan_layers({int_layer("model.layers.0.self_attn.q_proj", 4096, 4096, 4, 128, ZeroKind::Symmetric)},
                                 config, target_profile("rtx4090"));
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(ranges_of(plans[0]), "cuda_gemv@1-16,cuda_marlin@17-128,cuda_dequant@129-");
  for (const auto& c : plans[0].choices) {
    if (c.backend == "cuda_gemv") {
      EXPECT_EQ(c.source, ParamSource::Override);
      EXPECT_NE(c.params.to_json().find("\"wt\":2"), std::string::npos) << c.params.to_json();
    } else {
      EXPECT_NE(c.source, ParamSource::Override) << c.backend;
      EXPECT_EQ(c.params.to_json().find("wt"), std::string::npos) << c.backend << " " << c.params.to_json();
    }
  }
  bool noted = false;
  for (const auto& n : plans[0].notes) noted |= n.find("are for cuda_gemv; cuda_marlin serves M 17..128 with its own") != std::string::npos;
  EXPECT_TRUE(noted);
  // Without a backend, override parameters are demands on every range: a backend that does not
  // take them is an error (a CPU-only build's CUDA stubs validate nothing, so there they reach
  // every range as overrides).
  const RuntimeConfig flat = RuntimeConfig::from_json_text(R"({"layers": {"*": {"wt": 2}}})", "test.json", RuntimeConfig{});
  const LinearPlan fp = plan_layers({int_layer("x", 4096, 4096, 4, 128, ZeroKind::Symmetric)}, flat, target_profile("rtx4090"))[0];
  if (BackendRegistry::global().find("cuda_marlin")->built()) {
    EXPECT_FALSE(fp.ok());
  } else {
    ASSERT_TRUE(fp.ok()) << fp.error;
    for (const auto& c : fp.choices) EXPECT_EQ(c.source, ParamSource::Override) << c.backend;
  }
}

// An explicit backend that cannot run on this device falls back, at plan time, to the user's own
// fallback list; the list never holds a backend a range already runs.
TEST(Selection, ExplicitBackendFallsBackAtPlanTimeToTheFallbackList) {
  CliOverrides cli;
  cli.backend = "marlin";
  cli.fallback = std::vector<std::string>{"cuda_marlin", "cpu_simd", "cpu_ref"};
  const RuntimeConfig config = build_runtime_config(CheckpointRuntime{}, "", cli);
  const auto plans = plan_layers({int_layer("x", 256, 256, 4, 128, ZeroKind::Symmetric)}, config,
                                 target_profile("cpu-avx2"));
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(ranges_of(plans[0]), "cpu_simd@1-");
  ASSERT_FALSE(plans[0].notes.empty());
  EXPECT_NE(plans[0].notes[0].find("backend cuda_marlin (from cli --backend) cannot run this layer on cpu"),
            std::string::npos) << plans[0].notes[0];
  EXPECT_NE(plans[0].notes[0].find("using fallback cpu_simd"), std::string::npos) << plans[0].notes[0];
  EXPECT_EQ(plans[0].fallback, std::vector<std::string>{"cpu_ref"}) << "no cpu_simd (it runs), no cuda_marlin (cannot)";
  // Without a fallback that can run it, the explicit choice is still an error.
  CliOverrides alone;
  alone.backend = "marlin";
  EXPECT_FALSE(plan_layers({int_layer("x", 256, 256, 4, 128, ZeroKind::Symmetric)}, build_runtime_config(CheckpointRuntime{}, "", alone),
                           target_profile("cpu-avx2"))[0].ok());
  // A chosen backend listed as a fallback of itself is dropped.
  RuntimeConfig self;
  self.backend = "cpu_simd";
  self.fallback = {"cpu_simd", "cpu_ref"};
  const auto p2 = plan_layers({int_layer("x", 256, 256, 4, 128, ZeroKind::Symmetric)}, self, target_profile("cpu-avx2"));
  EXPECT_EQ(p2[0].fallback, std::vector<std::string>{"cpu_ref"});
}

// ---- a local registry with fake backends ----
struct LocalRegistry {
  BackendRegistry reg;
  test::FakeBackend* failing = nullptr;
  test::FakeBackend* good = nullptr;
  LocalRegistry() {
    auto f = std::make_unique<test::FakeBackend>("fake_fail", true);
    failing = f.get();
    reg.add(std::move(f));
    auto g = std::make_unique<test::FakeBackend>("fake_good", false);
    good = g.get();
    reg.add(std::move(g));
    reg.add(make_cpu_ref_backend());
    reg.set_auto_order("cpu", {"fake_fail", "fake_good", "cpu_ref"});
  }
};

TEST(Fallback, InjectedPrepareFailureFallsBackAndIsLogged) {
  LocalRegistry local;
  const LayerSpec spec = int_layer("model.layers.0.self_attn.q_proj", 64, 32, 4, 32, ZeroKind::Integer);
  const QuantizedWeight w = test::random_weight(spec, 7);
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, cpu, nullptr, local.reg);
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(ranges_of(plans[0]), "fake_fail@1-");
  EXPECT_EQ(plans[0].fallback, (std::vector<std::string>{"fake_good", "cpu_ref"}));

  std::vector<std::string> log;
  auto ql = QuantLinear::build(w, plans[0], PrepareContext(cpu, 2048, [&](const std::string& m) { log.push_back(m); }), local.reg);
  EXPECT_EQ(ql->backends_used(), std::vector<std::string>{"fake_good"});
  EXPECT_EQ(local.failing->prepare_calls, 1);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_NE(log[0].find("fake_fail failed to prepare"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("injected prepare failure"), std::string::npos) << log[0];
  EXPECT_NE(log[1].find("using fallback backend fake_good"), std::string::npos) << log[1];

  // The fallback kernel computes the right thing.
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(i) - 0.3f;
  std::vector<float> y(32, NAN);
  ql->forward({x.data(), DType::F32, 1, 64, DeviceKind::Cpu}, {y.data(), DType::F32, 1, 32, DeviceKind::Cpu}, {});
  EXPECT_LT(test::relative_error(y, test::reference_forward(w, x, 1)), 1e-5);
}

TEST(Fallback, ConfiguredListIsTriedInOrderAndTotalFailureNamesEveryAttempt) {
  LocalRegistry local;
  const LayerSpec spec = int_layer("l", 64, 32, 4, 32, ZeroKind::Symmetric);
  const QuantizedWeight w = test::random_weight(spec, 3);
  const DeviceInfo cpu = target_profile("cpu-avx2");
  RuntimeConfig config;
  config.backend = "fake_fail";
  config.fallback = {"cpu_ref"};
  auto plans = plan_layers({spec}, config, cpu, nullptr, local.reg);
  EXPECT_EQ(plans[0].fallback, std::vector<std::string>{"cpu_ref"}) << "explicit: no implicit fallback";
  auto ql = QuantLinear::build(w, plans[0], cpu, local.reg);
  EXPECT_EQ(ql->backends_used(), std::vector<std::string>{"cpu_ref"});

  config.fallback = {};
  plans = plan_layers({spec}, config, cpu, nullptr, local.reg);
  try {
    QuantLinear::build(w, plans[0], cpu, local.reg);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NoBackend);
    EXPECT_NE(std::string(e.what()).find("fake_fail: l: fake_fail: injected prepare failure"), std::string::npos)
        << e.what();
  }
}

TEST(Ranges, QuantLinearDispatchesByRowCount) {
  BackendRegistry reg;
  reg.add(std::make_unique<test::FakeBackend>("small", false, 4));
  reg.add(std::make_unique<test::FakeBackend>("large", false));
  reg.set_auto_order("cpu", {"small", "large"});
  const LayerSpec spec = int_layer("l", 32, 16, 4, -1, ZeroKind::Symmetric);
  const auto plans = plan_layers({spec}, RuntimeConfig{}, target_profile("cpu-avx2"), nullptr, reg);
  EXPECT_EQ(ranges_of(plans[0]), "small@1-4,large@5-");
  const QuantizedWeight w = test::random_weight(spec, 11, true);
  auto ql = QuantLinear::build(w, plans[0], target_profile("cpu-avx2"), reg);
  EXPECT_EQ(ql->backends_used(), (std::vector<std::string>{"small", "large"}));
  ThreadPool pool(2);
  for (int64_t m : {1, 4, 5, 9}) {
    std::vector<float> x(static_cast<size_t>(m * 32));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
    std::vector<float> y(static_cast<size_t>(m * 16), NAN);
    ql->forward({x.data(), DType::F32, m, 32, DeviceKind::Cpu}, {y.data(), DType::F32, m, 16, DeviceKind::Cpu},
                {&pool, nullptr});
    EXPECT_LT(test::relative_error(y, test::reference_forward(w, x, m)), 1e-5) << "M=" << m;
  }
}

// A plan not made by plan_layers may leave some M uncovered: forward() says so instead of leaving
// y as it was.
TEST(Ranges, ForwardWithNoRangeForMThrowsNamingIt) {
  BackendRegistry reg;
  reg.add(std::make_unique<test::FakeBackend>("small", false, 4));
  const LayerSpec spec = int_layer("model.layers.0.mlp.up_proj", 32, 16, 4, -1, ZeroKind::Symmetric);
  LinearPlan plan;
  plan.layer = spec;
  KernelChoice c;
  c.backend = "small";
  c.m_min = 1;
  c.m_max = 4;
  plan.choices.push_back(c);
  const QuantizedWeight w = test::random_weight(spec, 12);
  auto ql = QuantLinear::build(w, plan, target_profile("cpu-avx2"), reg);
  ThreadPool pool(1);
  std::vector<float> x(6 * 32, 0.5f), y(6 * 16, 7.0f);
  try {
    ql->forward({x.data(), DType::F32, 6, 32, DeviceKind::Cpu}, {y.data(), DType::F32, 6, 16, DeviceKind::Cpu},
                {&pool, nullptr});
    FAIL() << "M = 6 ran with no kernel";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NoBackend);
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj: no kernel of its plan serves M = 6 (the plan covers M 1..4)"),
              std::string::npos) << e.what();
  }
}

// ---- kernel parameters: override > tuned > global > default, validated by the owner ----
TEST(Params, PrecedenceOverrideTunedGlobalDefault) {
  BackendRegistry reg;
  reg.add(std::make_unique<test::FakeBackend>("fake", false));
  reg.set_auto_order("cpu", {"fake"});
  const DeviceInfo dev = target_profile("cpu-avx2");
  const LayerSpec a = int_layer("model.layers.0.mlp.up_proj", 64, 64, 4, 32, ZeroKind::Symmetric);
  const LayerSpec b = int_layer("model.layers.1.mlp.up_proj", 64, 64, 4, 32, ZeroKind::Symmetric);

  auto tile_of = [](const LinearPlan& p) { return p.choices.at(0).params.get_int("tile", -1); };
  RuntimeConfig config;
  auto plans = plan_layers({a}, config, dev, nullptr, reg);
  EXPECT_EQ(tile_of(plans[0]), 32);
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Default);

  config.kernel_params.values["tile"] = int64_t{16};
  plans = plan_layers({a}, config, dev, nullptr, reg);
  EXPECT_EQ(tile_of(plans[0]), 16);
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Global);

  TuningCache cache;
  TuningEntry e;
  e.key = make_tuning_key(dev, *reg.find("fake"), a, 1);
  e.params.values["tile"] = int64_t{64};
  cache.put(e);
  plans = plan_layers({a}, config, dev, &cache, reg);
  EXPECT_EQ(tile_of(plans[0]), 64);
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Tuned);

  KernelParams over;
  over.values["tile"] = int64_t{32};
  config.overrides.push_back({"model.layers.0.*", "", over});
  plans = plan_layers({a, b}, config, dev, &cache, reg);
  EXPECT_EQ(tile_of(plans[0]), 32);
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Override);
  // Layer 1 matches no override; the tuned entry is keyed by shape, so it applies there too.
  EXPECT_EQ(tile_of(plans[1]), 64);
  EXPECT_EQ(plans[1].choices[0].source, ParamSource::Tuned);
  const LayerSpec other_shape = int_layer("model.layers.1.mlp.down_proj", 128, 64, 4, 32, ZeroKind::Symmetric);
  plans = plan_layers({other_shape}, config, dev, &cache, reg);
  EXPECT_EQ(tile_of(plans[0]), 16) << "no tuned entry for this shape: the global value";
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Global);
}

TEST(Params, TunedBucketsSplitTheMRange) {
  BackendRegistry reg;
  reg.add(std::make_unique<test::FakeBackend>("fake", false));
  reg.set_auto_order("cpu", {"fake"});
  const DeviceInfo dev = target_profile("cpu-avx2");
  const LayerSpec a = int_layer("l", 64, 64, 4, 32, ZeroKind::Symmetric);
  TuningCache cache;
  for (auto [m, tile] : std::vector<std::pair<int64_t, int64_t>>{{1, 16}, {4, 16}, {16, 64}}) {
    TuningEntry e;
    e.key = make_tuning_key(dev, *reg.find("fake"), a, m);
    e.params.values["tile"] = tile;
    cache.put(e);
  }
  const auto plans = plan_layers({a}, RuntimeConfig{}, dev, &cache, reg);
  ASSERT_EQ(plans[0].choices.size(), 2u);
  EXPECT_EQ(plans[0].choices[0].m_max, 4);   // buckets 1 and 4 agree: merged
  EXPECT_EQ(plans[0].choices[0].params.get_int("tile", 0), 16);
  EXPECT_EQ(plans[0].choices[1].m_min, 5);
  EXPECT_EQ(plans[0].choices[1].m_max, kInf);
  EXPECT_EQ(plans[0].choices[1].params.get_int("tile", 0), 64);
}

TEST(Params, InvalidParameterIsAnErrorNamingIt) {
  BackendRegistry reg;
  reg.add(std::make_unique<test::FakeBackend>("fake", false));
  reg.set_auto_order("cpu", {"fake"});
  RuntimeConfig config;
  KernelParams over;
  over.values["tile"] = int64_t{48};
  config.overrides.push_back({"l", "", over});
  auto plans = plan_layers({int_layer("l", 64, 64, 4, 32, ZeroKind::Symmetric)}, config, target_profile("cpu-avx2"),
                           nullptr, reg);
  ASSERT_FALSE(plans[0].ok());
  EXPECT_NE(plans[0].error.find("parameter 'tile' must be 16, 32 or 64"), std::string::npos) << plans[0].error;
  EXPECT_NE(plans[0].error.find("override 'l'"), std::string::npos) << plans[0].error;

  RuntimeConfig global;
  global.kernel_params.values["warps"] = int64_t{4};
  plans = plan_layers({int_layer("l", 64, 64, 4, 32, ZeroKind::Symmetric)}, global, target_profile("cpu-avx2"), nullptr,
                      reg);
  ASSERT_FALSE(plans[0].ok());
  EXPECT_NE(plans[0].error.find("unknown parameter 'warps'"), std::string::npos) << plans[0].error;

  // A stale/invalid tuned entry is ignored with a note, not trusted and not fatal.
  TuningCache cache;
  TuningEntry e;
  const LayerSpec l = int_layer("l", 64, 64, 4, 32, ZeroKind::Symmetric);
  e.key = make_tuning_key(target_profile("cpu-avx2"), *reg.find("fake"), l, 1);
  e.params.values["tile"] = int64_t{7};
  cache.put(e);
  plans = plan_layers({l}, RuntimeConfig{}, target_profile("cpu-avx2"), &cache, reg);
  ASSERT_TRUE(plans[0].ok());
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Default);
  ASSERT_EQ(plans[0].notes.size(), 1u);
  EXPECT_NE(plans[0].notes[0].find("ignored"), std::string::npos);
}

TEST(Registry, AutoListsAreDataAndCoverEveryDeviceClass) {
  const auto& reg = BackendRegistry::global();
  const auto h100 = target_profile("h100");
  EXPECT_EQ(reg.auto_order(h100, int_layer("x", 64, 64, 4, 128, ZeroKind::Symmetric)),
            (std::vector<std::string>{"cuda_gemv", "cuda_marlin", "cuda_dequant"}));
  EXPECT_EQ(reg.auto_order(h100, llm_int8_layer("x", 64, 64, 6.f)),
            (std::vector<std::string>{"cuda_int8", "cuda_gemv", "cuda_marlin", "cuda_dequant"}));
  EXPECT_EQ(reg.auto_order(target_profile("t4"), llm_int8_layer("x", 64, 64, 6.f)),
            (std::vector<std::string>{"cuda_gemv", "cuda_dequant"}));
  EXPECT_EQ(reg.auto_order(h100, fp8_layer("x", 64, 64, 128, 128)),
            (std::vector<std::string>{"cuda_fp8", "cuda_dequant"}));
  EXPECT_EQ(reg.auto_order(target_profile("t4"), int_layer("x", 64, 64, 4, 128, ZeroKind::Symmetric)),
            (std::vector<std::string>{"cuda_gemv", "cuda_dequant"}));
  EXPECT_EQ(reg.auto_order(probe_cpu(), int_layer("x", 64, 64, 4, 128, ZeroKind::Symmetric)),
            (std::vector<std::string>{"cpu_simd", "cpu_higgs", "cpu_ref"}));
  // HIGGS weights: their own class on every GPU (no other CUDA backend runs them).
  for (const char* profile : {"h100", "t4"})
    EXPECT_EQ(reg.auto_order(target_profile(profile), higgs_layer("x", 256, 256)),
              (std::vector<std::string>{"cuda_higgs"}));
  EXPECT_EQ(reg.auto_order(probe_cpu(), higgs_layer("x", 256, 256)),
            (std::vector<std::string>{"cpu_simd", "cpu_higgs", "cpu_ref"}));
}

// A HIGGS layer on a GPU: cuda_higgs for every M, the other CUDA backends passed over because they
// do not run rotated codebooks, and the checkpoint's tune_metadata tile (FLUTE's packing tile, what
// checkpoint_runtime makes of its template_id) as its parameter, shown as the checkpoint's.
TEST(Selection, HiggsLayerOnAGpuRunsOnCudaHiggsWithTheCheckpointTile) {
  const LayerSpec l = higgs_layer("model.layers.0.mlp.up_proj", 4096, 11008);
  RuntimeConfig config;
  EXPECT_TRUE(config.apply_checkpoint_tune_metadata({{"model.layers.0.mlp.up_proj", R"({"tile_n":128})"}}).empty());
  const auto plans = plan_layers({l}, config, target_profile("h100"));
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(ranges_of(plans[0]), "cuda_higgs@1-");
  ASSERT_EQ(plans[0].choices.size(), 1u);
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Checkpoint);
  EXPECT_EQ(plans[0].choices[0].params.get_int("tile_n", 0), 128);
  std::map<std::string, std::string> why;
  for (const auto& [n, v] : plans[0].verdicts) why[n] = v.reason;
  for (const char* other : {"cuda_dequant", "cuda_marlin", "cuda_gemv", "cuda_fp8"})
    EXPECT_NE(why[other].find("rotated-codebook weights unsupported"), std::string::npos) << other << ": " << why[other];
  EXPECT_EQ(why["cpu_higgs"], "runs on cpu, device is cuda:0");
  // No last-resort note: cuda_higgs is the whole list of its class.
  for (const auto& n : plans[0].notes) EXPECT_EQ(n.find("last-resort"), std::string::npos) << n;
  // Without metadata: the backend's own defaults.
  const auto plain = plan_layers({l}, RuntimeConfig{}, target_profile("h100"));
  ASSERT_TRUE(plain[0].ok()) << plain[0].error;
  EXPECT_EQ(plain[0].choices[0].source, ParamSource::Default);
  // On the CPU the same layer stays on cpu_higgs, the tile its parameter too.
  const auto cpu = plan_layers({l}, config, target_profile("cpu-avx2"));
  ASSERT_TRUE(cpu[0].ok()) << cpu[0].error;
  EXPECT_EQ(ranges_of(cpu[0]), "cpu_higgs@1-");
  EXPECT_EQ(cpu[0].choices[0].params.get_int("tile_n", 0), 128);
}

}  // namespace
}  // namespace qrt

namespace qrt {
namespace {

// A backend whose forward reads the plan's per-range parameters: its M-dependent defaults split
// the plan, yet the weight is prepared once.
class CallParamsBackend final : public Backend {
 public:
  CallParamsBackend() {
    cap_.device = DeviceKind::Cpu;
    cap_.encodings = {WeightEncoding::IntAffine};
  }
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return name_; }
  const BackendCapability& capability() const override { return cap_; }
  bool reads_call_params() const override { return true; }
  KernelParams packing_params(const KernelParams&) const override { return {}; }
  Verdict validate_params(const LayerSpec&, const KernelParams&) const override { return Verdict::yes(); }
  KernelParams default_params(const LayerSpec&, int64_t m, const DeviceInfo&) const override {
    KernelParams p;
    p.values["rows"] = int64_t{m >= 8 ? 8 : 1};
    return p;
  }
  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight&, const KernelParams&, const PrepareContext&) const override {
    ++prepares;
    return std::make_unique<Prepared>(this);
  }
  mutable int prepares = 0;
  mutable int64_t last_rows = -1;

 private:
  struct Prepared final : PreparedLinear {
    explicit Prepared(const CallParamsBackend* o) : owner(o) {}
    void forward(const ActTensor&, const ActTensor&, const ExecContext& ctx) override {
      owner->last_rows = ctx.call_params ? ctx.call_params->get_int("rows", -2) : -3;
    }
    int64_t weight_bytes() const override { return 100; }
    const CallParamsBackend* owner;
  };
  std::string name_ = "callparams";
  BackendCapability cap_;
};

TEST(Ranges, DefaultsThatChangeWithMSplitThePlanButShareOnePacking) {
  BackendRegistry reg;
  auto owned = std::make_unique<CallParamsBackend>();
  CallParamsBackend* b = owned.get();
  reg.add(std::move(owned));
  reg.set_auto_order("cpu", {"callparams"});
  const LayerSpec spec = test::int_layer("l", 32, 16, 4, -1, ZeroKind::Symmetric);
  const DeviceInfo dev = target_profile("cpu-avx2");
  const auto plans = plan_layers({spec}, RuntimeConfig{}, dev, nullptr, reg);
  ASSERT_EQ(plans[0].choices.size(), 2u);
  EXPECT_EQ(plans[0].choices[0].m_max, 7);
  EXPECT_EQ(plans[0].choices[1].m_min, 8);
  auto ql = QuantLinear::build(test::random_weight(spec, 1), plans[0], dev, reg);
  EXPECT_EQ(b->prepares, 1);
  EXPECT_EQ(ql->weight_bytes(), 100);
  std::vector<float> x(32 * 9), y(16 * 9);
  ql->forward({x.data(), DType::F32, 3, 32, DeviceKind::Cpu}, {y.data(), DType::F32, 3, 16, DeviceKind::Cpu}, {});
  EXPECT_EQ(b->last_rows, 1);
  ql->forward({x.data(), DType::F32, 9, 32, DeviceKind::Cpu}, {y.data(), DType::F32, 9, 16, DeviceKind::Cpu}, {});
  EXPECT_EQ(b->last_rows, 8);
}

}  // namespace
}  // namespace qrt

// ---- `qrt plan --target h100` on a bitsandbytes LLM.int8 folder ----
namespace qrt {
namespace {

// A tiny Llama (hidden 64, intermediate 128, 2 blocks) written as transformers saves a model loaded
// with load_in_8bit: every linear an I8 `weight` [N, K] with its `SCB` [N] and `weight_format` 0,
// the rest f16, and the bitsandbytes quantization_config with the given llm_int8_threshold.
class LlmInt8Folder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("qrt_llm_int8_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void write(double threshold) {
    std::ofstream(dir_ / "config.json") << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": 96, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
      "max_position_embeddings": 128, "tie_word_embeddings": true, "torch_dtype": "float16",
      "quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": true, "load_in_4bit": false,
        "llm_int8_threshold": )" << threshold << R"(, "llm_int8_skip_modules": null,
        "llm_int8_has_fp16_weight": false, "llm_int8_enable_fp32_cpu_offload": false}})";
    SafetensorsWriter st((dir_ / "model.safetensors").string());
    std::mt19937 rng(17);
    std::uniform_int_distribution<int> cb(-127, 127);
    std::normal_distribution<float> nd(0.f, 0.05f);
    auto floats = [&](const std::string& name, std::vector<int64_t> shape, float base) {
      int64_t count = 1;
      for (int64_t d : shape) count *= d;
      std::vector<float> v(static_cast<size_t>(count));
      for (auto& f : v) f = base + nd(rng);
      st.add_float(name, DType::F16, shape, v);
    };
    auto linear = [&](const std::string& name, int64_t n, int64_t k) {
      std::vector<uint8_t> w(static_cast<size_t>(n * k));
      for (auto& b : w) b = static_cast<uint8_t>(static_cast<int8_t>(cb(rng)));
      st.add(name + ".weight", DType::I8, {n, k}, w);
      std::vector<float> scb(static_cast<size_t>(n));
      for (auto& s : scb) s = 0.1f + std::fabs(nd(rng));
      st.add_float(name + ".SCB", DType::F32, {n}, scb);
      st.add(name + ".weight_format", DType::U8, {}, {0});
    };
    floats("model.embed_tokens.weight", {96, 64}, 0.f);
    for (int i = 0; i < 2; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      floats(p + "input_layernorm.weight", {64}, 1.f);
      floats(p + "post_attention_layernorm.weight", {64}, 1.f);
      linear(p + "self_attn.q_proj", 64, 64);
      linear(p + "self_attn.k_proj", 32, 64);
      linear(p + "self_attn.v_proj", 32, 64);
      linear(p + "self_attn.o_proj", 64, 64);
      linear(p + "mlp.gate_proj", 128, 64);
      linear(p + "mlp.up_proj", 128, 64);
      linear(p + "mlp.down_proj", 64, 128);
    }
    floats("model.norm.weight", {64}, 1.f);
    st.write();
  }

  // What `qrt plan MODEL --target T [--disable ...]` decides (resolve_setup is its setup).
  ResolvedSetup plan(const std::string& target, const std::vector<std::string>& disable = {}) {
    ck_ = open_checkpoint(dir_.string());
    SetupRequest r;
    r.target = target;
    r.cli.use_tuning_cache = false;
    if (!disable.empty()) r.cli.disabled = disable;
    return resolve_setup(*ck_, r);
  }

  static bool has(const std::vector<std::string>& lines, const std::string& part) {
    for (const auto& l : lines)
      if (l.find(part) != std::string::npos) return true;
    return false;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Checkpoint> ck_;
};

TEST_F(LlmInt8Folder, PlanForH100PutsEveryLayerOnCudaInt8WithTheThreshold) {
  write(6.0);
  const ResolvedSetup s = plan("h100");
  ASSERT_EQ(s.plan->layers.size(), 14u);
  for (const auto& p : s.plan->layers) {
    SCOPED_TRACE(p.layer.name);
    ASSERT_TRUE(p.ok()) << p.error;
    EXPECT_EQ(p.layer.llm_int8_threshold, 6.f);
    ASSERT_EQ(p.choices.size(), 1u);
    EXPECT_EQ(p.choices[0].backend, "cuda_int8");
    EXPECT_EQ(p.choices[0].m_min, 1);
    EXPECT_EQ(p.choices[0].m_max, INT64_MAX);
    // The GEMV / tensor-core boundary is a parameter the plan shows (and qrt tune can move); a
    // CPU-only binary plans CUDA backends from their declarations, without their parameters.
    if (BackendRegistry::global().find("cuda_int8")->built()) {
      EXPECT_EQ(p.choices[0].params.to_json(), R"({"gemv_max_m":8,"max_outliers":256})");
    }
    EXPECT_TRUE(has(p.notes, "cuda_int8: LLM.int8: above gemv_max_m rows int8 tensor cores, with the activation "
                             "columns holding some |x| >= 6 (llm_int8_threshold)"))
        << ::testing::PrintToString(p.notes);
    // The weight-only kernels stay behind it; cuda_dequant is the fallback of a failed prepare.
    EXPECT_EQ(p.fallback, std::vector<std::string>{"cuda_dequant"});
  }
  // q/k/v and gate/up fused by the GPU engine: the same backend, the same threshold.
  ASSERT_FALSE(s.plan->fused.empty());
  for (const auto& f : s.plan->fused) {
    ASSERT_TRUE(f.ok()) << f.error;
    EXPECT_EQ(f.choices[0].backend, "cuda_int8") << f.layer.name;
    EXPECT_EQ(f.layer.llm_int8_threshold, 6.f);
  }
  EXPECT_TRUE(has(s.warnings, "llm_int8_threshold 6: applied by cuda_int8")) << ::testing::PrintToString(s.warnings);
  // Plan = run: the weight the loader decodes carries the threshold the plan was made with.
  EXPECT_EQ(ck_->load_quantized("model.layers.1.mlp.down_proj").spec.llm_int8_threshold, 6.f);
}

TEST_F(LlmInt8Folder, WithoutCudaInt8OrSm80TheWeightOnlyKernelsServeIt) {
  write(6.0);
  const ResolvedSetup off = plan("h100", {"cuda_int8"});
  for (const auto& p : off.plan->layers) {
    ASSERT_TRUE(p.ok()) << p.error;
    EXPECT_EQ(p.choices.front().backend, "cuda_gemv") << p.layer.name;
    for (const auto& c : p.choices) EXPECT_NE(c.backend, "cuda_int8");
  }
  const ResolvedSetup t4 = plan("t4");
  for (const auto& p : t4.plan->layers) {
    ASSERT_TRUE(p.ok()) << p.error;
    EXPECT_EQ(p.choices.front().backend, "cuda_dequant");
    for (const auto& [name, v] : p.verdicts)
      if (name == "cuda_int8") {
        EXPECT_EQ(v.reason, "needs compute capability >= 8.0 (sm_80); Tesla T4 is sm_75");
      }
  }
  // The CPU keeps the activations in float (weight-only), and the warning says so.
  const ResolvedSetup cpu = plan("cpu-avx2");
  for (const auto& p : cpu.plan->layers) EXPECT_EQ(p.choices.front().backend, "cpu_simd") << p.layer.name;
  EXPECT_TRUE(has(cpu.warnings, "keep activations in float")) << ::testing::PrintToString(cpu.warnings);
}

TEST_F(LlmInt8Folder, ThresholdZeroMeansNoDecomposition) {
  write(0.0);
  const ResolvedSetup s = plan("h100");
  for (const auto& p : s.plan->layers) {
    EXPECT_EQ(p.choices.front().backend, "cuda_int8");
    EXPECT_EQ(p.layer.llm_int8_threshold, 0.f);
    EXPECT_TRUE(has(p.notes, "LLM.int8 without decomposition (llm_int8_threshold 0)"))
        << ::testing::PrintToString(p.notes);
  }
  EXPECT_TRUE(has(s.warnings, "llm_int8_threshold 0: no outlier decomposition"))
      << ::testing::PrintToString(s.warnings);
}

}  // namespace
}  // namespace qrt
