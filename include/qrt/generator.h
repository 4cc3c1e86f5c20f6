// Text generation on any ForwardEngine: prefill the prompt, then sample and decode one token at a
// time until a stop token, the token budget or the end of the KV cache; streams each token (and,
// through the tokenizer's StreamDecoder, complete UTF-8 text) to a callback; times both phases.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "qrt/model.h"
#include "qrt/sampler.h"
#include "qrt/tokenizer.h"

namespace qrt {

struct GenerationOptions {
  int64_t max_new_tokens = 128;
  // Longest accepted prompt; 0 = the engine's capacity. A longer prompt is an error, never truncated.
  int64_t max_input_length = 0;
  SamplingParams sampling;
  std::vector<int32_t> stop_tokens;   // generation ends when one is sampled (it is not emitted)
  // Only ids below this are sampled (0 = the whole vocabulary). generate_text() sets it to the
  // tokenizer's size: a vocabulary padded past the tokenizer has rows no text maps to.
  int64_t sample_vocab = 0;
  // Prompt tokens the engine's KV cache already holds at positions [0, cached_prefix) from an
  // earlier call (a chat's previous turns): only the rest is prefilled. The caller guarantees they
  // are the same tokens; at most prompt size - 1 is used (the last token's logits are needed).
  int64_t cached_prefix = 0;
  // When set (e.g. by a SIGINT handler), generation stops before the next token ("interrupted").
  const std::atomic<bool>* interrupt = nullptr;
};

struct GenerationResult {
  std::vector<int32_t> tokens;        // generated ids, without the stop token
  int64_t prompt_tokens = 0;          // prefilled by this call (the prompt less cached_prefix)
  double prompt_seconds = 0;          // prefill forward
  int64_t decode_steps = 0;           // single-token forward passes after the prefill
  double decode_seconds = 0;          // those passes plus sampling
  std::string stop_reason;            // "stop token", "max new tokens", "context full", "stopped by caller",
                                      // "interrupted"
  // The engine's KV cache now holds the prompt and then tokens[0, decode_steps) (the last sampled
  // token is never run through the model).
  double prompt_tokens_per_second() const { return prompt_seconds > 0 ? prompt_tokens / prompt_seconds : 0; }
  double decode_tokens_per_second() const { return decode_seconds > 0 ? decode_steps / decode_seconds : 0; }
};

// One generation, advanced a token at a time by the caller (what Generator runs to the end, and
// what a streaming iterator steps): the constructor checks the prompt and runs the prefill; each
// next() samples a token and, before sampling the one after it, feeds it back through the engine.
// The engine must outlive the stream and not be used by anything else until it is done.
class GenerationStream {
 public:
  // Throws qrt::Error for an empty prompt, one longer than max_input_length or the KV cache, or a
  // negative max_new_tokens.
  GenerationStream(ForwardEngine& engine, const std::vector<int32_t>& prompt, const GenerationOptions& options);
  // The next generated id, or nullopt once generation has ended (result().stop_reason says why).
  std::optional<int32_t> next();
  // Ends generation early: result().stop_reason becomes "stopped by caller".
  void stop();
  bool done() const { return done_; }
  const GenerationResult& result() const { return result_; }

 private:
  void finish(const char* reason);
  ForwardEngine& engine_;
  GenerationOptions options_;
  Sampler sampler_;
  std::vector<float> logits_;
  int64_t sample_vocab_ = 0;         // ids below this are sampled (GenerationOptions::sample_vocab)
  bool greedy_ = false;              // the engine picks the token (forward_greedy), no logits here
  int32_t greedy_next_ = 0;          // that token, for the next call of next()
  std::vector<int32_t> history_;     // prompt + generated ids (the repetition penalty's window)
  int64_t pos_ = 0;                  // positions the KV cache holds
  bool feed_last_ = false;           // the last generated id still has to go through the engine
  bool done_ = false;
  GenerationResult result_;
};

class Generator {
 public:
  explicit Generator(ForwardEngine& engine) : engine_(engine) {}
  // on_token(id) is called for every generated id; returning false stops generation.
  // Throws qrt::Error for an empty prompt or one longer than max_input_length.
  GenerationResult generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                            const std::function<bool(int32_t)>& on_token = {});
  // Same, streaming decoded text (special tokens skipped) to on_text as it becomes complete UTF-8.
  GenerationResult generate_text(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                                 const GenerationOptions& options,
                                 const std::function<void(const std::string&)>& on_text);

 private:
  ForwardEngine& engine_;
};

// The tokenizer of a model path: tokenizer.json of a HF folder, or the GGUF metadata. Throws
// qrt::Error naming the folder when it has no tokenizer, and naming both files when the tokenizer
// has more tokens than the model's vocab_size (a smaller one is fine: padded vocabularies are
// common, and their extra ids are never sampled).
Tokenizer load_tokenizer(const std::string& model_path);

// Stop ids for a model: config/generation_config eos ids plus the tokenizer's end-of-turn ids.
std::vector<int32_t> stop_tokens_for(const ModelConfig& config, const Tokenizer& tokenizer);

}  // namespace qrt
