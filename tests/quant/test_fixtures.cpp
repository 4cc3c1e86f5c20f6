// Fixtures made by tools/make_quant_fixtures.py (torch, packing written from docs/CHECKPOINTS.md word by word,
// independently of the C++ codecs): each layer decodes to exactly the dequantized weight the
// script computed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>

#include "qrt/error.h"
#include "qrt/quant_config.h"
#include "qrt/safetensors.h"
#include "quant/formats/codecs.h"

using namespace qrt;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Loaded {
  SafetensorsFile file;
  quant::TensorParts parts;
  QuantizationConfig config;
  std::vector<float> expected;
};

Loaded load(const std::string& name) {
  const std::string base = std::string(QRT_TEST_DATA) + "/fixtures/" + name;
  Loaded l{SafetensorsFile::open(base + ".safetensors"), {}, parse_quantization_config(read_text(base + ".json")), {}};
  for (const auto& info : l.file.tensors())
    if (info.name.rfind("layer.", 0) == 0) l.parts[info.name.substr(6)] = l.file.view(info);
  l.expected = tensor_to_float(l.file.tensor("expected"));
  return l;
}

void expect_matches(const QuantizedWeight& w, const std::vector<float>& expected) {
  const std::vector<float> d = dequantize_reference(w);
  ASSERT_EQ(d.size(), expected.size());
  for (size_t i = 0; i < d.size(); ++i)
    ASSERT_NEAR(d[i], expected[i], 1e-6f * std::max(1.0f, std::fabs(expected[i]))) << "element " << i;
}

}  // namespace

TEST(Fixtures, GptqV1FourBitAsymmetricActOrder) {
  Loaded l = load("gptq_v1_4bit_actorder");
  std::vector<std::string> warnings;
  QuantizedWeight w = quant::decode_gptq("layer", l.parts, *l.config.get<GptqConfig>(), 128, &warnings);
  EXPECT_TRUE(w.spec.act_order);
  EXPECT_EQ(w.spec.zero_kind, ZeroKind::Integer);
  EXPECT_TRUE(warnings.empty());
  expect_matches(w, l.expected);
}

TEST(Fixtures, GptqV1ThreeBitSymmetricActOrder) {
  Loaded l = load("gptq_v1_3bit_actorder");
  std::vector<std::string> warnings;
  QuantizedWeight w = quant::decode_gptq("layer", l.parts, *l.config.get<GptqConfig>(), -1, &warnings);
  EXPECT_EQ(w.spec.bits, 3);
  EXPECT_TRUE(w.spec.act_order);
  EXPECT_TRUE(warnings.empty()) << warnings[0];   // the stored zeros are the symmetric v1 constant
  expect_matches(w, l.expected);
}

TEST(Fixtures, AwqGemmFourBit) {
  Loaded l = load("awq_gemm_4bit");
  QuantizedWeight w = quant::decode_awq("layer", l.parts, *l.config.get<AwqConfig>());
  expect_matches(w, l.expected);
  // Re-encoding gives back the same bytes the reference packer wrote.
  auto enc = quant::encode_awq(w);
  const auto& qweight = l.parts.at("qweight");
  EXPECT_TRUE(std::equal(qweight.bytes.begin(), qweight.bytes.end(), enc[0].data.begin()));
}

TEST(Fixtures, Fp8BlockWithPartialEdges) {
  Loaded l = load("fp8_block");
  QuantizedWeight w = quant::decode_fp8("layer", l.parts, *l.config.get<Fp8Config>());
  EXPECT_EQ(w.spec.scale_block_n, 32);
  EXPECT_EQ(w.spec.scale_block_k, 64);
  expect_matches(w, l.expected);
}

TEST(Fixtures, BitsAndBytesLlmInt8) {
  Loaded l = load("int8_llm_int8");
  QuantizedWeight w = quant::decode_int8("layer", l.parts);
  const std::vector<float> d = dequantize_reference(w);
  // bitsandbytes divides by 127 in float; qrt multiplies by 1/127: equal to a few ulps.
  for (size_t i = 0; i < d.size(); ++i) ASSERT_NEAR(d[i], l.expected[i], 2e-6f * std::fabs(l.expected[i]) + 1e-7f) << i;
}

TEST(Fixtures, GptqReencodeMatchesReferencePacking) {
  // encode_gptq of the decoded layer reproduces the reference packer's qweight/qzeros words.
  for (const char* name : {"gptq_v1_4bit_actorder", "gptq_v1_3bit_actorder"}) {
    Loaded l = load(name);
    QuantizedWeight w = quant::decode_gptq("layer", l.parts, *l.config.get<GptqConfig>());
    auto enc = quant::encode_gptq(w, false);
    for (const auto& t : enc) {
      if (t.suffix != "qweight" && t.suffix != "qzeros" && t.suffix != "g_idx") continue;
      const auto& ref = l.parts.at(t.suffix);
      ASSERT_EQ(ref.bytes.size(), t.data.size()) << name << " " << t.suffix;
      EXPECT_TRUE(std::equal(ref.bytes.begin(), ref.bytes.end(), t.data.begin())) << name << " " << t.suffix;
    }
  }
}

// bitsandbytes 4-bit layers written and dequantized by the bitsandbytes library itself
// (tools/make_bnb_fixtures.py): the code book weight reproduces its float32 values (the same
// products, and for double quantization the same absmax reconstruction, in float32).
TEST(Fixtures, BitsAndBytes4BitNf4Fp4DoubleQuant) {
  struct Case {
    const char* name;
    const char* codebook;
    int group;
    bool nested;
  };
  for (const Case& c : {Case{"bnb_nf4", "nf4", 64, false}, Case{"bnb_nf4_double", "nf4", 64, true},
                        Case{"bnb_fp4", "fp4", 64, false}, Case{"bnb_fp4_double", "fp4", 128, true}}) {
    SCOPED_TRACE(c.name);
    Loaded l = load(c.name);
    EXPECT_TRUE(l.config.get<Int8Config>()->load_in_4bit);
    QuantizedWeight w = quant::decode_bnb4("layer", l.parts, 256);
    EXPECT_EQ(w.spec.encoding, WeightEncoding::Codebook);
    EXPECT_EQ(w.spec.bits, 4);
    EXPECT_EQ(w.spec.group_size, c.group);
    EXPECT_EQ(w.N(), 8);
    EXPECT_EQ(w.spec.source_format, std::string("bnb_") + c.codebook + (c.nested ? " double-quant" : ""));
    const std::vector<float> d = dequantize_reference(w);
    ASSERT_EQ(d.size(), l.expected.size());
    int mismatches = 0;
    for (size_t i = 0; i < d.size(); ++i)
      if (d[i] != l.expected[i] && mismatches++ < 3)
        ADD_FAILURE() << "element " << i << ": " << d[i] << " vs bitsandbytes " << l.expected[i];
    EXPECT_EQ(mismatches, 0);
  }
  // A damaged quant_state is a clear error naming the tensor.
  Loaded l = load("bnb_nf4");
  l.parts.erase("weight.quant_map");
  try {
    quant::decode_bnb4("layer", l.parts, 256);
    ADD_FAILURE() << "decoded without a code book";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quant_map"), std::string::npos) << e.what();
  }
}

// compressed-tensors layers written by the compressed-tensors package's own compressors
// (tools/make_compressed_tensors_fixtures.py), against its dequantize() in float32: the same
// (q - zero_point) * scale products, so equal to float rounding.
TEST(Fixtures, CompressedTensorsPackNaiveAndFloat) {
  struct Case {
    const char* name;
    WeightEncoding encoding;
    int bits, group;
    ZeroKind zero;
  };
  for (const Case& c : {Case{"ct_int4_group_sym", WeightEncoding::IntAffine, 4, 32, ZeroKind::Symmetric},
                        Case{"ct_int4_group_asym", WeightEncoding::IntAffine, 4, 32, ZeroKind::Integer},
                        Case{"ct_int8_channel_sym", WeightEncoding::IntAffine, 8, -1, ZeroKind::Symmetric},
                        Case{"ct_int8_naive", WeightEncoding::IntAffine, 8, -1, ZeroKind::Symmetric},
                        Case{"ct_fp8_channel", WeightEncoding::Fp8E4M3, 8, -1, ZeroKind::Symmetric}}) {
    SCOPED_TRACE(c.name);
    Loaded l = load(c.name);
    const auto* cfg = l.config.get<CompressedTensorsConfig>();
    ASSERT_NE(cfg, nullptr);
    QuantizedWeight w = quant::decode_compressed_tensors("layer", l.parts, *cfg, 128);
    EXPECT_EQ(w.spec.encoding, c.encoding);
    EXPECT_EQ(w.spec.bits, c.bits);
    if (c.encoding == WeightEncoding::IntAffine) {
      EXPECT_EQ(w.spec.group_size, c.group);
      EXPECT_EQ(w.spec.zero_kind, c.zero);
    } else {
      EXPECT_EQ(w.spec.scale_block_n, 1);
    }
    EXPECT_EQ(w.N(), 16);
    expect_matches(w, l.expected);
  }
  // The config parses into what the checkpoint describes, and writes back as read.
  Loaded naive = load("ct_int8_naive");
  const auto* n = naive.config.get<CompressedTensorsConfig>();
  EXPECT_EQ(n->format, "naive-quantized");
  EXPECT_EQ(n->input_activations, "dynamic");
  EXPECT_EQ(n->ignore, std::vector<std::string>{"lm_head"});
  EXPECT_EQ(parse_quantization_config(quantization_config_to_json(naive.config)).describe(), naive.config.describe());
  EXPECT_EQ(load("ct_fp8_channel").config.get<CompressedTensorsConfig>()->input_activations, "static");
  // A packed tensor of the wrong width names the tensor.
  Loaded bad = load("ct_int4_group_sym");
  const auto& packed = bad.parts.at("weight_packed");
  TensorView narrow = packed;
  narrow.shape = {16, 8};
  narrow.bytes = packed.bytes.subspan(0, 16 * 8 * 4);
  bad.parts["weight_packed"] = narrow;
  try {
    quant::decode_compressed_tensors("layer", bad.parts, *bad.config.get<CompressedTensorsConfig>(), 128);
    ADD_FAILURE() << "decoded a truncated weight_packed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weight_packed"), std::string::npos) << e.what();
  }
}

// HIGGS in FLUTE's layout, written by tools/make_higgs_fixtures.py (numpy, float64, independent of
// the C++ codec): the rotated codebook weight dequantizes to the script's W = V H within 1e-5 of the
// weight's largest value (float32 Hadamard butterflies against float64 products), and re-encodes
// to the very bytes of the file.
TEST(Fixtures, HiggsFluteLayoutDequantizesAndReencodes) {
  struct Case { const char* name; int bits, p, hadamard; int64_t n, k; int tile_p; };
  for (const Case& c : {Case{"higgs_4bit_p2", 4, 2, 128, 128, 128, 32}, Case{"higgs_4bit_p1", 4, 1, 64, 256, 64, 64},
                        Case{"higgs_2bit_p2", 2, 2, 64, 256, 64, 32}}) {
    SCOPED_TRACE(c.name);
    Loaded l = load(c.name);
    const auto* cfg = l.config.get<HiggsConfig>();
    ASSERT_NE(cfg, nullptr);
    const quant::HiggsLayout layout = quant::higgs_layout("layer", *cfg, &cfg->tune_metadata.at("layer"), c.n, c.k);
    EXPECT_EQ(layout.tile_p, c.tile_p);
    QuantizedWeight w = quant::decode_higgs("layer", l.parts, layout, c.n, c.k);
    EXPECT_EQ(w.spec.encoding, WeightEncoding::RotatedCodebook);
    EXPECT_EQ(w.spec.bits, c.bits);
    EXPECT_EQ(w.spec.codebook_dim, c.p);
    EXPECT_EQ(w.spec.hadamard_size, c.hadamard);
    const std::vector<float> d = dequantize_reference(w);
    ASSERT_EQ(d.size(), l.expected.size());
    float peak = 0;
    for (float v : l.expected) peak = std::max(peak, std::fabs(v));
    for (size_t i = 0; i < d.size(); ++i) ASSERT_NEAR(d[i], l.expected[i], 1e-5f * peak) << "element " << i;
    const auto encoded = quant::encode_higgs(w, layout, DType::F16);
    for (const auto& t : encoded) {
      const TensorView& stored = l.parts.at(t.suffix);
      EXPECT_EQ(t.shape, stored.shape) << t.suffix;
      ASSERT_EQ(t.data.size(), stored.bytes.size()) << t.suffix;
      EXPECT_TRUE(std::equal(t.data.begin(), t.data.end(), stored.bytes.begin())) << t.suffix << " differs";
    }
  }
}

// Bad HIGGS input names the layer and the field or tensor.
TEST(Fixtures, HiggsBadInputNamesTheField) {
  Loaded l = load("higgs_4bit_p2");
  const HiggsConfig cfg = *l.config.get<HiggsConfig>();
  const std::string meta = cfg.tune_metadata.at("layer");
  auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "accepted input that should fail with: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  HiggsConfig bad_h = cfg;
  bad_h.hadamard_size = 96;
  expect_error([&] { quant::higgs_layout("layer", bad_h, &meta, 128, 128); }, "hadamard_size 96 is not a power of 2");
  bad_h.hadamard_size = 256;
  expect_error([&] { quant::higgs_layout("layer", bad_h, &meta, 128, 128); }, "not a multiple of quantization_config.hadamard_size");
  expect_error([&] { quant::higgs_layout("layer", cfg, nullptr, 128, 128); }, "tune_metadata has no entry");
  expect_error([&] { quant::higgs_layout("layer", cfg, &meta, 256, 128); }, "tune_metadata.N: 128 does not match the layer's 256");
  const std::string far = R"({"M": 1, "N": 128, "K": 128, "num_bits": 4, "group_size": 64, "num_sms": 132, "template_id": 144})";
  expect_error([&] { quant::higgs_layout("layer", cfg, &far, 128, 128); }, "template_id: 144 is outside");
  const std::string no_id = R"({"N": 128, "K": 128, "num_bits": 4, "group_size": 64, "num_sms": 132})";
  expect_error([&] { quant::higgs_layout("layer", cfg, &no_id, 128, 128); }, "tune_metadata.template_id: expected an integer");
  HiggsConfig three = cfg;
  three.bits = 3;
  expect_error([&] { quant::higgs_layout("layer", three, &meta, 128, 128); }, "3-bit");

  const quant::HiggsLayout layout = quant::higgs_layout("layer", cfg, &meta, 128, 128);
  quant::TensorParts parts = l.parts;
  TensorView narrow = parts.at("weight");
  narrow.shape = {16, 128};
  narrow.bytes = narrow.bytes.subspan(0, 16 * 128 * 2);
  parts["weight"] = narrow;
  expect_error([&] { quant::decode_higgs("layer", parts, layout, 128, 128); }, "layer.weight: shape [16, 128]");
  // A NaN scale: copy the scales and poison one.
  parts = l.parts;
  std::vector<uint8_t> scales(parts.at("scales").bytes.begin(), parts.at("scales").bytes.end());
  scales[2 * 5] = 0x00;
  scales[2 * 5 + 1] = 0x7E;   // f16 NaN
  TensorView nan_scales = parts.at("scales");
  nan_scales.bytes = scales;
  parts["scales"] = nan_scales;
  expect_error([&] { quant::decode_higgs("layer", parts, layout, 128, 128); }, "layer.scales: value 5 is NaN");
  parts = l.parts;
  parts.erase("tables2");
  expect_error([&] { quant::decode_higgs("layer", parts, layout, 128, 128); }, "tables2");
}
