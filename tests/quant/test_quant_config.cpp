// Quantization configs: parse the JSON the reference libraries write, serialize back to the same
// JSON, round-trip, report unknown fields, and reject every invalid value with a message naming
// the field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "qrt/error.h"
#include "qrt/quant_config.h"

using namespace qrt;
using nlohmann::json;

namespace {

std::string error_of(const std::string& text) {
  try {
    parse_quantization_config(text);
  } catch (const qrt::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// Parse, serialize, compare with the input JSON (as values), and check parse(serialize(x)) is stable.
void expect_json_round_trip(const std::string& text) {
  QuantizationConfig c = parse_quantization_config(text);
  const std::string out = quantization_config_to_json(c);
  EXPECT_EQ(json::parse(out), json::parse(text)) << out;
  QuantizationConfig again = parse_quantization_config(out);
  EXPECT_EQ(quantization_config_to_json(again), out);
  EXPECT_EQ(again.describe(), c.describe());
}

// transformers GPTQConfig.to_dict() of a 4-bit g128 model.
const char* kTransformersGptq = R"({"bits": 4, "group_size": 128, "damp_percent": 0.1, "desc_act": false,
  "sym": true, "true_sequential": true, "quant_method": "gptq", "checkpoint_format": "gptq", "dataset": null,
  "tokenizer": null, "model_seqlen": null, "block_name_to_quantize": null, "module_name_preceding_first_block": null,
  "batch_size": 1, "pad_token_id": null, "use_exllama": true, "max_input_length": null,
  "exllama_config": {"version": 1}, "cache_block_outputs": true, "modules_in_block_to_quantize": null})";

// GPTQModel writes both method/quant_method and format/checkpoint_format.
const char* kGptqModel = R"({"bits": 4, "dynamic": null, "group_size": 128, "desc_act": true, "sym": true,
  "lm_head": false, "quant_method": "gptq", "checkpoint_format": "gptq_v2", "method": "gptq", "format": "gptq_v2",
  "pack_dtype": "int32", "damp_percent": 0.05, "true_sequential": true,
  "meta": {"quantizer": ["gptqmodel:2.2.0"], "uri": "https://github.com/modelcloud/gptqmodel"}})";

}  // namespace

TEST(QuantConfig, GptqTransformersJsonRoundTrip) {
  QuantizationConfig c = parse_quantization_config(kTransformersGptq);
  const GptqConfig* g = c.get<GptqConfig>();
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->bits, 4);
  EXPECT_EQ(g->group_size, 128);
  EXPECT_TRUE(g->sym);
  EXPECT_FALSE(g->is_v2());
  EXPECT_TRUE(c.warnings.empty()) << c.warnings[0];
  EXPECT_EQ(c.describe(), "gptq 4-bit g128 sym (gptq v1)");
  expect_json_round_trip(kTransformersGptq);
}

TEST(QuantConfig, GptqModelJsonRoundTrip) {
  QuantizationConfig c = parse_quantization_config(kGptqModel);
  const GptqConfig* g = c.get<GptqConfig>();
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->is_v2());
  EXPECT_TRUE(g->desc_act);
  EXPECT_DOUBLE_EQ(g->damp_percent, 0.05);
  expect_json_round_trip(kGptqModel);
}

TEST(QuantConfig, LegacyAutoGptqAliasesAndMissingQuantMethod) {
  // AutoGPTQ quantize_config.json (no quant_method) and AutoAWQ synonyms.
  QuantizationConfig c = parse_quantization_config(R"({"bits": 3, "group_size": -1, "desc_act": true, "sym": false,
    "static_groups": true, "model_name_or_path": null, "model_file_base_name": "model"})");
  const GptqConfig* g = c.get<GptqConfig>();
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->bits, 3);
  EXPECT_FALSE(g->desc_act);   // desc_act with one group is no act-order
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("desc_act"), std::string::npos);
  QuantizationConfig a = parse_quantization_config(R"({"w_bit": 4, "q_group_size": 64, "zero_point": true, "version": "GEMM"})");
  const AwqConfig* awq = a.get<AwqConfig>();
  ASSERT_NE(awq, nullptr);
  EXPECT_EQ(awq->group_size, 64);
  EXPECT_EQ(awq->version, "gemm");
}

TEST(QuantConfig, UnknownFieldsAreReportedAndKept) {
  QuantizationConfig c = parse_quantization_config(R"({"quant_method": "gptq", "bits": 8, "group_size": 32,
    "sym": true, "desc_act": false, "frobnicate": [1, 2]})");
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0], "quantization_config.frobnicate: unknown field, kept as is but not used by qrt");
  EXPECT_EQ(json::parse(quantization_config_to_json(c))["frobnicate"], json::parse("[1, 2]"));
  QuantizationConfig m = parse_quantization_config(R"({"quant_method": "gptq", "bits": 4, "sym": true})");
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_NE(m.warnings[0].find("group_size: missing, assuming 128"), std::string::npos);
}

TEST(QuantConfig, AwqJsonRoundTrip) {
  const char* autoawq = R"({"quant_method": "awq", "zero_point": true, "group_size": 128, "bits": 4,
    "version": "gemm", "modules_to_not_convert": null})";
  expect_json_round_trip(autoawq);
  const char* with_backend = R"({"quant_method": "awq", "zero_point": true, "group_size": 64, "bits": 4,
    "version": "gemv", "backend": "autoawq", "modules_to_not_convert": ["visual"], "do_fuse": false})";
  expect_json_round_trip(with_backend);
  QuantizationConfig c = parse_quantization_config(with_backend);
  EXPECT_EQ(c.get<AwqConfig>()->modules_to_not_convert, std::vector<std::string>{"visual"});
  EXPECT_EQ(c.describe(), "awq 4-bit g64 zero_point (gemv)");
}

TEST(QuantConfig, Fp8JsonRoundTrip) {
  const char* deepseek = R"({"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
    "weight_block_size": [128, 128]})";
  expect_json_round_trip(deepseek);
  QuantizationConfig c = parse_quantization_config(deepseek);
  ASSERT_TRUE(c.get<Fp8Config>()->weight_block_size.has_value());
  EXPECT_EQ(c.get<Fp8Config>()->weight_block_size->first, 128);
  const char* per_tensor = R"({"quant_method": "fp8", "activation_scheme": "static", "ignored_layers": ["lm_head"]})";
  expect_json_round_trip(per_tensor);
  EXPECT_EQ(parse_quantization_config(per_tensor).get<Fp8Config>()->modules_to_not_convert,
            std::vector<std::string>{"lm_head"});
}

TEST(QuantConfig, BitsAndBytesInt8JsonRoundTrip) {
  const char* bnb = R"({"_load_in_4bit": false, "_load_in_8bit": true, "bnb_4bit_compute_dtype": "float32",
    "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": false,
    "llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false, "llm_int8_skip_modules": null,
    "llm_int8_threshold": 6.0, "load_in_4bit": false, "load_in_8bit": true, "quant_method": "bitsandbytes"})";
  QuantizationConfig c = parse_quantization_config(bnb);
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_TRUE(c.get<Int8Config>()->load_in_8bit);
  expect_json_round_trip(bnb);
}

TEST(QuantConfig, TorchAoStringAndAoBaseForms) {
  const char* s = R"({"quant_method": "torchao", "quant_type": "int4_weight_only",
    "quant_type_kwargs": {"group_size": 64, "layout": "tensor_core_tiled"}, "modules_to_not_convert": null,
    "include_input_output_embeddings": false, "untie_embedding_weights": false})";
  QuantizationConfig c = parse_quantization_config(s);
  EXPECT_EQ(c.get<TorchAoConfig>()->group_size, 64);
  EXPECT_EQ(c.get<TorchAoConfig>()->layout, "tensor_core_tiled");
  expect_json_round_trip(s);
  const char* ao = R"({"quant_method": "torchao", "quant_type": {"default": {"_type": "Int4WeightOnlyConfig",
    "_version": 1, "_data": {"group_size": 32, "layout": {"_type": "TensorCoreTiledLayout", "_data": {"inner_k_tiles": 8}}}}},
    "modules_to_not_convert": null, "include_input_output_embeddings": false, "untie_embedding_weights": false})";
  QuantizationConfig a = parse_quantization_config(ao);
  EXPECT_EQ(a.get<TorchAoConfig>()->quant_type, "int4_weight_only");
  EXPECT_EQ(a.get<TorchAoConfig>()->group_size, 32);
  EXPECT_EQ(a.get<TorchAoConfig>()->layout, "TensorCoreTiledLayout");
  expect_json_round_trip(ao);
}

TEST(QuantConfig, HiggsWithTuneMetadataRoundTrip) {
  const char* h = R"({"quant_method": "higgs", "bits": 4, "p": 2, "hadamard_size": 512, "group_size": 256,
    "modules_to_not_convert": ["lm_head"],
    "tune_metadata": {"model.layers.0.mlp.down_proj": {"device": "NVIDIA H100", "template_id": 23, "num_sms": 132}}})";
  QuantizationConfig c = parse_quantization_config(h);
  const HiggsConfig* g = c.get<HiggsConfig>();
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(g->tune_metadata.size(), 1u);
  EXPECT_EQ(json::parse(g->tune_metadata.at("model.layers.0.mlp.down_proj"))["template_id"], 23);
  expect_json_round_trip(h);
}

TEST(QuantConfig, GgufRoundTrip) {
  const char* g = R"({"quant_method": "gguf", "file_type": 3, "quantization_version": 2,
    "tensor_type_counts": {"F32": 61, "Q4_1": 211}})";
  expect_json_round_trip(g);
}

TEST(QuantConfig, EveryRejectionNamesTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"quant_method": "gptq", "bits": 5})", "quantization_config.bits: 5 is not one of 2, 3, 4, 8"},
      {R"({"quant_method": "gptq"})", "quantization_config.bits: missing (required for gptq: 2, 3, 4 or 8)"},
      {R"({"quant_method": "gptq", "bits": "four"})", "quantization_config.bits: expected an integer, got \"four\""},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": 0})",
       "quantization_config.group_size: 0 must be -1 (one group per column) or positive"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": -2})",
       "quantization_config.group_size: -2 must be -1 (one group per column) or positive"},
      {R"({"quant_method": "gptq", "bits": 4, "damp_percent": 1.5})",
       "quantization_config.damp_percent: 1.5 is not between 0 and 1 (exclusive)"},
      {R"({"quant_method": "gptq", "bits": 4, "checkpoint_format": "gptq_v3"})",
       "quantization_config.checkpoint_format: 'gptq_v3' is not one of gptq, gptq_v2"},
      {R"({"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"})",
       "quantization_config.checkpoint_format: 'marlin' (AutoGPTQ pre-packed Marlin tensors) is not supported"},
      {R"({"quant_method": "gptq", "bits": 4, "sym": "yes"})", "quantization_config.sym: expected true or false, got \"yes\""},
      {R"({"quant_method": "gptq", "bits": 4, "pack_dtype": "int16"})",
       "quantization_config.pack_dtype: 'int16' is not supported (only int32)"},
      {R"({"quant_method": "awq", "bits": 5})", "quantization_config.bits: 5 is not one of 2, 3, 4, 8"},
      {R"({"quant_method": "awq", "version": "turbo"})",
       "quantization_config.version: 'turbo' is not one of gemm, gemv, gemv_fast, exllama, ipex, marlin, llm-awq"},
      {R"({"quant_method": "gptq", "bits": 4, "backend": 7})", "quantization_config.backend: expected a string, got 7"},
      {R"({"quant_method": "gptq", "bits": 4, "max_input_length": 0})",
       "quantization_config.max_input_length: 0 must be in 1..2^31"},
      {R"({"quant_method": "gptq", "bits": 4, "exllama_config": {"version": 3}})",
       "quantization_config.exllama_config.version: 3 is not 1 or 2"},
      {R"({"quant_method": "fp8", "weight_block_size": [128]})",
       "quantization_config.weight_block_size: [128] is not a list of 2 positive integers"},
      {R"({"quant_method": "fp8", "weight_block_size": [0, 128]})",
       "quantization_config.weight_block_size: [0,128] is not a list of 2 positive integers"},
      {R"({"quant_method": "fp8", "activation_scheme": "lazy"})",
       "quantization_config.activation_scheme: 'lazy' is not one of dynamic, static"},
      {R"({"quant_method": "fp8", "fmt": "e5m2"})", "quantization_config.fmt: 'e5m2' is not supported (e4m3 only)"},
      {R"({"quant_method": "bitsandbytes", "load_in_8bit": true, "load_in_4bit": true})",
       "quantization_config.load_in_4bit: load_in_8bit and load_in_4bit are both true"},
      {R"({"quant_method": "bitsandbytes"})", "quantization_config.load_in_8bit: neither load_in_8bit nor load_in_4bit is true"},
      {R"({"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf3"})",
       "quantization_config.bnb_4bit_quant_type: 'nf3' is not one of fp4, nf4"},
      {R"({"quant_method": "torchao", "quant_type": "int4_weight_only", "quant_type_kwargs": {"group_size": 48}})",
       "quantization_config.quant_type_kwargs.group_size: 48 is not one of 32, 64, 128, 256"},
      {R"({"quant_method": "torchao"})", "quantization_config.quant_type: missing"},
      {R"({"quant_method": "higgs", "bits": 8})", "quantization_config.bits: 8 is not one of 2, 3, 4"},
      {R"({"quant_method": "higgs", "group_size": 256, "hadamard_size": 384})",
       "quantization_config.group_size: 256 does not divide hadamard_size 384"},
      {R"({"quant_method": "higgs", "p": 3})", "quantization_config.p: 3 is not one of 1, 2"},
      {R"({"quant_method": "aqlm"})",
       "quantization_config.quant_method: 'aqlm' is not supported; known methods: gptq, awq, fp8, bitsandbytes, torchao, higgs, gguf"},
      {R"({"quant_method": 7})", "quantization_config.quant_method: expected a string, got 7"},
      {R"({"desc_act": true})", "quantization_config.quant_method: missing (one of gptq, awq"},
      {R"([1, 2])", "quantization_config: expected a JSON object"},
      {R"({"quant_method": "gptq", )", "quantization_config: not valid JSON"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string msg = error_of(text);
    EXPECT_EQ(msg.rfind(expected, 0), 0u) << "input: " << text << "\n got: " << msg << "\nwant: " << expected;
  }
}

TEST(QuantConfig, UnknownMethodIsUnsupportedKind) {
  try {
    parse_quantization_config(R"({"quant_method": "fbgemm_fp8"})");
    FAIL();
  } catch (const qrt::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
  }
}

TEST(QuantConfig, GroupSizeMustDivideInFeatures) {
  GptqConfig g;
  g.group_size = 128;
  EXPECT_NO_THROW(g.check_layer(4096, "layer"));
  EXPECT_NO_THROW(g.check_layer(-1, "layer"));
  try {
    g.check_layer(1000, "model.layers.0.mlp.down_proj");
    FAIL();
  } catch (const qrt::Error& e) {
    EXPECT_STREQ(e.what(), "model.layers.0.mlp.down_proj: quantization_config.group_size 128 does not divide in_features 1000");
  }
  AwqConfig a;
  a.group_size = -1;
  EXPECT_NO_THROW(a.check_layer(1000, "x"));
}

TEST(QuantConfig, CompressedTensorsSchemesQrtCannotReadNameTheField) {
  const std::string group = R"("config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
      "symmetric": true, "strategy": "group", "group_size": 128}}})";
  const auto ok = parse_quantization_config(R"({"quant_method": "compressed-tensors", "format": "pack-quantized", )" +
                                            group + "}");
  EXPECT_EQ(ok.describe(), "compressed-tensors pack-quantized int4 group g128 sym");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"quant_method": "compressed-tensors", "format": "marlin-24", )" + group + "}", "format: 'marlin-24'"},
      {R"({"quant_method": "compressed-tensors", "format": "pack-quantized"})", "config_groups"},
      {R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"a": {"weights": {}},
          "b": {"weights": {}}}})", "2 schemes"},
      {R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {"weights":
          {"num_bits": 4, "strategy": "group"}}}})", "group_size: required"},
      {R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {"weights":
          {"num_bits": 4, "strategy": "group", "group_size": 32, "actorder": "group"}}}})", "actorder"},
      {R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"g": {"weights":
          {"num_bits": 4, "type": "float", "strategy": "channel"}}}})", "float-quantized is supported for 8-bit"},
  };
  for (const auto& [text, expect] : cases) {
    try {
      parse_quantization_config(text);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  }
}
