// HIGGS quantization (quant/higgs_quantize.h): the Gaussian grids reach the known Lloyd-Max
// distortions, and a weight quantized, packed in FLUTE's layout and decoded again comes back with
// the same codes and scales and within the grid's error of the original (dequantize_reference,
// the decoder checked against numpy fixtures in test_fixtures.cpp, undoes the rotation).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qrt/error.h"
#include "qrt/quant_config.h"
#include "quant/formats/codecs.h"
#include "quant/higgs_quantize.h"

using namespace qrt;

namespace {

// Max's 1960 table of optimal quantizers for the unit Gaussian: levels and mean squared error.
TEST(HiggsGrid, ScalarGridsAreLloydMaxQuantizers) {
  const std::vector<float> g2 = quant::higgs_gaussian_grid(2, 1, DType::F32);
  ASSERT_EQ(g2.size(), 4u);
  EXPECT_NEAR(g2[0], -1.510f, 1e-3f);
  EXPECT_NEAR(g2[1], -0.4528f, 1e-4f);
  EXPECT_NEAR(g2[2], 0.4528f, 1e-4f);
  EXPECT_NEAR(g2[3], 1.510f, 1e-3f);
  EXPECT_NEAR(quant::higgs_grid_mse(g2, 1, 200000), 0.1175, 0.002);
  const std::vector<float> g4 = quant::higgs_gaussian_grid(4, 1, DType::F32);
  ASSERT_EQ(g4.size(), 16u);
  EXPECT_NEAR(g4[15], 2.733f, 2e-3f);
  EXPECT_NEAR(g4[8], 0.1284f, 2e-4f);
  EXPECT_NEAR(quant::higgs_grid_mse(g4, 1, 200000), 0.009497, 0.0003);
  // F16 storage changes the grid by at most half an f16 step.
  const std::vector<float> h4 = quant::higgs_gaussian_grid(4, 1, DType::F16);
  for (size_t i = 0; i < g4.size(); ++i) EXPECT_NEAR(h4[i], g4[i], std::fabs(g4[i]) * 0x1.0p-11f);
}

// A grid of pairs quantizes Gaussian pairs better than the product of two scalar grids of the
// same bits per value (the point of p = 2), and is the same grid on every call.
TEST(HiggsGrid, PairGridsBeatTheScalarProduct) {
  for (int bits : {2, 4}) {
    SCOPED_TRACE(bits);
    const std::vector<float> pair = quant::higgs_gaussian_grid(bits, 2, DType::F16);
    ASSERT_EQ(pair.size(), (size_t{1} << (2 * bits)) * 2);
    EXPECT_EQ(pair, quant::higgs_gaussian_grid(bits, 2, DType::F16));
    const double scalar_mse = bits == 2 ? 0.1175 : 0.009497;
    const double pair_mse = quant::higgs_grid_mse(pair, 2, 100000);
    EXPECT_LT(pair_mse, 0.97 * scalar_mse);
    EXPECT_GT(pair_mse, 0.80 * scalar_mse);   // 2-D cells gain a few percent, not more
  }
}

std::vector<float> random_weight(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    const float row_scale = 0.01f * (1 + r % 7);   // rows of different magnitude
    for (int64_t c = 0; c < k; ++c) {
      float v = normal(rng) * row_scale;
      if ((r * k + c) % 97 == 0) v *= 8;          // outliers the rotation spreads out
      w[r * k + c] = v;
    }
  }
  return w;
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0, r = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    r += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(e / r);
}

TEST(HiggsQuantize, RoundTripsThroughFluteLayoutWithinTheGridError) {
  struct Case { int bits, p, group, hadamard; int64_t n, k; };
  for (const Case& c : {Case{4, 2, 64, 128, 256, 256}, Case{4, 1, 128, 256, 128, 512}, Case{2, 2, 64, 64, 256, 192}}) {
    SCOPED_TRACE(::testing::Message() << c.bits << "-bit p" << c.p << " g" << c.group << " h" << c.hadamard);
    const std::vector<float> w = random_weight(c.n, c.k, 7);
    quant::HiggsQuantizeSettings s;
    s.bits = c.bits;
    s.p = c.p;
    s.group_size = c.group;
    s.hadamard_size = c.hadamard;
    s.dtype = DType::F16;
    s.grid = quant::higgs_gaussian_grid(c.bits, c.p, DType::F16);
    const QuantizedWeight q = quant::higgs_quantize("layer", w.data(), c.n, c.k, s);
    EXPECT_EQ(q.spec.encoding, WeightEncoding::RotatedCodebook);

    // Through the folder's tensors and tune_metadata, as qrt quantize writes them and the loader reads them.
    HiggsConfig cfg;
    cfg.bits = c.bits;
    cfg.p = c.p;
    cfg.group_size = c.group;
    cfg.hadamard_size = c.hadamard;
    quant::HiggsLayout layout;
    layout.bits = c.bits;
    layout.p = c.p;
    layout.group_size = c.group;
    layout.hadamard_size = c.hadamard;
    layout.template_id = c.bits == 4 ? 16 : 4;
    layout.num_sms = 132;
    const std::string meta = quant::higgs_tune_metadata_json(layout, c.n, c.k, "torch.float16");
    const quant::HiggsLayout read = quant::higgs_layout("layer", cfg, &meta, c.n, c.k);
    EXPECT_EQ(read.tile_p, 32);
    const auto encoded = quant::encode_higgs(q, read, DType::F16);
    const QuantizedWeight back = quant::decode_higgs("layer", quant::parts_of(encoded, "layer"), read, c.n, c.k);
    EXPECT_EQ(back.codes, q.codes);
    EXPECT_EQ(back.scales, q.scales);
    EXPECT_EQ(back.spec.codebook, q.spec.codebook);

    // The error is the grid's on Gaussian values (scales refitted by least squares do no worse),
    // with a margin for the non-Gaussian rows.
    const double grid_rms = std::sqrt(quant::higgs_grid_mse(s.grid, c.p, 100000));
    const double err = relative_error(dequantize_reference(back), w);
    EXPECT_LT(err, 1.05 * grid_rms) << "grid rms " << grid_rms;
    EXPECT_GT(err, 0.5 * grid_rms);   // a real quantization, not a copy
  }
}

TEST(HiggsQuantize, ZeroGroupsAndBadInputs) {
  quant::HiggsQuantizeSettings s;
  s.bits = 4;
  s.p = 2;
  s.group_size = 64;
  s.hadamard_size = 64;
  s.grid = quant::higgs_gaussian_grid(4, 2, DType::F16);
  std::vector<float> w(static_cast<size_t>(128 * 128), 0.f);
  for (int64_t c = 64; c < 128; ++c) w[c] = 0.01f * static_cast<float>(c % 5);   // row 0: group 0 is zero
  const QuantizedWeight q = quant::higgs_quantize("m", w.data(), 128, 128, s);
  EXPECT_EQ(q.scales[0], 0.f);
  const std::vector<float> d = dequantize_reference(q);
  for (int64_t c = 0; c < 64; ++c) EXPECT_EQ(d[c], 0.f);
  EXPECT_GT(q.scales[1], 0.f);
  for (int64_t i = 128; i < 128 * 128; ++i) ASSERT_EQ(d[i], 0.f);   // zero rows stay exactly zero

  auto message = [&](std::function<void()> f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
      return e.what();
    }
    return "no error";
  };
  w[5] = std::nanf("");
  EXPECT_NE(message([&] { quant::higgs_quantize("m", w.data(), 128, 128, s); }).find("m: weight element 5 is NaN"),
            std::string::npos);
  w[5] = 0;
  EXPECT_NE(message([&] { quant::higgs_quantize("m", w.data(), 128, 96, s); }).find("hadamard_size 64 is not a power of 2 dividing in_features 96"),
            std::string::npos);
  quant::HiggsQuantizeSettings three = s;
  three.bits = 3;
  EXPECT_NE(message([&] { quant::higgs_quantize("m", w.data(), 128, 128, three); }).find("bits 3"), std::string::npos);
  w[7] = 1e30f;   // a scale beyond f16
  EXPECT_NE(message([&] { quant::higgs_quantize("m", w.data(), 128, 128, s); }).find("beyond the range of F16"),
            std::string::npos);
}

}  // namespace
