// Calibrated quantization on a tiny random model written as a Hugging Face folder:
// - the model-sampled calibration text: at a near-zero temperature it is the engine's greedy
//   decoding; sequences are deterministic per seed and start with the start token;
// - GPTQ and AWQ through the registered calibrator: every linear quantized, AWQ's scales folded
//   into the RMSNorm weights, and the quantized model's logits on text it was not calibrated on
//   closer to the float model's than round-to-nearest's.
#include <gtest/gtest.h>

#include <algorithm>

#include "model/calibration_samples.h"
#include "qrt/checkpoint.h"
#include "qrt/thread_pool.h"
#include "quant/calibration.h"
#include "quant/rtn.h"
#include "synthetic_folder.h"

namespace qrt {
namespace {

class Calibration : public SyntheticFolder {
 protected:
  void SetUp() override {
    SyntheticFolder::SetUp();
    // A few strong input channels, as real models have (RMSNorm weights with outliers): what
    // activation-aware scaling is for.
    for (auto& l : weights_->layers)
      for (int64_t c = 3; c < weights_->config.hidden_size; c += 11) {
        l.input_norm[c] *= 8.0f;
        l.post_attention_norm[c] *= 8.0f;
      }
    nlohmann::json config = tiny_config_json(weights_->config);
    config["bos_token_id"] = 1;
    write(config);
  }

  // Logits of the float model with every block linear replaced by `linears` (dequantized) and the
  // norms by `norms`, over `tokens`.
  std::vector<float> logits_with(const std::map<std::string, QuantizedWeight>& linears,
                                 const std::map<std::string, std::vector<float>>& norms,
                                 const std::vector<int32_t>& tokens) {
    auto w = std::make_shared<ModelWeights>(*load_model(dir_.string()));
    for (size_t i = 0; i < w->layers.size(); ++i) {
      auto& l = w->layers[i];
      const std::string p = "model.layers." + std::to_string(i) + ".";
      if (auto it = norms.find(p + "input_layernorm.weight"); it != norms.end()) l.input_norm = it->second;
      if (auto it = norms.find(p + "post_attention_layernorm.weight"); it != norms.end())
        l.post_attention_norm = it->second;
      for (LinearWeight* lw : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
        auto it = linears.find(lw->name);
        EXPECT_NE(it, linears.end()) << lw->name;
        if (it != linears.end()) lw->dense = dequantize_reference(it->second);
      }
    }
    return logits_of(w, tokens);
  }

  static double distance(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    return d;
  }
};

TEST_F(Calibration, SampledTextAtNearZeroTemperatureIsGreedyDecoding) {
  auto ck = open_checkpoint(dir_.string());
  ThreadPool pool(2);
  SampledTextOptions o;
  o.sequences = 3;
  o.length = 12;
  o.temperature = 1e-4f;
  o.batch = 2;  // two batches, the second one partial
  const std::vector<int32_t> ids = sample_calibration_tokens(*ck, 1, o, pool);
  ASSERT_EQ(ids.size(), 36u);
  const auto loaded = load_model(dir_.string());
  const int64_t V = loaded->config.vocab_size;
  for (int s = 0; s < 3; ++s) {
    std::vector<int32_t> seq(ids.begin() + s * 12, ids.begin() + (s + 1) * 12);
    EXPECT_EQ(seq[0], 1);
    for (size_t n = 1; n < seq.size(); ++n) {
      const std::vector<int32_t> prefix(seq.begin(), seq.begin() + n);
      const auto logits = logits_of(loaded, prefix);
      const float* last = logits.data() + (n - 1) * V;
      EXPECT_EQ(seq[n], std::max_element(last, last + V) - last) << "sequence " << s << " position " << n;
    }
  }
}

TEST_F(Calibration, SampledTextIsDeterministicPerSeed) {
  auto ck = open_checkpoint(dir_.string());
  ThreadPool pool(2);
  SampledTextOptions o;
  o.sequences = 4;
  o.length = 10;
  o.seed = 7;
  const auto a = sample_calibration_tokens(*ck, 1, o, pool), b = sample_calibration_tokens(*ck, 1, o, pool);
  EXPECT_EQ(a, b);
  o.seed = 8;
  EXPECT_NE(a, sample_calibration_tokens(*ck, 1, o, pool));
  for (int32_t t : a) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, weights_->config.vocab_size);
  }
  o.length = 1;
  EXPECT_THROW(sample_calibration_tokens(*ck, 1, o, pool), Error);
  o.length = 10;
  EXPECT_THROW(sample_calibration_tokens(*ck, 50, o, pool), Error);  // outside the vocabulary of 50
}

TEST_F(Calibration, GptqAndAwqBeatRoundToNearestOnUnseenText) {
  auto ck = open_checkpoint(dir_.string());
  ASSERT_NE(quant::calibrator(), nullptr);
  // Held-out text: sampled with another seed than the calibration text.
  ThreadPool pool(2);
  SampledTextOptions eo;
  eo.sequences = 6;
  eo.length = 48;
  eo.seed = 12345;
  const std::vector<int32_t> held_out = sample_calibration_tokens(*ck, 1, eo, pool);
  auto sequence = [&](int i) {
    return std::vector<int32_t>(held_out.begin() + i * eo.length, held_out.begin() + (i + 1) * eo.length);
  };
  std::vector<std::vector<float>> reference;
  for (int i = 0; i < eo.sequences; ++i) reference.push_back(logits_of(load_model(dir_.string()), sequence(i)));
  // Summed over the held-out sequences: squared distance of the logits to the float model's.
  auto distance_of = [&](const std::map<std::string, QuantizedWeight>& linears,
                         const std::map<std::string, std::vector<float>>& norms) {
    double d = 0;
    for (int i = 0; i < eo.sequences; ++i) d += distance(logits_with(linears, norms, sequence(i)), reference[i]);
    return d;
  };

  for (auto algorithm : {quant::CalibrationAlgorithm::Gptq, quant::CalibrationAlgorithm::Awq}) {
    const bool awq = algorithm == quant::CalibrationAlgorithm::Awq;
    SCOPED_TRACE(awq ? "awq" : "gptq");
    std::map<std::string, QuantizedWeight> rtn;
    for (const auto& l : ck->linears()) {
      const auto w = ck->load_float(l.spec.name + ".weight");
      rtn.emplace(l.spec.name, quant::rtn_quantize(l.spec.name, w.data(), l.spec.out_features, l.spec.in_features, 4,
                                                   16, !awq, awq ? quant::RtnStyle::Awq : quant::RtnStyle::Gptq));
    }
    quant::CalibrationSettings cs;
    cs.algorithm = algorithm;
    cs.tokens = 512;
    cs.window = 64;
    cs.seed = 3;
    cs.bits = 4;
    cs.group_size = 16;
    cs.sym = !awq;
    const quant::CalibrationResult r = (*quant::calibrator())(*ck, cs);
    EXPECT_EQ(r.tokens, 512);
    EXPECT_EQ(r.linears.size(), 14u);
    EXPECT_EQ(r.float_tensors.size(), awq ? 4u : 0u);
    const double d_cal = distance_of(r.linears, r.float_tensors), d_rtn = distance_of(rtn, {});
    EXPECT_LT(d_cal, 0.9 * d_rtn) << "calibrated " << d_cal << ", round-to-nearest " << d_rtn;
  }
}

}  // namespace
}  // namespace qrt
