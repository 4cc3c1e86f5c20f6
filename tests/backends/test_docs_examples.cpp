// Every JSON example in the docs (README.md and docs/*.md) is run: fenced ```json blocks and inline
// `{...}` spans are parsed, and each is applied the way a user would apply it (a runtime config
// planned for a model's layers, a tuning cache loaded, kernel parameters validated by the backend
// they are written for). A copied example that fails ("unknown parameter 'split_k'" on every layer)
// is a bug in the docs or in the code, and this test names the file and the example.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "backend_test_util.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"
#include "qrt/tuning_cache.h"

namespace qrt {
namespace {

namespace fs = std::filesystem;
using test::int_layer;

struct Example {
  std::string where;   // "docs/CONFIG.md, block 1"
  std::string text;
  bool fenced = false;
};

std::vector<Example> doc_examples() {
  std::vector<fs::path> files = {fs::path(QRT_SOURCE_DIR) / "README.md"};
  for (const auto& e : fs::directory_iterator(fs::path(QRT_SOURCE_DIR) / "docs"))
    if (e.path().extension() == ".md") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<Example> out;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const std::string name = fs::relative(f, QRT_SOURCE_DIR).string();
    int block = 0;
    for (size_t at = text.find("```json\n"); at != std::string::npos; at = text.find("```json\n", at + 1)) {
      const size_t begin = at + 8, end = text.find("```", begin);
      out.push_back({name + ", json block " + std::to_string(++block), text.substr(begin, end - begin), true});
    }
    const std::regex inline_json("`(\\{[^`]*\\})`");
    for (std::sregex_iterator it(text.begin(), text.end(), inline_json), e; it != e; ++it)
      out.push_back({name + ", inline " + (*it)[1].str(), (*it)[1].str(), false});
  }
  return out;
}

// The layers of a Llama-7B-shaped GPTQ 4-bit g128 block, named as checkpoints name them.
std::vector<LayerSpec> llama_block_layers() {
  std::vector<LayerSpec> out;
  const std::pair<const char*, std::pair<int64_t, int64_t>> shapes[] = {
      {"self_attn.q_proj", {4096, 4096}}, {"self_attn.k_proj", {4096, 4096}}, {"self_attn.v_proj", {4096, 4096}},
      {"self_attn.o_proj", {4096, 4096}}, {"mlp.gate_proj", {4096, 11008}},   {"mlp.up_proj", {4096, 11008}},
      {"mlp.down_proj", {11008, 4096}}};
  for (int layer : {0, 1})
    for (const auto& [name, kn] : shapes)
      out.push_back(int_layer("model.layers." + std::to_string(layer) + "." + name, kn.first, kn.second, 4, 128,
                              ZeroKind::Symmetric));
  return out;
}

bool names_cuda_backend(const nlohmann::json& j) {
  if (j.is_string()) {
    const std::string b = backend_alias(j.get<std::string>(), nullptr);
    return b.rfind("cuda_", 0) == 0;
  }
  if (j.is_object())
    for (const auto& [k, v] : j.items())
      if (backend_alias(k, nullptr).rfind("cuda_", 0) == 0 || names_cuda_backend(v)) return true;
  if (j.is_array())
    for (const auto& v : j)
      if (names_cuda_backend(v)) return true;
  return false;
}

bool is_runtime_config(const nlohmann::json& j) {
  static const std::vector<std::string> fields = {
      "backend", "fallback", "disabled", "max_input_length", "max_new_tokens", "threads", "kernel_params", "layers",
      "tuning_cache", "use_tuning_cache", "ignore_bad_tuning_cache", "fuse_projections", "$comment"};
  if (!j.is_object() || j.empty()) return false;
  for (const auto& [k, v] : j.items())
    if (std::find(fields.begin(), fields.end(), k) == fields.end()) return false;
  return true;
}

void expect_plans_ok(const RuntimeConfig& config, const DeviceInfo& device, const std::string& where) {
  for (const auto& p : plan_layers(llama_block_layers(), config, device))
    EXPECT_TRUE(p.ok()) << where << " on " << device.describe() << ": " << p.error;
}

TEST(DocsExamples, EveryJsonExampleParsesAndApplies) {
  const std::vector<Example> examples = doc_examples();
  int fenced = 0, applied = 0;
  for (const Example& ex : examples) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(ex.text);
    } catch (const nlohmann::json::exception& e) {
      // A fenced json block must be JSON; an inline span may be a template (`{"activations": MODE}`).
      if (ex.fenced) ADD_FAILURE() << ex.where << ": not valid JSON: " << e.what();
      continue;
    }
    fenced += ex.fenced;
    SCOPED_TRACE(ex.where);
    if (j.is_object() && j.value("format", "") == "qrt-tuning-cache") {
      const fs::path file = fs::temp_directory_path() / ("qrt_docs_cache_" + std::to_string(::getpid()) + ".json");
      std::ofstream(file) << ex.text;
      EXPECT_NO_THROW(TuningCache::load(file.string(), probe_cpu())) << ex.where;
      fs::remove(file);
      ++applied;
    } else if (is_runtime_config(j)) {
      RuntimeConfig config;
      ASSERT_NO_THROW(config = RuntimeConfig::from_json_text(ex.text, ex.where, RuntimeConfig{})) << ex.where;
      // Planned for the device the example is written for: a GPU when it names a CUDA backend.
      expect_plans_ok(config, target_profile(names_cuda_backend(j) ? "h100" : "cpu-avx512"), ex.where);
      ++applied;
    } else if (j.is_object() && !j.empty() && j.begin().key().find('.') != std::string::npos) {
      // quantization_config.tune_metadata: module name or glob -> kernel parameters; never fatal.
      std::map<std::string, std::string> metadata;
      for (const auto& [k, v] : j.items()) metadata[k] = v.dump();
      RuntimeConfig config;
      config.apply_checkpoint_tune_metadata(metadata);
      expect_plans_ok(config, target_profile("h100"), ex.where);
      expect_plans_ok(config, target_profile("cpu-avx512"), ex.where);
      ++applied;
    } else if (j.is_object()) {
      // Kernel parameters (`qrt bench --params`, "kernel_params"): valid for at least one backend.
      const LayerSpec layer = int_layer("x", 4096, 4096, 4, 128, ZeroKind::Symmetric);
      std::string reasons;
      bool ok = false;
      for (const char* profile : {"cpu-avx512", "h100"}) {
        const DeviceInfo device = target_profile(profile);
        for (const Backend* b : BackendRegistry::global().all()) {
          if (b->capability().device != device.kind) continue;
          const Verdict v =
              b->validate_params(layer, b->default_params(layer, 1, device).merged(KernelParams::from_json(ex.text)));
          ok |= v.ok;
          if (!v.ok) reasons += b->name() + ": " + v.reason + "; ";
        }
      }
      EXPECT_TRUE(ok) << ex.where << ": no backend accepts these kernel parameters: " << reasons;
      ++applied;
    } else {
      ADD_FAILURE() << ex.where << ": a JSON example of a kind this test does not know how to apply";
    }
  }
  // The docs hold at least the config file and tuning cache examples of docs/CONFIG.md.
  EXPECT_GE(fenced, 2);
  EXPECT_GE(applied, 4);
}

}  // namespace
}  // namespace qrt
