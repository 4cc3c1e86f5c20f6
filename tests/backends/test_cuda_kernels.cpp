// GPU tests of cuda_marlin and cuda_gemv through the Backend interface (prepare + forward) against
// the CPU reference dequantizer in double, on fresh seeded random data: M in {1,2,3,8,16,17,64,
// 129,1024}, K and N at the smallest legal sizes (64, 64) and odd multiples, every group size,
// act-order on/off, symmetric / integer zero, 4 and 8 bits, float zero points (4-bit: GGUF's min,
// fp16 values as GGUF stores them), fp16 and bf16; outputs poisoned (NaN) before each call;
// relative error beyond the output dtype's own rounding < 1e-3 (a bf16 output alone is ~1.5e-3
// from the exact result; fp16 ~1.5e-4). Skipped with the reason without a GPU.
// The short set for compute-sanitizer: --gtest_filter='CudaKernels*Sanitizer*'.
// CudaKernelsPack needs no GPU: the repack (GGUF types included) against the CPU decode.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "backend_test_util.h"
#include "qrt/error.h"

#ifdef QRT_WITH_CUDA
#include "backends/backend_factories.h"
#include "backends/cuda/common/int4_int8_kernels.h"
#include "backends/cuda/common/int4_int8_pack.h"
#include "backends/cuda/dequant/packed_weight.h"
#include "support/cuda_test_support.h"
#include "qrt/device.h"
#include "qrt/dtype.h"

namespace qrt {
namespace {

using cuda_test::DeviceTensor;
using test::int_layer;
using test::reference_forward;
using test::relative_error;

#define QRT_SKIP_WITHOUT_GPU()                                  \
  do {                                                          \
    std::string why_;                                           \
    if (!cuda_test::gpu_available(&why_)) GTEST_SKIP() << why_; \
  } while (0)

struct KCase {
  const char* backend;
  int64_t m, k, n;
  int bits, group;
  ZeroKind zero;
  bool act, bf16, bias;
  KernelParams params;
};

// The bulk-copy GEMV variant runs on sm_90+ only.
bool gemv_bulk_here() { return cuda_test::gpu0().gpu.compute_capability() >= 90; }

std::string describe(const KCase& c) {
  return std::string(c.backend) + " m=" + std::to_string(c.m) + " k=" + std::to_string(c.k) +
         " n=" + std::to_string(c.n) + " w" + std::to_string(c.bits) + " g" + std::to_string(c.group) +
         (c.zero == ZeroKind::Integer ? " asym" : c.zero == ZeroKind::Float ? " float-zero" : " sym") +
         (c.act ? " act" : "") + (c.bf16 ? " bf16" : " fp16") +
         " params=" + c.params.to_json();
}

QuantizedWeight make_weight(const KCase& c, std::mt19937& rng) {
  QuantizedWeight w;
  w.spec.name = "test.kernels";
  w.spec.in_features = c.k;
  w.spec.out_features = c.n;
  w.spec.bits = c.bits;
  w.spec.group_size = c.group;
  w.spec.zero_kind = c.zero;
  w.spec.act_order = c.act;
  w.spec.has_bias = c.bias;
  const int64_t gs = c.group <= 0 ? c.k : c.group;
  const int64_t groups = c.k / gs;
  std::uniform_int_distribution<int> code(0, (1 << c.bits) - 1);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f), b(-0.5f, 0.5f);
  w.codes.resize(static_cast<size_t>(c.n * c.k));
  for (auto& v : w.codes) v = static_cast<uint8_t>(code(rng));
  w.scales.resize(static_cast<size_t>(c.n * groups));
  for (auto& v : w.scales) v = scale(rng);
  if (c.zero == ZeroKind::Integer) {
    w.zeros.resize(w.scales.size());
    for (auto& v : w.zeros) v = static_cast<float>(code(rng));
  }
  if (c.zero == ZeroKind::Float) {  // GGUF Q4_1: d and m are fp16 numbers, m mostly -8d or so
    std::uniform_real_distribution<float> mins(-0.2f, 0.05f);
    w.zeros.resize(w.scales.size());
    for (auto& v : w.scales) v = fp16_to_f32(f32_to_fp16(v));
    for (auto& v : w.zeros) v = fp16_to_f32(f32_to_fp16(mins(rng)));
  }
  if (c.act) {
    std::vector<int32_t> perm(static_cast<size_t>(c.k));
    for (int64_t i = 0; i < c.k; ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    w.g_idx.resize(static_cast<size_t>(c.k));
    for (int64_t i = 0; i < c.k; ++i) w.g_idx[i] = static_cast<int32_t>(perm[i] / gs);
  }
  if (c.bias) {
    w.bias.resize(static_cast<size_t>(c.n));
    for (auto& v : w.bias) v = b(rng);
  }
  w.validate();
  return w;
}

// ||y - ref|| / ||ref|| minus the part the output dtype forces (||round(ref) - ref|| / ||ref||):
// a bf16 output cannot be closer than its own rounding (~1.5e-3), an fp16 one (~1.5e-4) can.
double error_beyond_rounding(const std::vector<float>& y, const std::vector<double>& ref, DType dt) {
  const double err = relative_error(y, ref);
  std::vector<float> r(ref.begin(), ref.end());
  r = cuda_test::round_to(r, dt);
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (r[i] - ref[i]) * (r[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return err - std::sqrt(num / (den > 0 ? den : 1));
}

const Backend& backend_named(const std::string& name) {
  static const std::unique_ptr<Backend> marlin = make_cuda_marlin_backend();
  static const std::unique_ptr<Backend> gemv = make_cuda_gemv_backend();
  return name == "cuda_marlin" ? *marlin : *gemv;
}

// Runs one case through prepare + forward; returns the relative error.
// The worst error over `calls` forwards of one prepared layer, each into a fresh poisoned output
// (a second call catches split-K / stream-K counters that were not reset).
double run_case(const KCase& c, uint32_t seed, int calls = 1) {
  std::mt19937 rng(seed);
  const QuantizedWeight w = make_weight(c, rng);
  const DType dt = c.bf16 ? DType::BF16 : DType::F16;
  std::uniform_real_distribution<float> xd(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(c.m * c.k));
  for (auto& v : x) v = xd(rng);
  x = cuda_test::round_to(x, dt);
  const std::vector<double> ref = reference_forward(w, x, c.m);
  const Backend& b = backend_named(c.backend);
  const DeviceInfo dev = cuda_test::gpu0();
  const Verdict v = b.check(w.spec, dev);
  EXPECT_TRUE(v.ok) << describe(c) << ": " << v.reason;
  if (!v.ok) return INFINITY;
  auto prepared = b.prepare(w, c.params, dev);
  DeviceTensor dx = DeviceTensor::upload(x, c.m, c.k, dt);
  ExecContext ec;
  double worst = 0;
  for (int i = 0; i < calls; ++i) {
    DeviceTensor dy(c.m, c.n, dt);  // poisoned with 0xFF bytes = NaN
    prepared->forward(dx.act(), dy.act(), ec);
    const double e = error_beyond_rounding(dy.download(), ref, dt);
    if (!(e <= worst)) worst = e;  // a NaN stays
  }
  return worst;
}

// Rotates M, configuration and data over the combinations so every value of every axis is hit
// several times without the full cross product (CI time).
std::vector<KCase> kernel_cases(bool short_set) {
  std::vector<KCase> out;
  const int64_t ms[] = {1, 2, 3, 8, 16, 17, 64, 129, 1024};
  // (K, N): the smallest legal size under the shared capability table (64, 64) and odd multiples.
  const int64_t shapes[][2] = {{64, 64}, {192, 192}, {320, 64}, {1088, 320}};
  int idx = 0;
  for (const auto& s : shapes)
    for (int bits : {4, 8})
      for (int g : {-1, 32, 64, 128})
        for (ZeroKind z : {ZeroKind::Symmetric, ZeroKind::Integer})
          for (bool act : {false, true})
            for (bool bf : {false, true}) {
              if (g > 0 && (s[0] % g || g >= s[0])) continue;
              if (act && g < 0) continue;
              ++idx;
              if (short_set && idx % 7) continue;
              int64_t m = ms[idx % 9];
              if (m * s[0] * s[1] > (int64_t(1) << 26)) m = ms[idx % 6];  // keep the CPU reference fast
              KCase c{"cuda_marlin", m, s[0], s[1], bits, g, z, act, bf, idx % 2 == 0, {}};
              const int cfg = idx % 6;  // auto, then each explicit tile
              if (cfg == 1) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(1)}, {"nt", int64_t(2)}};
              if (cfg == 2) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(2)}, {"nt", int64_t(2)}, {"split", int64_t(3)}};
              if (cfg == 3) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(4)}, {"nt", int64_t(2)}};
              if (cfg == 4) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(4)}, {"nt", int64_t(1)}, {"split", int64_t(2)}};
              if (cfg == 5) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(2)}, {"nt", int64_t(1)}};
              out.push_back(c);
              if (m <= 32) {
                KCase gc = c;
                gc.backend = "cuda_gemv";
                gc.params = {};
                if (idx % 3 == 1) gc.params.values = {{"wt", int64_t(4)}, {"split", int64_t(2)}};
                if (idx % 3 == 2 && gemv_bulk_here()) gc.params.values = {{"wt", int64_t(2 + 2 * (idx % 2))}, {"bulk", int64_t(1)}};
                out.push_back(gc);
              }
            }
  // Float zero points (4-bit only), every group size, act-order on/off (no GGUF type has it, the
  // kernels do not care), both dtypes, rotated over M and the tile configurations as above.
  for (const auto& s : shapes)
    for (int g : {-1, 32, 64, 128})
      for (bool act : {false, true})
        for (bool bf : {false, true}) {
          if (g > 0 && (s[0] % g || g >= s[0])) continue;
          if (act && g < 0) continue;
          ++idx;
          if (short_set && idx % 3) continue;
          int64_t m = ms[idx % 9];
          if (m * s[0] * s[1] > (int64_t(1) << 26)) m = ms[idx % 6];
          KCase c{"cuda_marlin", m, s[0], s[1], 4, g, ZeroKind::Float, act, bf, idx % 2 == 0, {}};
          const int cfg = idx % 6;
          if (cfg == 1) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(1)}, {"nt", int64_t(2)}};
          if (cfg == 2) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(2)}, {"nt", int64_t(2)}, {"split", int64_t(3)}};
          if (cfg == 3) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(4)}, {"nt", int64_t(2)}};
          if (cfg == 4) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(4)}, {"nt", int64_t(1)}, {"split", int64_t(2)}};
          if (cfg == 5) c.params.values = {{"wg", int64_t(-1)}, {"mt", int64_t(2)}, {"nt", int64_t(1)}};
          out.push_back(c);
          KCase gc = c;  // the GEMV at M <= 32 (the M of the marlin case when small, else 1..17 rotated)
          gc.backend = "cuda_gemv";
          gc.m = m <= 32 ? m : ms[idx % 6];
          gc.params = {};
          if (idx % 3 == 1) gc.params.values = {{"wt", int64_t(4)}, {"split", int64_t(2)}};
          if (idx % 3 == 2 && gemv_bulk_here()) gc.params.values = {{"wt", int64_t(2 + 2 * (idx % 2))}, {"bulk", int64_t(1)}};
          out.push_back(gc);
        }
  if (!short_set)  // every M on one shape with K a multiple of 64 but not of 128
    for (int64_t m : ms)
      for (bool bf : {false, true}) {
        out.push_back(KCase{"cuda_marlin", m, m > 64 ? 320 : 1344, 192, 4, 64, ZeroKind::Integer, true, bf, true, {}});
        if (m <= 32)
          out.push_back(KCase{"cuda_gemv", m, 1344, 192, 4, 64, ZeroKind::Integer, true, bf, true, {}});
        // GGUF Q4_1's layout: group 32, float zero points (the default model's SmolLM2 widths).
        out.push_back(
            KCase{"cuda_marlin", m, m > 64 ? 576 : 1536, m > 64 ? 192 : 576, 4, 32, ZeroKind::Float, false, bf, false, {}});
        if (m <= 32)
          out.push_back(KCase{"cuda_gemv", m, 1536, 576, 4, 32, ZeroKind::Float, false, bf, false, {}});
      }
  return out;
}

TEST(CudaKernels, AgainstCpuReferenceAtAwkwardShapes) {
  QRT_SKIP_WITHOUT_GPU();
  uint32_t seed = 1000;
  for (const KCase& c : kernel_cases(false)) {
    const double err = run_case(c, seed++);
    EXPECT_LT(err, 1e-3) << describe(c);
  }
}

// cuda_marlin's wgmma kernel (compute capability 9.0, 4-bit, symmetric or integer zeros): every
// token tile at M below, at and above it (partial M-tiles), K with an odd k64 chunk count, N not a
// multiple of the 128-row block, every group size, act-order, explicit and automatic splits, and
// stream-K.
std::vector<KCase> wgmma_cases(bool short_set) {
  std::vector<KCase> out;
  const int64_t ms[] = {1, 5, 16, 17, 33, 64, 100, 128, 129, 300};
  const int64_t shapes[][2] = {{64, 64}, {192, 192}, {320, 448}, {1088, 320}, {4096, 384}};
  int idx = 0;
  for (const auto& s : shapes)
    for (int g : {-1, 32, 64, 128})
      for (ZeroKind z : {ZeroKind::Symmetric, ZeroKind::Integer})
        for (bool act : {false, true})
          for (bool bf : {false, true}) {
            if (g > 0 && (s[0] % g || g >= s[0])) continue;
            if (act && g < 0) continue;
            ++idx;
            if (short_set && idx % 5) continue;
            int64_t m = ms[idx % 10];
            if (m * s[0] * s[1] > (int64_t(1) << 26)) m = ms[idx % 6];
            KCase c{"cuda_marlin", m, s[0], s[1], 4, g, z, act, bf, idx % 3 == 0, {}};
            const int64_t bts[] = {16, 32, 64, 128};
            const int64_t splits[] = {0, 1, 3, 0, 2};
            c.params.values = {{"wg", bts[idx % 4]}, {"split", splits[idx % 5]}};
            if (idx % 10 == 0) c.params.values["stream_k"] = int64_t(1);  // half of the short set
            out.push_back(c);
          }
  return out;
}

bool wgmma_here() { return cuda_test::gpu0().gpu.compute_capability() == 90 && cuda::wgmma_kernels_built(); }

TEST(CudaKernels, WgmmaAgainstCpuReference) {
  QRT_SKIP_WITHOUT_GPU();
  if (!wgmma_here()) GTEST_SKIP() << "the wgmma kernel runs on compute capability 9.0 in a build with sm_90a code";
  uint32_t seed = 4000;
  for (const KCase& c : wgmma_cases(false)) {
    const double err = run_case(c, seed++);
    EXPECT_LT(err, 1e-3) << describe(c);
  }
}

// The wgmma kernel's stream-K schedule: every block the same run of k128 steps across tiles, a
// tile shared by up to dozens of blocks (few tiles, long K), blocks that cover several whole tiles
// and partial ends (many tiles, short K), an odd k64 chunk count, partial M- and N-tiles, every
// group size and zero kind, both dtypes.
TEST(CudaKernels, WgmmaStreamKAgainstCpuReference) {
  QRT_SKIP_WITHOUT_GPU();
  if (!wgmma_here()) GTEST_SKIP() << "the wgmma kernel runs on compute capability 9.0 in a build with sm_90a code";
  struct Shape {
    int64_t m, k, n;
    int g;
    int64_t bt;
  };
  // Block counts for 132 SMs (H100 / H200): two blocks an SM for the 16- and 32-token tiles.
  const Shape shapes[] = {
      {40, 4096, 384, 128, 32},   // 6 tiles x 32 steps: 192 blocks of one step, 32 a tile
      {300, 192, 2048, 64, 16},   // 304 tiles x 2 steps on 264 blocks: whole tiles and partial ends
      {129, 1088, 448, 32, 64},   // 17 chunks: a half last step; partial M- and N-tiles
      {17, 2240, 1344, -1, 128},  // per-channel scales summed across segments
      {64, 1024, 12288, 128, 64}, // 96 tiles: the q/k/v width of Llama-2-7B
      {5, 576, 192, 32, 16},      // one tile, fewer steps than blocks
  };
  uint32_t seed = 5000;
  int idx = 0;
  for (const Shape& sh : shapes)
    for (ZeroKind z : {ZeroKind::Symmetric, ZeroKind::Integer})
      for (bool bf : {false, true}) {
        KCase c{"cuda_marlin", sh.m, sh.k, sh.n, 4, sh.g, z, idx % 3 == 1 && sh.g > 0, bf, idx % 2 == 0, {}};
        c.params.values = {{"wg", sh.bt}, {"stream_k", int64_t(1)}};
        ++idx;
        const double err = run_case(c, seed++, 2);
        EXPECT_LT(err, 1e-3) << describe(c) << " stream_k";
      }
}

// The layers the automatic choice would hand to the wgmma kernel can be pinned to mma.sync (wg
// -1); both match the reference on the same data.
TEST(CudaKernels, WgmmaAndMmaSyncBothMatchTheReference) {
  QRT_SKIP_WITHOUT_GPU();
  if (!wgmma_here()) GTEST_SKIP() << "the wgmma kernel runs on compute capability 9.0 in a build with sm_90a code";
  KCase wg{"cuda_marlin", 77, 2048, 512, 4, 128, ZeroKind::Integer, false, false, true, {}};
  KCase ms = wg;
  ms.params.values = {{"wg", int64_t(-1)}};
  EXPECT_LT(run_case(wg, 9), 1e-3);
  EXPECT_LT(run_case(ms, 9), 1e-3);
}

TEST(CudaKernels, SanitizerShortSet) {
  QRT_SKIP_WITHOUT_GPU();
  uint32_t seed = 77;
  for (const KCase& c : kernel_cases(true)) {
    const double err = run_case(c, seed++);
    EXPECT_LT(err, 1e-3) << describe(c);
  }
  if (wgmma_here())
    for (const KCase& c : wgmma_cases(true)) {
      const double err = run_case(c, seed++);
      EXPECT_LT(err, 1e-3) << describe(c);
    }
}

// Every case under every parameter set, each on fresh data (seeds from `first_seed` up), against
// the CPU reference.
void expect_each_matches(const std::vector<KCase>& cases, const std::vector<KernelParams>& params,
                         uint32_t first_seed) {
  uint32_t seed = first_seed;
  for (KCase c : cases)
    for (const KernelParams& p : params) {
      c.params = p;
      const double err = run_case(c, seed++);
      EXPECT_LT(err, 1e-3) << describe(c) << " params " << p.to_json();
    }
}

// The bulk-copy GEMV (sm_90): K long enough that a block's slice is split to fit 48 KB (uneven
// partitions), N not a multiple of the block's tiles, every zero kind, 4 and 8 bits, both tile
// widths, M 1..8.
TEST(CudaKernels, BulkGemvAgainstCpuReference) {
  QRT_SKIP_WITHOUT_GPU();
  if (!gemv_bulk_here()) GTEST_SKIP() << "the bulk-copy GEMV needs sm_90";
  const std::vector<KCase> cases = {
      {"cuda_gemv", 1, 5504, 1040, 4, 128, ZeroKind::Symmetric, false, false, false, {}},
      {"cuda_gemv", 8, 4096, 784, 4, 32, ZeroKind::Integer, false, true, true, {}},
      {"cuda_gemv", 3, 2048, 576, 8, -1, ZeroKind::Symmetric, false, false, false, {}},
      {"cuda_gemv", 5, 1536, 592, 4, 32, ZeroKind::Float, false, true, false, {}},
      {"cuda_gemv", 2, 3072, 208, 4, 64, ZeroKind::Integer, true, false, true, {}},
      {"cuda_gemv", 7, 11008, 96, 8, 128, ZeroKind::Integer, false, false, false, {}},
  };
  std::vector<KernelParams> params;
  for (int64_t wt : {2, 4}) params.push_back(KernelParams{{{"wt", wt}, {"bulk", int64_t(1)}}});
  expect_each_matches(cases, params, 4000);
}

// The GEMV's two and four token tiles (9 to 32 rows): partial tiles (M 9, 13, 17, 31) and full
// ones (16, 32), K long enough that the activation rows force a split (4096, 11008 with 8-bit
// codes) and short (576, unsplit), N leaving the block's second n16 tile empty (208), every zero
// kind, 4 and 8 bits, both dtypes, act-order, explicit splits 1, 2 and 4 and the automatic one.
TEST(CudaKernels, GemvTokenTilesAgainstCpuReference) {
  QRT_SKIP_WITHOUT_GPU();
  const std::vector<KCase> cases = {
      {"cuda_gemv", 9, 4096, 208, 4, 128, ZeroKind::Symmetric, false, false, false, {}},
      {"cuda_gemv", 13, 576, 1536, 4, 32, ZeroKind::Float, false, false, false, {}},
      {"cuda_gemv", 16, 1536, 576, 4, 32, ZeroKind::Float, false, true, true, {}},
      {"cuda_gemv", 17, 4096, 784, 4, 32, ZeroKind::Integer, false, true, true, {}},
      {"cuda_gemv", 24, 2048, 576, 8, -1, ZeroKind::Symmetric, false, false, false, {}},
      {"cuda_gemv", 31, 3072, 208, 4, 64, ZeroKind::Integer, true, false, true, {}},
      {"cuda_gemv", 32, 11008, 96, 8, 128, ZeroKind::Integer, false, false, false, {}},
      {"cuda_gemv", 32, 4096, 320, 4, 128, ZeroKind::Float, true, true, false, {}},
  };
  std::vector<KernelParams> params;
  for (int64_t split : {0, 1, 2, 4}) params.push_back(KernelParams{{{"wt", int64_t(2)}, {"split", split}}});
  expect_each_matches(cases, params, 5000);
}

TEST(CudaKernels, ResultsAreDeterministicAcrossCalls) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  KCase c{"cuda_marlin", 16, 1024, 576, 4, 128, ZeroKind::Symmetric, false, false, false, {}};
  c.params.values = {{"mt", int64_t(2)}, {"nt", int64_t(2)}, {"split", int64_t(4)}};
  const QuantizedWeight w = make_weight(c, rng);
  std::vector<float> x(static_cast<size_t>(c.m * c.k));
  std::uniform_real_distribution<float> xd(-1.f, 1.f);
  for (auto& v : x) v = xd(rng);
  auto prepared = backend_named(c.backend).prepare(w, c.params, cuda_test::gpu0());
  DeviceTensor dx = DeviceTensor::upload(x, c.m, c.k, DType::F16);
  std::vector<float> first;
  for (int rep = 0; rep < 3; ++rep) {
    DeviceTensor dy(c.m, c.n, DType::F16);
    prepared->forward(dx.act(), dy.act(), ExecContext{});
    const auto y = dy.download();
    if (rep == 0) first = y;
    else EXPECT_EQ(first, y) << "split-K reduction is not deterministic";
  }
}

TEST(CudaKernels, GraphCaptureAndReplay) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  KCase c{"cuda_gemv", 3, 512, 96, 4, 32, ZeroKind::Integer, true, true, true, {}};
  const QuantizedWeight w = make_weight(c, rng);
  std::vector<float> x(static_cast<size_t>(c.m * c.k));
  std::uniform_real_distribution<float> xd(-1.f, 1.f);
  for (auto& v : x) v = xd(rng);
  x = cuda_test::round_to(x, DType::BF16);
  const std::vector<double> ref = reference_forward(w, x, c.m);
  auto prepared = backend_named(c.backend).prepare(w, {}, cuda_test::gpu0());
  DeviceTensor dx = DeviceTensor::upload(x, c.m, c.k, DType::BF16);
  DeviceTensor dy(c.m, c.n, DType::BF16);
  cuda_test::run_on_stream([&](void* s) { prepared->forward(dx.act(), dy.act(), ExecContext{nullptr, s}); }, true);
  EXPECT_LT(error_beyond_rounding(dy.download(), ref, DType::BF16), 1e-3);
}

// The one-token-tile GEMV kernels stream weights through a register ring, and their speed on
// wide layers comes from three resident 256-thread blocks an SM: at most 80 registers and nothing
// in local memory. Code that runs before the ring (the fused prologues) shares those registers;
// four prologue items in flight once took them to 104-128 and every large layer of a 7B model 40 %
// longer. The 9-32-row kernels are bound to two blocks by their launch bounds.
TEST(CudaKernels, GemvKernelsKeepThreeBlocksAnSm) {
  QRT_SKIP_WITHOUT_GPU();
  std::vector<cuda::GemvKernelResources> kernels;
  ASSERT_EQ(cuda::gemv_kernel_resources(&kernels), cudaSuccess);
  ASSERT_FALSE(kernels.empty());
  for (const auto& r : kernels) {
    const std::string what = std::string(r.bf16 ? "bf16" : "fp16") + " w" + std::to_string(r.bits) + " wt" +
                             std::to_string(r.wt) + (r.fz ? " float-zero" : "") + (r.bulk ? " bulk" : "") +
                             " mt" + std::to_string(r.mt) + ": " + std::to_string(r.registers) + " registers, " +
                             std::to_string(r.local_bytes) + " bytes local";
    if (r.mt == 1) {
      EXPECT_LE(r.registers, 80) << what;
      EXPECT_EQ(r.local_bytes, 0u) << what;
    } else {
      EXPECT_LE(r.registers, 128) << what;
    }
  }
}

TEST(CudaKernels, DeclaredCapabilityMatchesTheSharedTable) {
  for (const char* name : {"cuda_marlin", "cuda_gemv"}) {
    const Backend& b = backend_named(name);
    EXPECT_EQ(b.name(), name);
    EXPECT_EQ(b.capability().min_compute_capability >= 70, true);
  }
  EXPECT_EQ(backend_named("cuda_gemv").capability().max_m, 16);
}

TEST(CudaKernels, RejectionsNameTheReason) {
  const DeviceInfo dev = target_profile("h100");  // no GPU needed: checks read the profile
  const Backend& marlin = backend_named("cuda_marlin");
  LayerSpec s = int_layer("l", 96, 64, 4, -1, ZeroKind::Symmetric);  // K not a multiple of 64
  Verdict v = marlin.check(s, dev);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("64"), std::string::npos) << v.reason;
  s = int_layer("l", 512, 64, 4, 256, ZeroKind::Symmetric);
  v = marlin.check(s, dev);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("group"), std::string::npos) << v.reason;
  // Float zero points run with 4-bit codes (and the plan says how), not with 8-bit ones.
  s = int_layer("l", 256, 64, 8, 128, ZeroKind::Float);
  v = marlin.check(s, dev);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("4-bit"), std::string::npos) << v.reason;
  s = int_layer("l", 256, 64, 4, 128, ZeroKind::Float);
  v = marlin.check(s, dev);
  EXPECT_TRUE(v.ok) << v.reason;
  EXPECT_NE(v.note.find("float zero points"), std::string::npos) << v.note;
  EXPECT_TRUE(backend_named("cuda_gemv").check(s, dev).ok);
  KernelParams bad;
  bad.values["mt"] = int64_t(3);
  EXPECT_FALSE(marlin.validate_params(s, bad).ok);
  bad.values = {{"mt", int64_t(1)}, {"nt", int64_t(1)}};
  EXPECT_FALSE(marlin.validate_params(s, bad).ok);
  bad.values = {{"tile", int64_t(2)}};
  EXPECT_FALSE(marlin.validate_params(s, bad).ok);
  // Stream-K is the wgmma kernel's schedule: not with wg -1, not 2.
  bad.values = {{"wg", int64_t(-1)}, {"stream_k", int64_t(1)}};
  EXPECT_NE(marlin.validate_params(s, bad).reason.find("stream_k"), std::string::npos);
  bad.values = {{"stream_k", int64_t(2)}};
  EXPECT_FALSE(marlin.validate_params(s, bad).ok);
  const LayerSpec int_zero = int_layer("l", 256, 64, 4, 128, ZeroKind::Integer);
  KernelParams sk;
  sk.values = {{"wg", int64_t(64)}, {"stream_k", int64_t(1)}};
  EXPECT_TRUE(marlin.validate_params(int_zero, sk).ok) << marlin.validate_params(int_zero, sk).reason;
  sk.values = {{"wg", int64_t(0)}, {"stream_k", int64_t(1)}};
  EXPECT_TRUE(marlin.validate_params(int_zero, sk).ok);
  sk.values = {{"wg", int64_t(0)}, {"stream_k", int64_t(-1)}, {"split", int64_t(4)}};
  EXPECT_TRUE(marlin.validate_params(int_zero, sk).ok);  // -1: tiles and split, never stream-K
  bad.values = {{"stream_k", int64_t(-2)}};
  EXPECT_FALSE(marlin.validate_params(s, bad).ok);
  // Every tuning candidate is valid.
  for (int64_t m : {1, 16, 64, 1024})
    for (const KernelParams& p : marlin.tuning_space(s, m, dev)) EXPECT_TRUE(marlin.validate_params(s, p).ok) << p.to_json();
  // Where the wgmma kernel runs, qrt tune also times its stream-K schedule.
  if (cuda::wgmma_kernels_built()) {
    bool has_stream_k = false;
    for (const KernelParams& p : marlin.tuning_space(int_zero, 64, dev)) has_stream_k |= p.get_int("stream_k", 0) == 1;
    EXPECT_TRUE(has_stream_k);
  }
  const Backend& gemv = backend_named("cuda_gemv");
  for (const KernelParams& p : gemv.tuning_space(s, 4, dev)) EXPECT_TRUE(gemv.validate_params(s, p).ok) << p.to_json();
  // 9 to 32 rows: one kernel shape, so the split alone.
  const std::vector<KernelParams> many = gemv.tuning_space(s, 9, dev);
  EXPECT_EQ(many.size(), 4u);
  for (const KernelParams& p : many) {
    EXPECT_TRUE(gemv.validate_params(s, p).ok) << p.to_json();
    EXPECT_EQ(p.get_int("wt", 0), 2) << p.to_json();
    EXPECT_EQ(p.get_int("bulk", 0), 0) << p.to_json();
  }
  EXPECT_TRUE(gemv.tuning_space(s, 33, dev).empty());
  // The default: the bulk-copy kernel for small layers (at most 4 MB of codes) up to 8 rows on
  // sm_90, the register-ring one for larger layers, more rows and older GPUs.
  const LayerSpec small = int_layer("small", 576, 3072, 4, 32, ZeroKind::Float);
  const LayerSpec large = int_layer("large", 4096, 4096, 4, 128, ZeroKind::Integer, true);
  EXPECT_EQ(gemv.default_params(small, 1, dev).get_int("bulk", 0), 1);
  EXPECT_EQ(gemv.default_params(small, 8, dev).get_int("bulk", 0), 1);
  EXPECT_EQ(gemv.default_params(small, 9, dev).get_int("bulk", 0), 0);
  EXPECT_EQ(gemv.default_params(large, 1, dev).get_int("bulk", 0), 0);
  EXPECT_EQ(gemv.default_params(small, 1, target_profile("a100")).get_int("bulk", 0), 0);
  EXPECT_TRUE(gemv.validate_params(small, gemv.default_params(small, 1, dev)).ok);
  // sm_75 is refused with the reason.
  const DeviceInfo t4 = target_profile("t4");
  EXPECT_FALSE(marlin.check(int_layer("l", 256, 64, 4, 128, ZeroKind::Symmetric), t4).ok);
  EXPECT_FALSE(gemv.check(int_layer("l", 256, 64, 4, 128, ZeroKind::Symmetric), t4).ok);
  EXPECT_TRUE(marlin.check(int_layer("l", 4096, 4096, 4, 128, ZeroKind::Integer, true), dev).ok);
}

// The packed layout, decoded on the host exactly as a lane's registers are used by the kernels
// (int4_int8_device.cuh): every nibble / byte must be the code of the (row, column) the MMA fragment
// puts it at, after the act-order sort.
TEST(CudaKernelsPack, LayoutMatchesTheFragmentMapping) {
  std::mt19937 rng(3);
  for (int bits : {4, 8}) {
    KCase c{"cuda_marlin", 1, 256, 48, bits, 64, ZeroKind::Integer, true, false, true, {}};
    const QuantizedWeight w = make_weight(c, rng);
    const cuda::Int4PackedHost p = cuda::pack_int4_host(w);
    ASSERT_EQ(p.perm.size(), 256u);
    for (int64_t i = 1; i < 256; ++i) ASSERT_LE(w.g_idx[p.perm[i - 1]], w.g_idx[p.perm[i]]);
    auto code = [&](int64_t n, int64_t ks) { return static_cast<uint32_t>(w.codes[n * 256 + p.perm[ks]]); };
    const int per_chunk = 32 * bits / 4;
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t ch = 0; ch < 4; ++ch)
        for (int lane = 0; lane < 32; ++lane)
          for (int j = 0; j < 4; ++j) {
            const int64_t r = 16 * t + lane / 4;
            const int64_t ka = 64 * ch + 32 * (j / 2) + 8 * (lane % 4) + 4 * (j % 2);
            const uint32_t* piece = p.words.data() + (t * 4 + ch) * per_chunk * 4;
            // A registers: (row r, cols ka, ka+1), (r+8, ka..), (r, ka+2..), (r+8, ka+2..)
            const int64_t rows[4] = {r, r + 8, r, r + 8}, cols[4] = {ka, ka, ka + 2, ka + 2};
            for (int reg = 0; reg < 4; ++reg)
              for (int half = 0; half < 2; ++half) {
                uint32_t got;
                if (bits == 4) {
                  got = (piece[lane * 4 + j] >> (4 * reg + 16 * half)) & 0xF;
                } else {
                  const uint32_t* v = piece + ((j / 2) * 32 + lane) * 4 + 2 * (j % 2);
                  const uint32_t word = reg < 2 ? v[0] : v[1];
                  got = (word >> (8 * (2 * (reg & 1) + half))) & 0xFF;
                }
                ASSERT_EQ(got, code(rows[reg], cols[reg] + half))
                    << "bits " << bits << " tile " << t << " chunk " << ch << " lane " << lane << " step " << j;
              }
          }
    // Scale / zero pairs: (row p, row p + 8) of each n16 tile, power of two folded out.
    for (int g = 0; g < 4; ++g)
      for (int64_t n = 0; n < 48; ++n) {
        const size_t at = static_cast<size_t>(g) * 48 + (n / 16) * 16 + 2 * (n % 8) + (n % 16) / 8;
        EXPECT_NEAR(fp16_to_f32(p.scales[at]) * p.scale_mul, w.scales[n * 4 + g], w.scales[n * 4 + g] * 1e-3);
        EXPECT_EQ(p.zeros[at], static_cast<uint8_t>(w.zeros[n * 4 + g]));
      }
  }
}

// Packing then unpacking (unpack_int4_host reads the words, fp16 scales, zeros and offsets the way
// the kernels do) reproduces the reference dequantizer bit for bit when the scales and float zero
// points are fp16 numbers (as GPTQ's and GGUF's are), for every zero kind, group and act-order.
TEST(CudaKernelsPack, UnpackIsBitExactForFp16ScalesAndOffsets) {
  std::mt19937 rng(21);
  for (int bits : {4, 8})
    for (ZeroKind z : {ZeroKind::Symmetric, ZeroKind::Integer, ZeroKind::Float})
      for (int g : {-1, 32, 128})
        for (bool act : {false, true}) {
          if ((z == ZeroKind::Float && bits != 4) || (act && g < 0)) continue;
          KCase c{"cuda_marlin", 1, 256, 48, bits, g, z, act, false, false, {}};
          QuantizedWeight w = make_weight(c, rng);
          for (auto& v : w.scales) v = fp16_to_f32(f32_to_fp16(v));
          const std::vector<float> ref = dequantize_reference(w);
          const std::vector<float> got = cuda::unpack_int4_host(cuda::pack_int4_host(w));
          ASSERT_EQ(got.size(), ref.size());
          size_t bad = 0;
          for (size_t i = 0; i < ref.size(); ++i) bad += got[i] != ref[i];
          EXPECT_EQ(bad, 0u) << describe(c);
        }
}

// Scales and float zero points that are not fp16 numbers (GGUF Q4_K's d * sc and dmin * m) are
// rounded to the nearest fp16 once, after a power of two is folded out: each weight then differs
// from the reference by at most 2^-11 of |scale * (q - z)| + |offset| (plus fp32 rounding).
TEST(CudaKernelsPack, UnpackWithinFp16RoundingOtherwise) {
  std::mt19937 rng(22);
  KCase c{"cuda_marlin", 1, 256, 64, 4, 32, ZeroKind::Float, false, false, false, {}};
  QuantizedWeight w = make_weight(c, rng);
  std::uniform_real_distribution<float> any(0.001f, 0.05f);
  for (auto& v : w.scales) v = any(rng);   // not fp16 numbers
  for (auto& v : w.zeros) v = -any(rng);
  const std::vector<float> ref = dequantize_reference(w);
  const std::vector<float> got = cuda::unpack_int4_host(cuda::pack_int4_host(w));
  for (int64_t n = 0; n < 64; ++n)
    for (int64_t k = 0; k < 256; ++k) {
      const size_t i = static_cast<size_t>(n * 256 + k);
      const float s = w.scales[n * 8 + k / 32], b = w.zeros[n * 8 + k / 32];
      const float bound = std::ldexp(std::fabs(s) * w.codes[i] + std::fabs(b), -11) + 1e-7f;
      ASSERT_LE(std::fabs(got[i] - ref[i]), bound) << "n " << n << " k " << k;
    }
}

// The GGUF types on the fast paths, from random blocks through the GGUF codec: Q4_0, Q4_1 and Q8_0
// (fp16 d and m) repack losslessly, Q4_K within the fp16 rounding of d * sc and dmin * m; the
// layouts are the int4/int8 kernels' (4-bit g32 symmetric / float zero, 8-bit g32 symmetric). Q6_K
// (group 16) is refused with the reason: it stays on cuda_dequant.
TEST(CudaKernelsPack, GgufTypesRepackAgainstTheCpuDecode) {
  struct G {
    GgmlType type;
    bool exact;
  };
  for (const G& t : {G{GgmlType::Q4_0, true}, G{GgmlType::Q4_1, true}, G{GgmlType::Q8_0, true},
                     G{GgmlType::Q4_K, false}}) {
    SCOPED_TRACE(ggml_type_name(t.type));
    const int64_t k = 512, n = 48;
    const std::vector<uint8_t> blocks = test::random_gguf_blocks(t.type, k, n, 31);
    std::vector<float> decoded(static_cast<size_t>(n * k));
    quant::gguf_dequantize(t.type, blocks, decoded);
    const QuantizedWeight w = quant::gguf_to_quantized_weight(t.type, blocks, k, n, "gguf.layer");
    ASSERT_EQ(cuda::int4_pack_rejection(w.spec), "");
    const cuda::Int4PackedHost p = cuda::pack_int4_host(w);
    EXPECT_EQ(p.float_zero, w.spec.zero_kind == ZeroKind::Float);
    EXPECT_EQ(p.group_size, 32);
    const std::vector<float> got = cuda::unpack_int4_host(p);
    const int64_t gs = w.spec.group_size;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < k; ++i) {
        const size_t at = static_cast<size_t>(r * k + i);
        if (t.exact) {
          ASSERT_EQ(got[at], decoded[at]) << "row " << r << " col " << i;
        } else {
          const size_t gi = static_cast<size_t>(r * (k / gs) + i / gs);
          const float bound =
              std::ldexp(std::fabs(w.scales[gi]) * w.codes[at] + std::fabs(w.zeros[gi]), -11) + 1e-7f;
          ASSERT_LE(std::fabs(got[at] - decoded[at]), bound) << "row " << r << " col " << i;
        }
      }
  }
  const QuantizedWeight q6 = test::random_gguf_weight(GgmlType::Q6_K, 256, 16, 5);
  EXPECT_NE(cuda::int4_pack_rejection(q6.spec), "");
}

// The default model's tensors (Q4_1 blocks and the Q8_0 embedding used as the head), when the test
// environment names it: the first block's seven linears repack bit for bit.
TEST(CudaKernelsPack, DefaultModelLayersRepackExactly) {
  const char* path = std::getenv("QRT_DEFAULT_MODEL");
  if (!path || !*path) GTEST_SKIP() << "QRT_DEFAULT_MODEL not set (scripts/test.sh sets it)";
  const GgufFile file = GgufFile::open(path);
  int checked = 0;
  for (const GgufTensorInfo& info : file.tensors()) {
    if (info.name.rfind("blk.0.", 0) != 0 || !quant::gguf_has_canonical_form(info.type)) continue;
    SCOPED_TRACE(info.name);
    const QuantizedWeight w = quant::gguf_to_quantized_weight(file, info);
    ASSERT_EQ(cuda::int4_pack_rejection(w.spec), "");
    const std::vector<float> ref = dequantize_reference(w);
    const std::vector<float> got = cuda::unpack_int4_host(cuda::pack_int4_host(w));
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); ++i) bad += got[i] != ref[i];
    EXPECT_EQ(bad, 0u);
    ++checked;
  }
  EXPECT_EQ(checked, 7);
}

TEST(CudaKernelsPack, SplitHeuristicBalancesAndRespectsLimits) {
  // 32 output tiles, 64 k64 chunks, 132 SMs: a split is worth it; 4 partitions fill 128 SMs.
  EXPECT_EQ(cuda::choose_split(32, 64, 132, 1 << 20, 2), 4);
  // Whole waves of tiles already: no split; 400 tiles (3.03 waves) are better cut in 8.
  EXPECT_EQ(cuda::choose_split(396, 64, 132, 1 << 20, 2), 1);
  EXPECT_EQ(cuda::choose_split(400, 64, 132, 1 << 20, 2), 8);
  // Never more partial tiles than the workspace holds, never an empty partition.
  EXPECT_EQ(cuda::choose_split(32, 64, 132, 40, 2), 1);
  for (int64_t chunks : {1, 2, 3, 7, 172})
    for (int64_t base : {1, 5, 32, 96, 172}) {
      const int s = cuda::choose_split(base, chunks, 132, 1 << 20, 2);
      EXPECT_GE(s, 1);
      int64_t per = (chunks + s - 1) / s;
      per = (per + 1) / 2 * 2;
      EXPECT_EQ((chunks + per - 1) / per, s) << base << " " << chunks;
    }
  // A split-K launch fits when its partial tiles fit the floats and its tiles the counters;
  // one partition needs no scratch at all.
  EXPECT_TRUE(cuda::split_k_fits(100, 4, 1024, 100 * 4 * 1024, 100));
  EXPECT_FALSE(cuda::split_k_fits(100, 4, 1024, 100 * 4 * 1024 - 1, 100));
  EXPECT_FALSE(cuda::split_k_fits(101, 2, 1024, 1 << 30, 100));
  EXPECT_TRUE(cuda::split_k_fits(1 << 20, 1, 1024, 0, 0));
  // Stream-K: two partial tiles a block of the grid, one counter a tile.
  EXPECT_TRUE(cuda::stream_k_fits(172, 132, 128 * 128, cuda::int4_max_partial_tiles(132) * cuda::int4_max_tile_floats(),
                                  cuda::int4_counter_count(132)));
  EXPECT_TRUE(cuda::stream_k_fits(10, 100, 1024, 200 * 1024, 10));
  EXPECT_FALSE(cuda::stream_k_fits(10, 100, 1024, 200 * 1024 - 1, 10));
  EXPECT_FALSE(cuda::stream_k_fits(11, 100, 1024, 1 << 30, 10));
  // The automatic schedule (measured on an H100, 2026-12-07): stream-K where a split's blocks take
  // several waves (N 12288 M 64: 96 tiles x split 4 on 132 SMs, 1.19x) or whole tiles fill their
  // waves less than 3/4 (N 22016 M 128: 172 tiles, 1.24x); never in one wave (N 4096 M 64, 32
  // tiles x split 4: 0.95x; N 12288 M 128, 96 whole tiles: 0.90x); not for nearly full waves
  // (N 12288 M 1024: 768 tiles, 0.97x).
  EXPECT_TRUE(cuda::prefer_stream_k(96, 4, 132));
  EXPECT_TRUE(cuda::prefer_stream_k(172, 16, 132));
  EXPECT_TRUE(cuda::prefer_stream_k(172, 1, 132));
  EXPECT_TRUE(cuda::prefer_stream_k(192, 1, 132));
  EXPECT_FALSE(cuda::prefer_stream_k(32, 4, 132));
  EXPECT_FALSE(cuda::prefer_stream_k(32, 8, 264));
  EXPECT_FALSE(cuda::prefer_stream_k(96, 1, 132));
  EXPECT_FALSE(cuda::prefer_stream_k(344, 1, 132));
  EXPECT_FALSE(cuda::prefer_stream_k(768, 1, 132));
  EXPECT_FALSE(cuda::prefer_stream_k(10, 2, 0));
  // Rejections of the packer name the reason.
  EXPECT_NE(cuda::int4_pack_rejection(int_layer("l", 96, 64, 4, -1, ZeroKind::Symmetric)).find("64"),
            std::string::npos);
  EXPECT_NE(cuda::int4_pack_rejection(int_layer("l", 256, 64, 3, 64, ZeroKind::Symmetric)).find("bit"),
            std::string::npos);
}

// cuda_dequant's host packing (rows packed on several threads, 64 rows a task): every code of every
// width reads back from its runs of 32 codes in `bits` words, at a K that is no multiple of 32 and
// rows enough for several tasks.
TEST(CudaKernelsPack, DequantCodesReadBackAtEveryWidth) {
  std::mt19937 rng(41);
  for (int bits = 1; bits <= 8; ++bits) {
    const int64_t N = 200, K = 100;
    QuantizedWeight w;
    w.spec = int_layer("l", K, N, bits, -1, ZeroKind::Symmetric);
    w.codes.resize(static_cast<size_t>(N * K));
    std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
    for (auto& c : w.codes) c = static_cast<uint8_t>(code(rng));
    int64_t row_words = 0;
    const std::vector<uint32_t> packed = cuda::pack_codes(w, &row_words);
    ASSERT_EQ(row_words, (K + 31) / 32 * bits);
    ASSERT_EQ(packed.size(), static_cast<size_t>(N * row_words));
    size_t bad = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const uint32_t* base = packed.data() + n * row_words + (k / 32) * bits;
        const int pos = static_cast<int>(k % 32) * bits;
        uint64_t v = base[pos / 32] >> (pos % 32);
        if (pos % 32 + bits > 32) v |= static_cast<uint64_t>(base[pos / 32 + 1]) << (32 - pos % 32);
        bad += (v & ((1u << bits) - 1)) != w.codes[static_cast<size_t>(n * K + k)];
      }
    EXPECT_EQ(bad, 0u) << bits << " bits";
  }
}

}  // namespace
}  // namespace qrt

#else

TEST(CudaKernels, SkippedInCpuOnlyBuild) { GTEST_SKIP() << "built without CUDA (QRT_WITH_CUDA off)"; }

#endif
