// load_model on small synthetic Hugging Face folders written with the safetensors writer: the
// loaded model computes what the in-memory one does; --quantize on load; and the bad inputs a user
// can give (unknown architecture, missing tensor, mismatched shapes, missing tokenizer,
// quantizing an already quantized checkpoint) are clear errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/model.h"
#include "qrt/setup.h"
#include "qrt/safetensors.h"
#include "synthetic_folder.h"

namespace qrt {
namespace {

TEST_F(SyntheticFolder, LoadedModelComputesLikeTheInMemoryOne) {
  write(tiny_config_json(weights_->config));
  auto loaded = load_model(dir_.string());
  EXPECT_EQ(loaded->config.num_layers, 2);
  EXPECT_TRUE(loaded->lm_head_uses_embedding());
  EXPECT_EQ(loaded->quantization, "none");
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6};
  const auto a = logits_of(loaded, tokens), b = logits_of(weights_, tokens);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5) << i;
}

TEST_F(SyntheticFolder, QuantizeOnLoadMakesEveryBlockLinearQuantized) {
  write(tiny_config_json(weights_->config));
  LoadOptions lo;
  lo.quantize = "int8";
  lo.group_size = 16;
  auto q8 = load_model(dir_.string(), lo);
  EXPECT_EQ(q8->quantized_layer_specs().size(), 14u);  // 7 per layer; the tied head stays dense
  for (const auto& s : q8->quantized_layer_specs()) {
    EXPECT_EQ(s.bits, 8);
    EXPECT_EQ(s.group_size, 16);
  }
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5};
  const auto a = logits_of(q8, tokens), b = logits_of(weights_, tokens);
  double worst = 0, range = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::abs(a[i] - b[i])));
    range = std::max(range, double(std::abs(b[i])));
  }
  EXPECT_LT(worst, 0.02 * range) << "int8 g16 should stay close to float";

  lo.quantize = "int4";
  lo.group_size = 32;
  auto q4 = load_model(dir_.string(), lo);
  for (const auto& s : q4->quantized_layer_specs()) EXPECT_EQ(s.bits, 4);
  lo.quantize = "int3";
  EXPECT_NE(expect_error([&] { load_model(dir_.string(), lo); }).find("int3"), std::string::npos);
}

// resolve_setup plans from the checkpoint's metadata alone what load_model() then quantizes on
// load, so an engine built from the setup runs exactly the planned layers.
TEST_F(SyntheticFolder, SetupPlansTheLayersQuantizedOnLoad) {
  write(tiny_config_json(weights_->config));
  const auto ck = open_checkpoint(dir_.string());
  SetupRequest request;
  request.device = "cpu";
  request.cli.use_tuning_cache = false;
  request.cli.max_input_length = 8;
  request.cli.max_new_tokens = 0;
  request.load.quantize = "int4";
  request.load.group_size = 32;
  const ResolvedSetup setup = resolve_setup(*ck, request);
  auto weights = load_model(*ck, request.load);
  const std::vector<LayerSpec> loaded = weights->quantized_layer_specs();
  ASSERT_EQ(setup.plan->layers.size(), loaded.size());
  ASSERT_EQ(loaded.size(), 14u);
  for (size_t i = 0; i < loaded.size(); ++i) {
    EXPECT_EQ(setup.plan->layers[i].layer.name, loaded[i].name);
    EXPECT_EQ(setup.plan->layers[i].layer.describe(), loaded[i].describe());
    EXPECT_EQ(setup.plan->layers[i].layer.source_format, "rtn:int4");
  }
  // The layer's weight as tuning and benchmarks read it equals the loaded one.
  const QuantizedWeight q = load_quantized_linear(*ck, loaded[3].name, request.load);
  EXPECT_EQ(q.codes, weights->layers[0].o_proj.quantized->codes);
  EngineOptions eo = setup.engine_options();
  eo.dense_dtype = DenseDType::F32;
  auto engine = make_cpu_engine(weights, eo);
  const auto kernels = engine->kernels();
  ASSERT_EQ(kernels.size(), loaded.size());
  for (size_t i = 0; i < kernels.size(); ++i) {
    EXPECT_EQ(kernels[i].first, loaded[i].name);
    ASSERT_EQ(kernels[i].second.size(), setup.plan->layers[i].choices.size());
    for (size_t r = 0; r < kernels[i].second.size(); ++r) {
      EXPECT_EQ(kernels[i].second[r].backend, setup.plan->layers[i].choices[r].backend);
      EXPECT_EQ(kernels[i].second[r].params, setup.plan->layers[i].choices[r].params);
    }
  }
  // Without on-load quantization the setup plans nothing, and an engine given that plan refuses
  // int4 weights it has no plan for (a plan made for another model).
  SetupRequest plain = request;
  plain.load = {};
  EXPECT_TRUE(resolve_setup(*ck, plain).plan->layers.empty());
  EngineOptions wrong = resolve_setup(*ck, plain).engine_options();
  EXPECT_NE(expect_error([&] { make_cpu_engine(weights, wrong); }).find("no layer"), std::string::npos);
}

// A torchao quantization_config on float weights quantizes on load exactly as --quantize does
// (same codes and scales), lists the same layers in the plan (quantized_linear_specs) as the loader
// builds, leaves modules_to_not_convert dense, and turns float8 configs into FP8 per-channel weights.
TEST_F(SyntheticFolder, TorchAoConfigQuantizesOnLoadAsQuantizeDoes) {
  struct Case {
    const char* quant;
    std::string quantize;
    int group;
  };
  const Case cases[] = {
      {R"({"quant_method": "torchao", "quant_type": "int4_weight_only", "quant_type_kwargs": {"group_size": 32}})", "int4", 32},
      {R"({"quant_method": "torchao", "quant_type": {"default": {"_type": "Int4WeightOnlyConfig", "_version": 2,
           "_data": {"group_size": 64, "layout": {"_type": "Int4CPULayout", "_version": 1, "_data": {}}}}}})", "int4", 64},
      {R"({"quant_method": "torchao", "quant_type": "int8_weight_only"})", "int8", -1},
      {R"({"quant_method": "torchao", "quant_type": "int8_dynamic_activation_int8_weight"})", "int8", -1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.quant);
    nlohmann::json cfg = tiny_config_json(weights_->config);
    write(cfg);
    LoadOptions lo;
    lo.quantize = c.quantize;
    lo.group_size = c.group;
    auto expected = load_model(dir_.string(), lo);
    cfg["quantization_config"] = nlohmann::json::parse(c.quant);
    write(cfg);
    auto got = load_model(dir_.string());
    const auto specs = got->quantized_layer_specs();
    ASSERT_EQ(specs.size(), 14u);
    const auto planned = quantized_linear_specs(*open_checkpoint(dir_.string()));
    ASSERT_EQ(planned.size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      EXPECT_EQ(planned[i].describe(), specs[i].describe());
      EXPECT_EQ(planned[i].source_format, specs[i].source_format);
      EXPECT_EQ(specs[i].source_format.rfind("torchao:", 0), 0u) << specs[i].source_format;
    }
    const auto a = got->linears(), b = expected->linears();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i]->is_quantized(), b[i]->is_quantized()) << a[i]->name;
      if (!a[i]->is_quantized()) continue;
      EXPECT_EQ(a[i]->quantized->codes, b[i]->quantized->codes) << a[i]->name;
      EXPECT_EQ(a[i]->quantized->scales, b[i]->quantized->scales) << a[i]->name;
      EXPECT_EQ(a[i]->quantized->zeros, b[i]->quantized->zeros) << a[i]->name;
    }
  }
  // Int4CPULayout is honoured as a hint for qrt's CPU int4 kernels; another layout is named.
  auto hint = checkpoint_runtime(parse_quantization_config(
      R"({"quant_method": "torchao", "quant_type": "int4_weight_only", "quant_type_kwargs": {"layout": "int4_cpu"}})"));
  EXPECT_EQ(hint.backend, "cpu_simd");
  EXPECT_TRUE(hint.notes.empty());
  auto tiled = checkpoint_runtime(parse_quantization_config(
      R"({"quant_method": "torchao", "quant_type": "int4_weight_only", "quant_type_kwargs": {"layout": "tensor_core_tiled"}})"));
  EXPECT_EQ(tiled.backend, "auto");
  ASSERT_EQ(tiled.notes.size(), 1u);
  EXPECT_NE(tiled.notes[0].find("layout tensor_core_tiled"), std::string::npos);
}

TEST_F(SyntheticFolder, TorchAoFloat8AndModulesToNotConvert) {
  nlohmann::json cfg = tiny_config_json(weights_->config);
  cfg["quantization_config"] = {{"quant_method", "torchao"},
                                {"quant_type", "float8_weight_only"},
                                {"modules_to_not_convert", {"model.layers.1.mlp.down_proj", "o_proj"}}};
  write(cfg);
  auto w = load_model(dir_.string());
  const auto specs = w->quantized_layer_specs();
  ASSERT_EQ(specs.size(), 11u);  // 14 less down_proj of layer 1 and both o_proj
  for (const auto& s : specs) {
    EXPECT_EQ(s.encoding, WeightEncoding::Fp8E4M3) << s.name;
    EXPECT_EQ(s.describe(), "fp8 per-channel") << s.name;
    EXPECT_EQ(s.name.find("o_proj"), std::string::npos);
  }
  EXPECT_FALSE(w->layers[1].down_proj.is_quantized());
  EXPECT_TRUE(w->layers[0].down_proj.is_quantized());
  EXPECT_EQ(quantized_linear_specs(*open_checkpoint(dir_.string())).size(), 11u);
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5};
  const auto a = logits_of(w, tokens), b = logits_of(weights_, tokens);
  double worst = 0, range = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::abs(a[i] - b[i])));
    range = std::max(range, double(std::abs(b[i])));
  }
  EXPECT_LT(worst, 0.05 * range) << "e4m3 per-channel weights stay close to float";
}

// Once an engine has packed its kernels the canonical weights can go: drop_canonical_weights()
// frees their data (specs stay), and an engine built afterwards re-reads them from the checkpoint
// and computes the same logits.
TEST_F(SyntheticFolder, CanonicalWeightsDroppedAfterPackingAreReReadWhenNeeded) {
  write(tiny_config_json(weights_->config));
  LoadOptions lo;
  lo.quantize = "int4";
  lo.group_size = 32;
  auto w = load_model(dir_.string(), lo);
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5};
  const auto before = logits_of(w, tokens);
  const int64_t codes = static_cast<int64_t>(w->layers[0].q_proj.quantized->codes.size());
  const int64_t freed = drop_canonical_weights(*w);
  EXPECT_GE(freed, 14 * codes / 2) << "every block linear's codes are freed";
  EXPECT_TRUE(w->layers[1].down_proj.dropped);
  EXPECT_TRUE(w->layers[1].down_proj.quantized->codes.empty());
  EXPECT_EQ(w->layers[1].down_proj.quantized->spec.bits, 4);
  EXPECT_EQ(w->quantized_layer_specs().size(), 14u);
  EXPECT_EQ(drop_canonical_weights(*w), 0) << "dropping twice frees nothing";
  const auto after = logits_of(w, tokens);
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) ASSERT_EQ(after[i], before[i]) << i;
  // Weights built in memory cannot be re-read: they are kept.
  EXPECT_EQ(drop_canonical_weights(*weights_), 0);
}

TEST_F(SyntheticFolder, UnknownArchitectureIsAClearError) {
  auto cfg = tiny_config_json(weights_->config);
  cfg["architectures"] = {"GPTNeoXForCausalLM"};
  cfg["model_type"] = "gpt_neox";
  write(cfg);
  const std::string msg = expect_error([&] { load_model(dir_.string()); });
  EXPECT_NE(msg.find("GPTNeoXForCausalLM"), std::string::npos) << msg;
}

TEST_F(SyntheticFolder, MismatchedShapeNamesTheTensor) {
  write(tiny_config_json(weights_->config), "", "model.layers.1.self_attn.k_proj.weight");
  const std::string msg = expect_error([&] { load_model(dir_.string()); });
  EXPECT_NE(msg.find("k_proj"), std::string::npos) << msg;
}

TEST_F(SyntheticFolder, MissingTensorNamesIt) {
  write(tiny_config_json(weights_->config), "model.layers.0.post_attention_layernorm.weight");
  const std::string msg = expect_error([&] { load_model(dir_.string()); });
  EXPECT_NE(msg.find("post_attention_layernorm"), std::string::npos) << msg;
}

TEST_F(SyntheticFolder, ConfigThatDisagreesWithTensorsIsAnError) {
  auto cfg = tiny_config_json(weights_->config);
  cfg["intermediate_size"] = 40;
  write(cfg);
  EXPECT_FALSE(expect_error([&] { load_model(dir_.string()); }).empty());
}

TEST_F(SyntheticFolder, MissingTokenizerIsAClearError) {
  write(tiny_config_json(weights_->config));
  const std::string msg = expect_error([&] { load_tokenizer(dir_.string()); });
  EXPECT_NE(msg.find("tokenizer"), std::string::npos) << msg;
}

TEST(LoadModel, MissingPathIsAnError) {
  EXPECT_THROW(load_model("/nonexistent/qrt/model/folder"), Error);
}

}  // namespace
}  // namespace qrt
