// The error an engine reports when layers cannot be planned: its first line is a one-line summary
// a script can grep (layer, reason, what would work, how many layers fail), details after it.
#include <gtest/gtest.h>

#include "backend_test_util.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"

namespace qrt {
namespace {

using test::int_layer;

TEST(PlanErrors, FirstLineIsTheWholeSummaryAndDetailsFollow) {
  RuntimeConfig config;
  config.backend = "cuda_marlin";
  config.set_provenance("backend", "cli --backend");
  const std::vector<LayerSpec> layers = {int_layer("model.layers.0.self_attn.q_proj", 576, 576, 4, 32, ZeroKind::Symmetric),
                                         int_layer("model.layers.0.self_attn.k_proj", 576, 192, 4, 32, ZeroKind::Symmetric),
                                         int_layer("model.layers.0.self_attn.v_proj", 576, 192, 4, 32, ZeroKind::Symmetric)};
  const auto plans = plan_layers(layers, config, target_profile("cpu-avx2"));
  for (const auto& p : plans) ASSERT_FALSE(p.ok());
  const std::string msg = plan_failure_message(plans);
  const std::string first = msg.substr(0, msg.find('\n'));
  EXPECT_NE(first.find("backend cuda_marlin (from cli --backend) cannot run model.layers.0.self_attn.q_proj"),
            std::string::npos) << first;
  EXPECT_NE(first.find("would work: cpu_simd, cpu_ref"), std::string::npos) << first;
  EXPECT_NE(first.find("(3 of 3 quantized layers cannot be planned; the first is shown)"), std::string::npos) << first;
  // The details: every backend's verdict, one per line after the summary.
  EXPECT_NE(msg.find("\n  every backend's verdict:\n    cpu_simd: ok"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\n    cuda_marlin: "), std::string::npos) << msg;

  // Nothing failed: nothing to say.
  EXPECT_EQ(plan_failure_message(plan_layers(layers, RuntimeConfig{}, target_profile("cpu-avx2"))), "");
}

}  // namespace
}  // namespace qrt
