// Generation settings (length and sampling) from all their sources, decided in one place:
//   the command line  >  the runtime config file (--config: max_new_tokens)
//                     >  the checkpoint's generation_config.json  >  built-in defaults.
// Sampling follows transformers and llama.cpp: greedy unless asked to sample; giving any sampling
// parameter (temperature > 0, top-k, top-p, min-p) asks for sampling, with the other parameters
// from generation_config.json or transformers' defaults (temperature 1, top-k 50); --temp 0 is
// greedy. generation_config.json's do_sample asks for sampling too. The seed is random unless given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qrt/checkpoint.h"
#include "qrt/runtime_config.h"
#include "qrt/sampler.h"

namespace qrt {

// What the command line gave (unset = not given); `flag_*` name the flags in messages.
struct GenerationRequest {
  std::optional<int64_t> max_new_tokens;
  std::optional<int64_t> context_length;    // prompt + generated tokens (llama.cpp's -c)
  std::optional<float> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k, repeat_last_n;
  std::optional<uint64_t> seed;
};

struct GenerationSettings {
  int64_t max_new_tokens = 0;
  std::string max_new_tokens_source;        // "-n", "config file PATH", "generation_config.json", "default"
  SamplingParams sampling;
  bool sampling_on = false;
  std::string sampling_source;              // why sampling is on or off, for the log
  bool random_seed = false;                 // no --seed: drawn at random (printed, so a run can be repeated)
  std::vector<std::string> notes;           // decisions a user may not expect, one line each
  // "temp 0.7, top-k 50, seed 123 (random: --seed 123 repeats it)".
  std::string describe() const;
};

// The length without -n, config file or generation_config.json.
constexpr int64_t kDefaultMaxNewTokens = 128;

// Decides everything above; `runtime` is the runtime config built from the checkpoint, the config
// file and the other flags (build_runtime_config): its max_new_tokens (and, with a context length,
// max_input_length = context - max_new_tokens) are set to the result, with their provenance, so
// the engine's KV cache is sized for them. Throws qrt::Error(InvalidInput) naming the flag or
// file for values out of range.
GenerationSettings resolve_generation_settings(const GenerationRequest& cli, const GenerationDefaults& checkpoint,
                                               RuntimeConfig* runtime);

}  // namespace qrt
