// quantized_linear_specs() (what `qrt plan` lists) against what load_model() actually builds on the
// default GGUF model: the same layers, in the same order, with the same specs, including the
// quantized tied lm_head, and without it when LoadOptions keeps the head dense.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "qrt/checkpoint.h"
#include "qrt/model.h"

namespace qrt {
namespace {

std::string default_model_or_empty() {
  const char* p = std::getenv("QRT_DEFAULT_MODEL");
  if (!p || !*p || !std::filesystem::exists(p)) return "";
  return p;
}

void expect_same_layers(const std::vector<LayerSpec>& planned, const std::vector<LayerSpec>& loaded) {
  ASSERT_EQ(planned.size(), loaded.size());
  for (size_t i = 0; i < planned.size(); ++i) {
    EXPECT_EQ(planned[i].name, loaded[i].name) << i;
    EXPECT_EQ(planned[i].in_features, loaded[i].in_features) << planned[i].name;
    EXPECT_EQ(planned[i].out_features, loaded[i].out_features) << planned[i].name;
    EXPECT_EQ(planned[i].describe(), loaded[i].describe()) << planned[i].name;
    EXPECT_EQ(planned[i].source_format, loaded[i].source_format) << planned[i].name;
  }
}

TEST(PlanLayers, PlanListsExactlyTheQuantizedLayersTheLoaderBuilds) {
  const std::string path = default_model_or_empty();
  if (path.empty()) GTEST_SKIP() << "QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)";
  const auto ck = open_checkpoint(path);

  const std::vector<LayerSpec> planned = quantized_linear_specs(*ck);
  const auto weights = load_model(path);
  expect_same_layers(planned, weights->quantized_layer_specs());
  ASSERT_FALSE(planned.empty());
  EXPECT_EQ(planned.back().name, "lm_head") << "the tied Q8_0 embedding runs as a quantized lm_head";
  EXPECT_EQ(planned.size(), static_cast<size_t>(weights->config.num_layers * 7 + 1));

  LoadOptions dense_head;
  dense_head.quantized_tied_head = false;
  const std::vector<LayerSpec> planned_dense = quantized_linear_specs(*ck, dense_head);
  const auto weights_dense = load_model(path, dense_head);
  expect_same_layers(planned_dense, weights_dense->quantized_layer_specs());
  EXPECT_EQ(planned_dense.size(), planned.size() - 1);
  EXPECT_TRUE(weights_dense->lm_head_uses_embedding());
}

}  // namespace
}  // namespace qrt
