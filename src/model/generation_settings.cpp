// See qrt/generation_settings.h for the rules; this file applies them field by field, remembering
// where each value came from so the log and the errors can say it.
#include "qrt/generation_settings.h"

#include <cmath>
#include <random>

#include <fmt/format.h>

#include "qrt/error.h"

namespace qrt {
namespace {

constexpr const char* kGenerationConfig = "generation_config.json";

// transformers' GenerationConfig defaults where generation_config.json is silent.
constexpr float kDefaultTemperature = 1.0f;
constexpr int kDefaultTopK = 50;
// llama.cpp's window for its --repeat-penalty; transformers' penalty covers the whole sequence.
constexpr int kLlamaRepeatLastN = 64;

uint64_t random_seed() {
  std::random_device rd;
  return rd();  // 32 bits: short to type back with --seed
}

template <typename T>
void check_range(std::optional<T> v, const char* what, const std::string& source, bool ok) {
  if (v && !ok) throw invalid_input(fmt::format("{}: {} {} is out of range", source, what, *v));
}

}  // namespace

std::string GenerationSettings::describe() const {
  std::string s = sampling.describe();
  if (sampling_on && random_seed) s += fmt::format(" (random: --seed {} repeats it)", sampling.seed);
  return s;
}

GenerationSettings resolve_generation_settings(const GenerationRequest& cli, const GenerationDefaults& gc,
                                               RuntimeConfig* runtime) {
  GenerationSettings g;

  // Length: -n > config file > generation_config.json > default.
  const std::string config_source = runtime->provenance_of("max_new_tokens");
  if (cli.max_new_tokens) {
    g.max_new_tokens = *cli.max_new_tokens;
    g.max_new_tokens_source = "-n";
  } else if (config_source.rfind("config file", 0) == 0) {
    g.max_new_tokens = runtime->max_new_tokens;
    g.max_new_tokens_source = config_source;
  } else if (gc.max_new_tokens) {
    g.max_new_tokens = *gc.max_new_tokens;
    g.max_new_tokens_source = kGenerationConfig;
  } else {
    g.max_new_tokens = kDefaultMaxNewTokens;
    g.max_new_tokens_source = "default";
  }
  if (g.max_new_tokens < 0)
    throw invalid_input(fmt::format("{}: max_new_tokens {} must be >= 0", g.max_new_tokens_source, g.max_new_tokens));
  runtime->max_new_tokens = g.max_new_tokens;
  runtime->set_provenance("max_new_tokens", g.max_new_tokens_source);
  if (cli.context_length) {
    const int64_t ctx = *cli.context_length;
    if (ctx <= g.max_new_tokens)
      throw invalid_input(fmt::format("-c {} leaves no room for a prompt next to {} new tokens ({}): raise -c or "
                                      "lower -n",
                                      ctx, g.max_new_tokens, g.max_new_tokens_source));
    runtime->max_input_length = ctx - g.max_new_tokens;
    runtime->set_provenance("max_input_length", "-c");
  }

  // Sampling values given anywhere, checked where they came from.
  check_range(cli.temperature, "--temp", "command line", !cli.temperature || (std::isfinite(*cli.temperature) && *cli.temperature >= 0));
  check_range(gc.temperature, "temperature", kGenerationConfig, !gc.temperature || (std::isfinite(*gc.temperature) && *gc.temperature >= 0));
  check_range(gc.top_k, "top_k", kGenerationConfig, !gc.top_k || (*gc.top_k >= 0 && *gc.top_k <= INT32_MAX));
  check_range(gc.top_p, "top_p", kGenerationConfig, !gc.top_p || (*gc.top_p > 0 && *gc.top_p <= 1));
  check_range(gc.min_p, "min_p", kGenerationConfig, !gc.min_p || (*gc.min_p >= 0 && *gc.min_p <= 1));
  check_range(gc.repetition_penalty, "repetition_penalty", kGenerationConfig,
              !gc.repetition_penalty || (std::isfinite(*gc.repetition_penalty) && *gc.repetition_penalty > 0));

  const bool cli_filters = cli.top_k || cli.top_p || cli.min_p;
  SamplingParams& sp = g.sampling;
  if (cli.temperature) {
    g.sampling_on = *cli.temperature > 0;
    g.sampling_source = g.sampling_on ? "--temp" : "--temp 0 (greedy)";
    if (!g.sampling_on && cli_filters)
      g.notes.push_back("--temp 0 is greedy decoding: --top-k, --top-p and --min-p are not used");
  } else if (cli_filters) {
    g.sampling_on = true;
    g.sampling_source = cli.top_k ? "--top-k" : cli.top_p ? "--top-p" : "--min-p";
    g.notes.push_back(fmt::format("{} turns sampling on (as in llama.cpp; transformers would need do_sample): "
                                  "temperature {:g}{}; --temp 0 is greedy",
                                  g.sampling_source, gc.temperature ? *gc.temperature : kDefaultTemperature,
                                  gc.temperature ? " from generation_config.json" : " (transformers' default)"));
  } else if (gc.do_sample.value_or(false)) {
    g.sampling_on = true;
    g.sampling_source = "generation_config.json do_sample";
  } else {
    g.sampling_source = "default";
  }
  if (g.sampling_on) {
    sp.temperature = cli.temperature ? *cli.temperature
                     : gc.temperature ? static_cast<float>(*gc.temperature) : kDefaultTemperature;
    if (sp.temperature <= 0) {  // generation_config.json's own temperature 0 with do_sample
      g.sampling_on = false;
      g.sampling_source += " with temperature 0 (greedy)";
    }
  }
  if (g.sampling_on) {
    sp.top_k = cli.top_k ? *cli.top_k : gc.top_k ? static_cast<int>(*gc.top_k) : kDefaultTopK;
    sp.top_p = cli.top_p ? *cli.top_p : gc.top_p ? static_cast<float>(*gc.top_p) : 1.0f;
    sp.min_p = cli.min_p ? *cli.min_p : gc.min_p ? static_cast<float>(*gc.min_p) : 0.0f;
  } else {
    sp.temperature = 0;
  }
  // The repetition penalty applies greedy or not (a logits processor in both libraries).
  if (cli.repetition_penalty) {
    sp.repetition_penalty = *cli.repetition_penalty;
    sp.repetition_last_n = kLlamaRepeatLastN;
  } else if (gc.repetition_penalty) {
    sp.repetition_penalty = static_cast<float>(*gc.repetition_penalty);
    sp.repetition_last_n = -1;  // transformers: the whole sequence
  }
  if (cli.repeat_last_n) sp.repetition_last_n = *cli.repeat_last_n;
  g.random_seed = !cli.seed;
  sp.seed = cli.seed ? *cli.seed : random_seed();
  sp.validate();
  return g;
}

}  // namespace qrt
