// What `qrt run` and `qrt chat` share: the model and generation flags (llama.cpp's spellings
// where they mean the same), loading the model into an engine, and the closing statistics.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "cli/command.h"
#include "cli/engine_cli.h"
#include "qrt/generation_settings.h"
#include "qrt/generator.h"
#include "qrt/model.h"
#include "qrt/tokenizer.h"

namespace qrt::cli {

struct GenerateCliOptions {
  std::string model, system;
  int64_t n = 0, ctx_size = 0, max_input_length = 2048;
  int top_k = 0, repeat_last_n = 64;
  float temp = 0, top_p = 1, min_p = 0, repeat_penalty = 1;
  uint64_t seed = 0;
  bool verbose = false, ignore_eos = false;
  EngineCliOptions engine;
  CLI::Option *o_n = nullptr, *o_ctx = nullptr, *o_max_input = nullptr, *o_temp = nullptr, *o_top_k = nullptr,
              *o_top_p = nullptr, *o_min_p = nullptr, *o_repeat = nullptr, *o_repeat_last_n = nullptr,
              *o_seed = nullptr;

  // takes_prompt: the command also has -p (a MODEL that names nothing then hints at it).
  void add_to(CLI::App& app, bool takes_prompt = false);
  GenerationRequest request() const;
};

// A model ready to generate: weights, tokenizer, engine, and the settings decided for it.
struct GenerationSession {
  std::string path;
  std::shared_ptr<ModelWeights> weights;
  std::unique_ptr<Tokenizer> tokenizer;
  EngineOptions engine_options;
  std::unique_ptr<ForwardEngine> engine;
  GenerationSettings settings;
  std::string device_why;
  bool verbose = false;
  double load_seconds = 0;
  int64_t freed_weight_bytes = 0;   // canonical weights dropped once the engine packed its own

  // Generation options for one call: length, sampling, stop tokens, prompt limit.
  GenerationOptions generation_options(bool ignore_eos) const;
};

// Loads the model of `o` (with a progress bar on a terminal) and builds its engine.
GenerationSession open_generation_session(const GenerateCliOptions& o);

// The lines both commands end with: model, load time, sampling, device, backends (and memory
// with -v).
void print_session_summary(const GenerationSession& s);

}  // namespace qrt::cli
