// Kernel parameters from the checkpoint (HIGGS quantization_config.tune_metadata): parsed from the
// quantization_config, fed into RuntimeConfig as the lowest-priority per-layer source, shown by
// the plan as "checkpoint tune_metadata", beaten by the config file's global, tuned and override
// values, and a key the chosen backend does not take is a plan note (never silent, never fatal).
#include <gtest/gtest.h>

#include <algorithm>

#include "backend_test_util.h"
#include "qrt/plan.h"
#include "qrt/quant_config.h"
#include "qrt/runtime_config.h"

namespace qrt {
namespace {

using test::int_layer;

CheckpointRuntime with_tune_metadata(const std::map<std::string, std::string>& metadata) {
  CheckpointRuntime c;
  c.tune_metadata = metadata;
  return c;
}

bool any_contains(const std::vector<std::string>& lines, const std::string& part) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(part) != std::string::npos; });
}

// A registry with one fake backend (parameter "tile": 16, 32 or 64; default 32).
struct OneBackend {
  BackendRegistry reg;
  OneBackend() {
    reg.add(std::make_unique<test::FakeBackend>("fake", false));
    reg.set_auto_order("cpu", {"fake"});
  }
};

std::map<std::string, std::string> higgs_tune_metadata() {
  const QuantizationConfig qc = parse_quantization_config(R"({
    "quant_method": "higgs", "bits": 4, "p": 2, "hadamard_size": 512, "group_size": 256,
    "tune_metadata": {
      "model.layers.0.self_attn.q_proj": {"tile": 16, "warps": 4},
      "model.layers.*.mlp.down_proj": {"tile": 64}
    }})");
  const auto* h = qc.get<HiggsConfig>();
  EXPECT_NE(h, nullptr);
  return h ? h->tune_metadata : std::map<std::string, std::string>{};
}

TEST(CheckpointParams, TuneMetadataIsParsedAndFedAsTheLowestPrioritySource) {
  const auto metadata = higgs_tune_metadata();
  ASSERT_EQ(metadata.size(), 2u);
  std::vector<std::string> warnings;
  const RuntimeConfig config = build_runtime_config(with_tune_metadata(metadata), "", CliOverrides{}, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  ASSERT_EQ(config.checkpoint_params.size(), 2u);
  EXPECT_TRUE(config.overrides.empty()) << "checkpoint values are not user overrides";
  EXPECT_EQ(config.provenance_of("checkpoint_params"), "checkpoint quantization_config.tune_metadata");

  OneBackend one;
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const auto plans = plan_layers({int_layer("model.layers.0.self_attn.q_proj", 64, 64, 4, 32, ZeroKind::Symmetric),
                                  int_layer("model.layers.3.mlp.down_proj", 64, 64, 4, 32, ZeroKind::Symmetric),
                                  int_layer("model.layers.3.mlp.up_proj", 64, 64, 4, 32, ZeroKind::Symmetric)},
                                 config, cpu, nullptr, one.reg);
  for (const auto& p : plans) ASSERT_TRUE(p.ok()) << p.error;
  // Exact module name: "tile" used, "warps" (unknown to the backend) reported, not silently dropped.
  EXPECT_EQ(plans[0].choices[0].params.to_json(), R"({"tile":16})");
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Checkpoint);
  EXPECT_STREQ(param_source_name(plans[0].choices[0].source), "checkpoint tune_metadata");
  EXPECT_TRUE(any_contains(plans[0].notes, "key 'warps' {\"warps\":4} not used by fake: unknown parameter 'warps'"))
      << (plans[0].notes.empty() ? "no notes" : plans[0].notes[0]);
  // A glob entry.
  EXPECT_EQ(plans[1].choices[0].params.to_json(), R"({"tile":64})");
  EXPECT_EQ(plans[1].choices[0].source, ParamSource::Checkpoint);
  EXPECT_TRUE(plans[1].notes.empty());
  // No entry: the backend's default.
  EXPECT_EQ(plans[2].choices[0].params.to_json(), R"({"tile":32})");
  EXPECT_EQ(plans[2].choices[0].source, ParamSource::Default);
}

TEST(CheckpointParams, ConfigFileGlobalAndOverrideWinOverTheCheckpoint) {
  const auto metadata = higgs_tune_metadata();
  OneBackend one;
  const DeviceInfo cpu = target_profile("cpu-avx2");
  const LayerSpec q = int_layer("model.layers.0.self_attn.q_proj", 64, 64, 4, 32, ZeroKind::Symmetric);

  RuntimeConfig global = RuntimeConfig::from_json_text(R"({"kernel_params": {"tile": 64}})", "cfg.json",
                                                       RuntimeConfig{});
  global.apply_checkpoint_tune_metadata(metadata);
  auto plans = plan_layers({q}, global, cpu, nullptr, one.reg);
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(plans[0].choices[0].params.to_json(), R"({"tile":64})");
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Global);

  RuntimeConfig layer = RuntimeConfig::from_json_text(
      R"({"layers": {"model.layers.0.self_attn.q_proj": {"tile": 32}}})", "cfg.json", RuntimeConfig{});
  layer.apply_checkpoint_tune_metadata(metadata);
  plans = plan_layers({q}, layer, cpu, nullptr, one.reg);
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  EXPECT_EQ(plans[0].choices[0].params.to_json(), R"({"tile":32})");
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Override);
}

TEST(CheckpointParams, BadValuesAreWarningsNotErrors) {
  // A checkpoint made for another tool: values qrt cannot represent (a float, an object), a value
  // the backend rejects, and keys no backend knows. Loading goes on; each is reported.
  std::map<std::string, std::string> metadata = {
      {"model.layers.0.mlp.up_proj", R"({"tile": 48, "ratio": 0.5, "nested": {"a": 1}, "template_id": 7})"},
      {"model.layers.1.mlp.up_proj", R"([1, 2])"},
  };
  std::vector<std::string> warnings;
  const RuntimeConfig config = build_runtime_config(with_tune_metadata(metadata), "", CliOverrides{}, &warnings);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_TRUE(any_contains(warnings, "tune_metadata.model.layers.0.mlp.up_proj: kernel parameter 'ratio'")) << warnings[0];
  EXPECT_TRUE(any_contains(warnings, "kernel parameter 'nested'"));
  EXPECT_TRUE(any_contains(warnings, "model.layers.1.mlp.up_proj: expected an object"));
  ASSERT_EQ(config.checkpoint_params.size(), 1u);

  OneBackend one;
  const auto plans = plan_layers({int_layer("model.layers.0.mlp.up_proj", 64, 64, 4, 32, ZeroKind::Symmetric)}, config,
                                 target_profile("cpu-avx2"), nullptr, one.reg);
  ASSERT_TRUE(plans[0].ok()) << plans[0].error << " (a checkpoint's parameters never make planning fail)";
  EXPECT_EQ(plans[0].choices[0].params.to_json(), R"({"tile":32})");
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Default);
  EXPECT_TRUE(any_contains(plans[0].notes, "key 'tile' {\"tile\":48} not used by fake: parameter 'tile' must be 16"));
  EXPECT_TRUE(any_contains(plans[0].notes, "key 'template_id'"));
}

}  // namespace
}  // namespace qrt
