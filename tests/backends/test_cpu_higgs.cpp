// cpu_higgs against a float reference built from qrt::dequantize_reference (W = V H) on HIGGS
// weights made by quant::higgs_quantize from seeded random floats: p = 1 and 2, 2 and 4 bits,
// group scales and one group per row, bias, M across the 16-row activation chunk (1, 3, 16, 17,
// 40), every tile_n, with and without a thread pool. Bound: relative error < 1e-5 (both sum
// float32 products; the rotation moves from the weight to the activations). And a HIGGS
// checkpoint's tune_metadata becomes tile_n, FLUTE's packing tile in rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/backend_factories.h"
#include "qrt/backend.h"
#include "qrt/device.h"
#include "qrt/quant_config.h"
#include "qrt/runtime_config.h"
#include "qrt/thread_pool.h"
#include "quant/higgs_quantize.h"

namespace qrt {
namespace {

QuantizedWeight higgs_weight(int bits, int p, int group, int hadamard, int64_t n, int64_t k, bool bias, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = normal(rng);
  quant::HiggsQuantizeSettings s;
  s.bits = bits;
  s.p = p;
  s.group_size = group;
  s.hadamard_size = hadamard;
  s.grid = quant::higgs_gaussian_grid(bits, p, DType::F16);
  QuantizedWeight q = quant::higgs_quantize("layer", w.data(), n, k, s);
  if (bias) {
    q.bias.resize(static_cast<size_t>(n));
    for (auto& v : q.bias) v = normal(rng) * 10;
    q.spec.has_bias = true;
  }
  return q;
}

std::vector<float> reference(const QuantizedWeight& w, const std::vector<float>& x, int64_t m) {
  const std::vector<float> d = dequantize_reference(w);
  std::vector<float> y(static_cast<size_t>(m * w.N()));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t n = 0; n < w.N(); ++n) {
      double acc = w.bias.empty() ? 0.0 : w.bias[n];
      for (int64_t c = 0; c < w.K(); ++c) acc += static_cast<double>(x[r * w.K() + c]) * d[n * w.K() + c];
      y[r * w.N() + n] = static_cast<float>(acc);
    }
  return y;
}

TEST(CpuHiggs, MatchesTheDequantizedReference) {
  const auto be = make_cpu_higgs_backend();
  ThreadPool pool(2);
  struct Case { int bits, p, group, hadamard; int64_t n, k; bool bias; };
  const Case cases[] = {{4, 2, 64, 128, 96, 256, true}, {4, 1, 128, 128, 40, 384, false},
                        {2, 2, 64, 64, 64, 64, true}, {2, 1, 256, 512, 24, 512, false}};
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const QuantizedWeight w = higgs_weight(c.bits, c.p, c.group, c.hadamard, c.n, c.k, c.bias, seed++);
    for (int64_t m : {1, 3, 16, 17, 40}) {
      std::mt19937 rng(seed++);
      std::normal_distribution<float> normal(0.f, 1.f);
      std::vector<float> x(static_cast<size_t>(m * c.k));
      for (auto& v : x) v = normal(rng);
      const std::vector<float> ref = reference(w, x, m);
      for (int64_t tile : {8, 64, 512}) {
        for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
          SCOPED_TRACE(::testing::Message() << c.bits << "-bit p" << c.p << " g" << c.group << " N" << c.n << " K"
                                            << c.k << " M" << m << " tile_n " << tile << (tp ? " pool" : ""));
          KernelParams params;
          params.values["tile_n"] = tile;
          auto prepared = be->prepare(w, params, PrepareContext(probe_cpu()));
          std::vector<float> y(static_cast<size_t>(m * c.n), std::nanf(""));
          ActTensor xt{x.data(), DType::F32, m, c.k};
          ActTensor yt{y.data(), DType::F32, m, c.n};
          ExecContext ctx;
          ctx.pool = tp;
          prepared->forward(xt, yt, ctx);
          double e = 0, r = 0;
          for (size_t i = 0; i < y.size(); ++i) {
            ASSERT_TRUE(std::isfinite(y[i])) << "element " << i;
            e += (static_cast<double>(y[i]) - ref[i]) * (static_cast<double>(y[i]) - ref[i]);
            r += static_cast<double>(ref[i]) * ref[i];
          }
          EXPECT_LT(std::sqrt(e / r), 1e-5);
          // One byte per grid vector, not four per value.
          EXPECT_LT(prepared->weight_bytes(), c.n * c.k / c.p + c.n * (c.k / c.group + 1) * 4 + 4096);
        }
      }
    }
  }
}

// A spec whose group is wider than the row (qrt quantize writes one scale per row as group -1,
// but a spec may say 128 for K = 64): the same result as the one-group weight, no read past the
// row's codes.
TEST(CpuHiggs, AGroupWiderThanTheRowIsOneGroup) {
  const auto be = make_cpu_higgs_backend();
  QuantizedWeight w = higgs_weight(2, 2, 64, 64, 16, 64, true, 7);
  ASSERT_EQ(w.spec.group_size, -1) << "the quantizer writes one group per row";
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(3 * 64));
  for (auto& v : x) v = normal(rng);
  const std::vector<float> ref = reference(w, x, 3);
  w.spec.group_size = 128;
  w.validate();
  auto prepared = be->prepare(w, {}, PrepareContext(probe_cpu()));
  std::vector<float> y(static_cast<size_t>(3 * 16), std::nanf(""));
  ActTensor xt{x.data(), DType::F32, 3, 64};
  ActTensor yt{y.data(), DType::F32, 3, 16};
  prepared->forward(xt, yt, ExecContext{});
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-4f * (1.f + std::fabs(ref[i]))) << i;
}

TEST(CpuHiggs, ParametersAndWhatItRuns) {
  const auto be = make_cpu_higgs_backend();
  const QuantizedWeight w = higgs_weight(4, 2, 64, 64, 32, 64, false, 9);
  EXPECT_TRUE(be->check(w.spec, probe_cpu()).ok);
  LayerSpec gptq = w.spec;
  gptq.encoding = WeightEncoding::IntAffine;
  gptq.codebook.clear();
  gptq.codebook_dim = 1;
  gptq.hadamard_size = 0;
  EXPECT_FALSE(be->check(gptq, probe_cpu()).ok);
  KernelParams bad;
  bad.values["tile_n"] = int64_t{48};
  EXPECT_NE(be->validate_params(w.spec, bad).reason.find("tile_n' = 48"), std::string::npos);
  KernelParams unknown;
  unknown.values["template_id"] = int64_t{16};
  EXPECT_NE(be->validate_params(w.spec, unknown).reason.find("unknown parameter 'template_id'"), std::string::npos);
  EXPECT_EQ(be->default_params(w.spec, 1, probe_cpu()).get_int("tile_n", 0), 64);
}

// FLUTE's tune_metadata entry of each layer: the template's packing tile (32 or 64 words of
// 16 / bits values) becomes tile_n; FLUTE's shape and GPU keys are not kernel parameters.
TEST(CpuHiggs, TuneMetadataSetsTheTile) {
  auto runtime = [](int bits, int template_id, const char* extra) {
    const std::string meta = "{\"M\": 1, \"N\": 256, \"K\": 256, \"num_bits\": " + std::to_string(bits) +
                             ", \"group_size\": 64, \"num_sms\": 132, \"dtype\": \"torch.float16\", \"device\": "
                             "\"cuda:0\", \"template_id\": " + std::to_string(template_id) + extra + "}";
    return checkpoint_runtime(parse_quantization_config(
        "{\"quant_method\": \"higgs\", \"bits\": " + std::to_string(bits) +
        ", \"p\": 2, \"group_size\": 64, \"hadamard_size\": 256, \"tune_metadata\": {\"model.layers.0.mlp.up_proj\": " +
        meta + "}}"));
  };
  EXPECT_EQ(runtime(4, 16, "").tune_metadata.at("model.layers.0.mlp.up_proj"), R"({"tile_n":128})");
  EXPECT_EQ(runtime(4, 0, "").tune_metadata.at("model.layers.0.mlp.up_proj"), R"({"tile_n":256})");
  EXPECT_EQ(runtime(2, 4, "").tune_metadata.at("model.layers.0.mlp.up_proj"), R"({"tile_n":256})");
  // A tile written for qrt wins over the template's.
  EXPECT_EQ(runtime(4, 16, ", \"tile_n\": 32").tune_metadata.at("model.layers.0.mlp.up_proj"), R"({"tile_n":32})");
  // Through the runtime config: a per-layer kernel parameter of the checkpoint.
  RuntimeConfig c = build_runtime_config(runtime(4, 16, ""), "", CliOverrides{});
  const LayerOverride* o = c.checkpoint_params_for("model.layers.0.mlp.up_proj");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->params.get_int("tile_n", 0), 128);
}

}  // namespace
}  // namespace qrt
