// Fused q/k/v and gate/up projections (src/model/fused_projections.h): which groups fuse, why the
// others do not, and that the fused weight dequantizes to the parts' weights stacked along N.
#include <gtest/gtest.h>

#include <map>

#include "model/fused_projections.h"
#include "qrt/error.h"
#include "quant/rtn.h"
#include "tiny_model.h"

namespace qrt {
namespace {

std::shared_ptr<ModelWeights> quantized_tiny(int group_size, bool asym) {
  auto w = testing::tiny_weights(testing::tiny_config(), 9);
  for (auto& l : w->layers)
    for (LinearWeight* lw : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      lw->quantized = std::make_shared<QuantizedWeight>(quant::rtn_quantize(
          lw->name, lw->dense.data(), lw->out_features, lw->in_features, 4, group_size, !asym));
      lw->dense.clear();
    }
  return w;
}

TEST(FusedProjections, GroupsAreQkvThenGateUpPerBlockWithReadableNames) {
  auto w = quantized_tiny(32, false);
  const auto groups = projection_groups(*w);
  ASSERT_EQ(groups.size(), 2 * w->layers.size());
  EXPECT_EQ(groups[0].name, "model.layers.0.self_attn.q_proj+k_proj+v_proj");
  EXPECT_EQ(groups[0].parts.size(), 3u);
  EXPECT_EQ(groups[1].name, "model.layers.0.mlp.gate_proj+up_proj");
  EXPECT_EQ(groups[1].parts.size(), 2u);
  const auto specs = fused_layer_specs(*w, RuntimeConfig{});
  ASSERT_EQ(specs.size(), groups.size());
  const ModelConfig& c = w->config;
  EXPECT_EQ(specs[0].out_features, (c.num_heads + 2 * c.num_kv_heads) * c.head_dim);
  EXPECT_EQ(specs[1].out_features, 2 * c.intermediate_size);
  EXPECT_EQ(specs[1].in_features, c.hidden_size);
}

TEST(FusedProjections, FusedWeightDequantizesToThePartsStackedAlongN) {
  for (bool asym : {false, true}) {
    auto w = quantized_tiny(32, asym);
    const auto groups = projection_groups(*w);
    for (const auto& g : {groups[0], groups[1]}) {
      ASSERT_EQ(fusion_obstacle(g, RuntimeConfig{}), "");
      const auto fused = fuse_weights(g);
      const std::vector<float> all = dequantize_reference(*fused);
      size_t offset = 0;
      for (const LinearWeight* p : g.parts) {
        const std::vector<float> part = dequantize_reference(*p->quantized);
        ASSERT_LE(offset + part.size(), all.size());
        for (size_t i = 0; i < part.size(); ++i) ASSERT_EQ(all[offset + i], part[i]) << g.name << " " << p->name;
        offset += part.size();
      }
      EXPECT_EQ(offset, all.size());
      EXPECT_EQ(fused->spec.name, g.name);
    }
  }
}

TEST(FusedProjections, SpecsFromACheckpointListAndLoadFusedAgreeWithTheLoadedModel) {
  auto w = quantized_tiny(32, true);
  const auto from_model = fused_layer_specs(*w, RuntimeConfig{});
  const auto from_specs = fused_layer_specs(w->quantized_layer_specs(), RuntimeConfig{});
  ASSERT_EQ(from_specs.size(), from_model.size());
  std::map<std::string, const LinearWeight*> by_name;
  for (const auto& l : w->layers)
    for (const LinearWeight* lw : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
      by_name[lw->name] = lw;
  const auto groups = projection_groups(*w);
  for (size_t i = 0; i < from_specs.size(); ++i) {
    EXPECT_EQ(from_specs[i].name, from_model[i].name);
    EXPECT_EQ(from_specs[i].out_features, from_model[i].out_features);
    const QuantizedWeight loaded = load_fused(from_specs[i].name, [&](const std::string& n) {
      return *by_name.at(n)->quantized;
    });
    EXPECT_EQ(loaded.codes, fuse_weights(groups[i])->codes) << from_specs[i].name;
    EXPECT_EQ(loaded.zeros, fuse_weights(groups[i])->zeros) << from_specs[i].name;
  }
  EXPECT_THROW(load_fused("model.layers.0.self_attn.q_proj", [](const std::string&) { return QuantizedWeight{}; }),
               Error);
}

TEST(FusedProjections, ObstaclesNameTheReason) {
  auto w = quantized_tiny(32, false);
  auto groups = projection_groups(*w);
  RuntimeConfig off;
  off.fuse_projections = false;
  EXPECT_NE(fusion_obstacle(groups[0], off).find("fuse_projections is off"), std::string::npos);

  RuntimeConfig with_override;
  with_override.overrides.push_back(LayerOverride{"model.layers.0.self_attn.k_proj", "cpu_ref", {}});
  EXPECT_NE(fusion_obstacle(groups[0], with_override).find("k_proj has a per-layer override"), std::string::npos);
  EXPECT_EQ(fusion_obstacle(groups[2], with_override), "") << "block 1 is not named by the override";

  // A part in another format (group size 16 instead of 32) keeps its block unfused.
  auto& l0 = w->layers[0];
  std::vector<float> dense = dequantize_reference(*l0.v_proj.quantized);
  l0.v_proj.quantized = std::make_shared<QuantizedWeight>(
      quant::rtn_quantize(l0.v_proj.name, dense.data(), l0.v_proj.out_features, l0.v_proj.in_features, 4, 16, true));
  const std::string why = fusion_obstacle(groups[0], RuntimeConfig{});
  EXPECT_NE(why.find("g16"), std::string::npos) << why;
  EXPECT_THROW(fuse_weights(groups[0]), Error);

  // A bias on one part only.
  auto up_bias = std::make_shared<QuantizedWeight>(*l0.up_proj.quantized);
  up_bias->bias.assign(static_cast<size_t>(up_bias->N()), 0.5f);
  up_bias->spec.has_bias = true;
  l0.up_proj.quantized = up_bias;
  EXPECT_NE(fusion_obstacle(groups[1], RuntimeConfig{}).find("bias"), std::string::npos);

  // A dense part.
  auto& l1 = w->layers[1];
  l1.gate_proj.dense = dequantize_reference(*l1.gate_proj.quantized);
  l1.gate_proj.quantized.reset();
  EXPECT_NE(fusion_obstacle(groups[3], RuntimeConfig{}).find("not quantized"), std::string::npos);
  EXPECT_EQ(fused_layer_specs(*w, RuntimeConfig{}).size(), 1u) << "only block 1's q/k/v still fuses";
}

}  // namespace
}  // namespace qrt
