// A tiny random model written as a Hugging Face folder (config.json + model.safetensors, no
// tokenizer) in a temporary directory per test, and the helpers the tests on it share.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>

#include "qrt/device.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/safetensors.h"
#include "tiny_model.h"

namespace qrt {

namespace fs = std::filesystem;


inline nlohmann::json tiny_config_json(const ModelConfig& c) {
  return {{"architectures", {c.architecture}},
          {"model_type", c.model_type},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_hidden_layers", c.num_layers},
          {"num_attention_heads", c.num_heads},
          {"num_key_value_heads", c.num_kv_heads},
          {"rms_norm_eps", c.rms_norm_eps},
          {"rope_theta", c.rope_theta},
          {"max_position_embeddings", c.max_position_embeddings},
          {"tie_word_embeddings", true},
          {"torch_dtype", "float32"}};
}

// Logits of every token through the CPU engine (float32 weights) on an engine that holds
// `positions` positions per sequence (0: max(16, tokens); the count picks longrope's factors).
inline std::vector<float> logits_of(std::shared_ptr<const ModelWeights> w, const std::vector<int32_t>& tokens,
                                    int64_t positions = 0) {
  EngineOptions o;
  o.runtime.max_input_length = positions > 0 ? positions : std::max<int64_t>(16, static_cast<int64_t>(tokens.size()));
  o.runtime.max_new_tokens = 0;
  o.runtime.threads = 1;
  o.runtime.use_tuning_cache = false;
  o.device = probe_cpu();
  o.dense_dtype = DenseDType::F32;
  auto engine = make_cpu_engine(std::move(w), o);
  std::vector<float> logits(tokens.size() * engine->config().vocab_size);
  engine->forward(tokens.data(), static_cast<int64_t>(tokens.size()), 0, logits.data(), true);
  return logits;
}

class SyntheticFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qrt_model_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    weights_ = testing::tiny_weights(testing::tiny_config(), 31);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes config.json + model.safetensors from weights_ (optionally with one tensor's shape or
  // the config altered by the caller).
  void write(const nlohmann::json& config, const std::string& skip = "", const std::string& bad_shape = "") {
    std::ofstream(dir_ / "config.json") << config.dump(1);
    SafetensorsWriter st((dir_ / "model.safetensors").string());
    const auto& w = *weights_;
    const int64_t h = w.config.hidden_size;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
      if (name == skip) return;
      if (name == bad_shape) shape[0] -= 1;
      int64_t n = 1;
      for (auto d : shape) n *= d;
      st.add_float(name, DType::F32, shape, std::span<const float>(v.data(), static_cast<size_t>(n)));
    };
    add("model.embed_tokens.weight", {w.config.vocab_size, h}, w.embed_tokens);
    for (size_t i = 0; i < w.layers.size(); ++i) {
      const auto& l = w.layers[i];
      const std::string p = "model.layers." + std::to_string(i) + ".";
      add(p + "input_layernorm.weight", {h}, l.input_norm);
      add(p + "post_attention_layernorm.weight", {h}, l.post_attention_norm);
      for (const LinearWeight* lw : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
        add(lw->name + ".weight", {lw->out_features, lw->in_features}, lw->dense);
    }
    add("model.norm.weight", {h}, w.final_norm);
    st.write();
  }

  std::string expect_error(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected a qrt::Error";
    return "";
  }

  fs::path dir_;
  std::shared_ptr<ModelWeights> weights_;
};

}  // namespace qrt
