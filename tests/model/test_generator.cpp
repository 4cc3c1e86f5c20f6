// Generator on a tiny random model: prompt checks, token budget, stop tokens, determinism,
// KV cache exhaustion, that generation reproduces step-by-step greedy decoding, a cached prefix
// (chat turns) and an interrupt.
#include <gtest/gtest.h>

#include "qrt/error.h"
#include "qrt/generator.h"
#include "tiny_model.h"

namespace qrt {
namespace {

std::unique_ptr<ForwardEngine> tiny_engine(int64_t max_input, int64_t max_new) {
  EngineOptions o;
  o.runtime.max_input_length = max_input;
  o.runtime.max_new_tokens = max_new;
  o.runtime.threads = 1;
  o.runtime.use_tuning_cache = false;
  o.device = probe_cpu();
  return make_cpu_engine(testing::tiny_weights(testing::tiny_config(), 21), o);
}

TEST(Generator, EmptyAndTooLongPromptsAreClearErrors) {
  auto engine = tiny_engine(8, 4);
  Generator gen(*engine);
  GenerationOptions go;
  go.max_input_length = 8;
  try {
    gen.generate({}, go);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos) << e.what();
  }
  std::vector<int32_t> long_prompt(9, 3);
  try {
    gen.generate(long_prompt, go);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_input_length"), std::string::npos) << e.what();
  }
}

TEST(Generator, GreedyEqualsManualArgmaxDecoding) {
  auto engine = tiny_engine(16, 8);
  const std::vector<int32_t> prompt = {1, 7, 30, 2};
  // By hand: forward, argmax, feed back.
  const int64_t V = engine->config().vocab_size;
  std::vector<float> logits(V);
  std::vector<int32_t> expect;
  engine->forward(prompt.data(), 4, 0, logits.data());
  for (int i = 0; i < 6; ++i) {
    const int32_t id = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    expect.push_back(id);
    engine->forward(&id, 1, 4 + i, logits.data());
  }
  Generator gen(*engine);
  GenerationOptions go;
  go.max_new_tokens = 6;
  std::vector<int32_t> streamed;
  auto r = gen.generate(prompt, go, [&](int32_t id) {
    streamed.push_back(id);
    return true;
  });
  EXPECT_EQ(r.tokens, expect);
  EXPECT_EQ(streamed, expect);
  EXPECT_EQ(r.prompt_tokens, 4);
  EXPECT_EQ(r.decode_steps, 5);  // the first token comes from the prefill
  EXPECT_EQ(r.stop_reason, "max new tokens");

  // A stop token ends generation before it is emitted.
  go.stop_tokens = {expect[2]};
  auto s = gen.generate(prompt, go);
  const auto first_stop = std::find(expect.begin(), expect.end(), expect[2]) - expect.begin();
  EXPECT_EQ(s.tokens, std::vector<int32_t>(expect.begin(), expect.begin() + first_stop));
  EXPECT_EQ(s.stop_reason, "stop token");

  // The caller can stop it.
  go.stop_tokens.clear();
  int calls = 0;
  auto c = gen.generate(prompt, go, [&](int32_t) { return ++calls < 2; });
  EXPECT_EQ(c.tokens.size(), 2u);
  EXPECT_EQ(c.stop_reason, "stopped by caller");
}

TEST(Generator, SeededSamplingIsDeterministic) {
  auto engine = tiny_engine(16, 12);
  Generator gen(*engine);
  GenerationOptions go;
  go.max_new_tokens = 12;
  go.sampling.temperature = 1.5f;
  go.sampling.top_p = 0.95f;
  go.sampling.seed = 5;
  const std::vector<int32_t> prompt = {4, 9};
  auto a = gen.generate(prompt, go);
  auto b = gen.generate(prompt, go);
  EXPECT_EQ(a.tokens, b.tokens);
  go.sampling.seed = 6;
  bool differs = false;
  for (uint64_t seed = 6; seed < 12 && !differs; ++seed) {
    go.sampling.seed = seed;
    differs = gen.generate(prompt, go).tokens != a.tokens;
  }
  EXPECT_TRUE(differs);
}

TEST(GenerationStream, SteppingGivesWhatGeneratorGives) {
  auto engine = tiny_engine(16, 12);
  GenerationOptions go;
  go.max_new_tokens = 9;
  go.sampling.temperature = 0.8f;
  go.sampling.seed = 3;
  const std::vector<int32_t> prompt = {5, 11, 2};
  const GenerationResult whole = Generator(*engine).generate(prompt, go);

  GenerationStream stream(*engine, prompt, go);
  std::vector<int32_t> stepped;
  while (const auto id = stream.next()) stepped.push_back(*id);
  EXPECT_EQ(stepped, whole.tokens);
  EXPECT_TRUE(stream.done());
  EXPECT_EQ(stream.result().stop_reason, "max new tokens");
  EXPECT_EQ(stream.result().decode_steps, 8);
  EXPECT_FALSE(stream.next().has_value());  // stays ended

  // stop() ends it where the caller is; the ids so far are the same prefix.
  GenerationStream early(*engine, prompt, go);
  ASSERT_TRUE(early.next().has_value());
  ASSERT_TRUE(early.next().has_value());
  early.stop();
  EXPECT_FALSE(early.next().has_value());
  EXPECT_EQ(early.result().stop_reason, "stopped by caller");
  EXPECT_EQ(early.result().tokens, std::vector<int32_t>(whole.tokens.begin(), whole.tokens.begin() + 2));

  // No tokens asked for: ends at once, after the prefill.
  go.max_new_tokens = 0;
  GenerationStream none(*engine, prompt, go);
  EXPECT_FALSE(none.next().has_value());
  EXPECT_EQ(none.result().stop_reason, "max new tokens");
}

TEST(Generator, StopsWhenTheKvCacheIsFull) {
  // Capacity 4 + 3 = 7 positions; a 4-token prompt leaves room for 3 more forwards.
  auto engine = tiny_engine(4, 3);
  Generator gen(*engine);
  GenerationOptions go;
  go.max_new_tokens = 10;
  auto r = gen.generate({1, 2, 3, 4}, go);
  EXPECT_EQ(r.stop_reason, "context full");
  EXPECT_EQ(r.tokens.size(), 4u);  // 1 from prefill + 3 decode steps
}

// A chat's second turn: the cache already holds the first turn (prompt + generated tokens), so
// only the new tokens are prefilled, and the result equals generating from an empty cache.
TEST(Generator, CachedPrefixContinuesLikeAFreshPrefill) {
  auto engine = tiny_engine(32, 8);
  Generator gen(*engine);
  GenerationOptions go;
  go.max_new_tokens = 5;
  const std::vector<int32_t> first = {1, 7, 30, 2};
  const GenerationResult r1 = gen.generate(first, go);
  ASSERT_EQ(r1.stop_reason, "max new tokens");
  std::vector<int32_t> second = first;
  second.insert(second.end(), r1.tokens.begin(), r1.tokens.begin() + r1.decode_steps);  // what the cache holds
  const int64_t cached = static_cast<int64_t>(second.size());
  for (int32_t t : {5, 9, 11}) second.push_back(t);
  go.cached_prefix = cached;
  const GenerationResult continued = gen.generate(second, go);
  EXPECT_EQ(continued.prompt_tokens, 3);
  go.cached_prefix = 0;
  auto fresh_engine = tiny_engine(32, 8);
  Generator fresh(*fresh_engine);
  const GenerationResult expect = fresh.generate(second, go);
  EXPECT_EQ(expect.prompt_tokens, static_cast<int64_t>(second.size()));
  EXPECT_EQ(continued.tokens, expect.tokens);
}

// A set interrupt flag (Ctrl-C) stops before the next token, with what was generated so far.
TEST(Generator, InterruptStopsBeforeTheNextToken) {
  auto engine = tiny_engine(16, 8);
  Generator gen(*engine);
  std::atomic<bool> stop{false};
  GenerationOptions go;
  go.max_new_tokens = 8;
  go.interrupt = &stop;
  int seen = 0;
  const GenerationResult r = gen.generate({1, 7, 30, 2}, go, [&](int32_t) {
    if (++seen == 3) stop = true;
    return true;
  });
  EXPECT_EQ(r.stop_reason, "interrupted");
  EXPECT_EQ(r.tokens.size(), 3u);
}

}  // namespace
}  // namespace qrt
