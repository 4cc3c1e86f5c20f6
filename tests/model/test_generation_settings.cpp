// Generation settings from their sources: the precedence of max_new_tokens level by level (CLI >
// config file > generation_config.json > default), -c as the whole context, and when sampling is
// on (transformers / llama.cpp semantics) with a random seed unless one is given.
#include <gtest/gtest.h>

#include "qrt/error.h"
#include "qrt/generation_settings.h"

namespace qrt {
namespace {

RuntimeConfig from_file(int64_t max_new_tokens) {
  RuntimeConfig c = RuntimeConfig::from_json_text(
      "{\"max_new_tokens\": " + std::to_string(max_new_tokens) + "}", "run.json", RuntimeConfig{});
  return c;
}

TEST(GenerationSettings, MaxNewTokensPrecedenceLevelByLevel) {
  GenerationDefaults gc;
  gc.max_new_tokens = 40;
  GenerationRequest cli;
  cli.max_new_tokens = 7;

  RuntimeConfig rc = from_file(25);
  GenerationSettings g = resolve_generation_settings(cli, gc, &rc);
  EXPECT_EQ(g.max_new_tokens, 7);  // the command line over everything
  EXPECT_EQ(g.max_new_tokens_source, "-n");
  EXPECT_EQ(rc.max_new_tokens, 7);  // the KV cache is sized for it

  rc = from_file(25);
  g = resolve_generation_settings(GenerationRequest{}, gc, &rc);
  EXPECT_EQ(g.max_new_tokens, 25);  // the config file over generation_config.json
  EXPECT_NE(g.max_new_tokens_source.find("config file"), std::string::npos) << g.max_new_tokens_source;

  rc = RuntimeConfig{};
  g = resolve_generation_settings(GenerationRequest{}, gc, &rc);
  EXPECT_EQ(g.max_new_tokens, 40);  // generation_config.json over the default
  EXPECT_EQ(g.max_new_tokens_source, "generation_config.json");
  EXPECT_EQ(rc.provenance_of("max_new_tokens"), "generation_config.json");

  rc = RuntimeConfig{};
  g = resolve_generation_settings(GenerationRequest{}, GenerationDefaults{}, &rc);
  EXPECT_EQ(g.max_new_tokens, kDefaultMaxNewTokens);
  EXPECT_EQ(g.max_new_tokens_source, "default");
  EXPECT_EQ(rc.max_new_tokens, kDefaultMaxNewTokens);
}

TEST(GenerationSettings, ContextLengthLeavesRoomForTheNewTokens) {
  GenerationRequest cli;
  cli.max_new_tokens = 100;
  cli.context_length = 4096;
  RuntimeConfig rc;
  resolve_generation_settings(cli, GenerationDefaults{}, &rc);
  EXPECT_EQ(rc.max_input_length + rc.max_new_tokens, 4096);
  cli.context_length = 100;
  rc = RuntimeConfig{};
  EXPECT_THROW(resolve_generation_settings(cli, GenerationDefaults{}, &rc), Error);
}

TEST(GenerationSettings, GreedyUnlessSamplingIsAskedFor) {
  RuntimeConfig rc;
  GenerationSettings g = resolve_generation_settings(GenerationRequest{}, GenerationDefaults{}, &rc);
  EXPECT_FALSE(g.sampling_on);
  EXPECT_EQ(g.sampling.temperature, 0.0f);
  EXPECT_EQ(g.sampling.describe(), "greedy");

  // --top-k alone turns sampling on, at transformers' default temperature, and says so.
  GenerationRequest topk;
  topk.top_k = 40;
  g = resolve_generation_settings(topk, GenerationDefaults{}, &rc);
  EXPECT_TRUE(g.sampling_on);
  EXPECT_EQ(g.sampling.temperature, 1.0f);
  EXPECT_EQ(g.sampling.top_k, 40);
  ASSERT_EQ(g.notes.size(), 1u);
  EXPECT_NE(g.notes[0].find("--top-k"), std::string::npos) << g.notes[0];

  // ... or at generation_config.json's temperature when it has one.
  GenerationDefaults gc;
  gc.temperature = 0.6;
  gc.top_p = 0.9;
  g = resolve_generation_settings(topk, gc, &rc);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.6f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);

  // --temp 0 is greedy whatever else is given, with a note.
  GenerationRequest zero = topk;
  zero.temperature = 0;
  g = resolve_generation_settings(zero, gc, &rc);
  EXPECT_FALSE(g.sampling_on);
  EXPECT_EQ(g.sampling.temperature, 0.0f);
  EXPECT_EQ(g.notes.size(), 1u);

  // do_sample in generation_config.json samples with its values, transformers' top-k 50 otherwise.
  gc.do_sample = true;
  g = resolve_generation_settings(GenerationRequest{}, gc, &rc);
  EXPECT_TRUE(g.sampling_on);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.6f);
  EXPECT_EQ(g.sampling.top_k, 50);
}

TEST(GenerationSettings, SeedIsRandomUnlessGivenAndNamedInTheDescription) {
  GenerationRequest cli;
  cli.temperature = 0.8f;
  RuntimeConfig rc;
  const GenerationSettings a = resolve_generation_settings(cli, GenerationDefaults{}, &rc);
  EXPECT_TRUE(a.random_seed);
  EXPECT_NE(a.describe().find("--seed " + std::to_string(a.sampling.seed)), std::string::npos) << a.describe();
  cli.seed = 1234;
  const GenerationSettings b = resolve_generation_settings(cli, GenerationDefaults{}, &rc);
  EXPECT_FALSE(b.random_seed);
  EXPECT_EQ(b.sampling.seed, 1234u);
  EXPECT_EQ(b.describe().find("random"), std::string::npos);
}

TEST(GenerationSettings, RepetitionPenaltyWindowFollowsItsSource) {
  RuntimeConfig rc;
  GenerationDefaults gc;
  gc.repetition_penalty = 1.1;
  GenerationSettings g = resolve_generation_settings(GenerationRequest{}, gc, &rc);
  EXPECT_FLOAT_EQ(g.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(g.sampling.repetition_last_n, -1);  // transformers: the whole sequence
  GenerationRequest cli;
  cli.repetition_penalty = 1.3f;
  g = resolve_generation_settings(cli, gc, &rc);
  EXPECT_FLOAT_EQ(g.sampling.repetition_penalty, 1.3f);
  EXPECT_EQ(g.sampling.repetition_last_n, 64);  // llama.cpp's --repeat-last-n default
}

TEST(GenerationSettings, BadValuesNameTheirSource) {
  RuntimeConfig rc;
  GenerationDefaults gc;
  gc.temperature = -1;
  try {
    resolve_generation_settings(GenerationRequest{}, gc, &rc);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("generation_config.json"), std::string::npos) << e.what();
  }
  gc = GenerationDefaults{};
  gc.max_new_tokens = -5;
  EXPECT_THROW(resolve_generation_settings(GenerationRequest{}, gc, &rc), Error);
}

}  // namespace
}  // namespace qrt
