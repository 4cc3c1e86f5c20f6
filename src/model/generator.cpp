// GenerationStream and Generator: prefill, then sample -> stream -> decode until a stop condition.
// The first generated token comes from the prefill logits, so decode_steps counts the
// single-token forwards after it; decode_seconds is the time spent in next() (sampling and those
// forwards), not the caller's handling of each token.
#include "qrt/generator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>

#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/gguf.h"

namespace qrt {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

GenerationStream::GenerationStream(ForwardEngine& engine, const std::vector<int32_t>& prompt,
                                   const GenerationOptions& options)
    : engine_(engine), options_(options), sampler_(options.sampling) {
  const int64_t capacity = engine_.capacity();
  const int64_t max_input = options.max_input_length > 0 ? options.max_input_length : capacity;
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n == 0) throw invalid_input("the prompt is empty: nothing to generate from");
  if (n > max_input)
    throw invalid_input(fmt::format("the prompt has {} tokens, more than max_input_length {} "
                                    "(raise --max-input-length or -c, or shorten the prompt)",
                                    n, max_input));
  if (n > capacity)
    throw invalid_input(fmt::format("the prompt has {} tokens, more than the KV cache holds ({})", n, capacity));
  if (options.max_new_tokens < 0)
    throw invalid_input(fmt::format("max_new_tokens {} must be >= 0", options.max_new_tokens));
  if (options.cached_prefix < 0)
    throw invalid_input(fmt::format("cached_prefix {} must be >= 0", options.cached_prefix));
  const int64_t vocab = engine_.config().vocab_size;
  logits_.resize(static_cast<size_t>(vocab));
  // Ids past the tokenizer are padding rows of the embedding: never sampled.
  sample_vocab_ = options.sample_vocab > 0 ? std::min(vocab, options.sample_vocab) : vocab;
  // The KV cache already holds [0, cached) from an earlier call: only the rest is prefilled (the
  // last prompt token always is: its logits give the first sample).
  const int64_t cached = std::min<int64_t>(options.cached_prefix, n - 1);
  // Plain greedy decoding over the whole vocabulary asks the engine for the token alone (a GPU
  // engine then copies back one id per step instead of the logits); anything else (a vocabulary
  // cut to the tokenizer's ids too) samples from the logits here.
  greedy_ = is_plain_greedy(options.sampling) && sample_vocab_ == vocab;
  result_.prompt_tokens = n - cached;
  result_.stop_reason = "max new tokens";
  const auto t0 = std::chrono::steady_clock::now();
  if (greedy_) greedy_next_ = engine_.forward_greedy(prompt.data() + cached, n - cached, cached);
  else engine_.forward(prompt.data() + cached, n - cached, cached, logits_.data());
  result_.prompt_seconds = seconds_since(t0);
  history_ = prompt;
  pos_ = n;
}

void GenerationStream::finish(const char* reason) {
  result_.stop_reason = reason;
  done_ = true;
}

void GenerationStream::stop() {
  if (!done_) finish("stopped by caller");
}

std::optional<int32_t> GenerationStream::next() {
  if (done_) return std::nullopt;
  if (static_cast<int64_t>(result_.tokens.size()) >= options_.max_new_tokens) {
    finish("max new tokens");  // and no forward for a token nobody will sample from
    return std::nullopt;
  }
  if (options_.interrupt && options_.interrupt->load()) {
    finish("interrupted");
    return std::nullopt;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (feed_last_) {
    if (pos_ >= engine_.capacity()) {
      finish("context full");
      return std::nullopt;
    }
    const int32_t last = result_.tokens.back();
    if (greedy_) greedy_next_ = engine_.forward_greedy(&last, 1, pos_);
    else engine_.forward(&last, 1, pos_, logits_.data());
    ++pos_;
    ++result_.decode_steps;
  }
  const int32_t id = greedy_ ? greedy_next_ : sampler_.sample(logits_.data(), sample_vocab_, history_);
  result_.decode_seconds += seconds_since(t0);
  if (std::find(options_.stop_tokens.begin(), options_.stop_tokens.end(), id) != options_.stop_tokens.end()) {
    finish("stop token");
    return std::nullopt;
  }
  result_.tokens.push_back(id);
  history_.push_back(id);
  feed_last_ = true;
  return id;
}

GenerationResult Generator::generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                     const std::function<bool(int32_t)>& on_token) {
  GenerationStream stream(engine_, prompt, options);
  while (const std::optional<int32_t> id = stream.next()) {
    if (on_token && !on_token(*id)) {
      stream.stop();
      break;
    }
  }
  return stream.result();
}

GenerationResult Generator::generate_text(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                                          const GenerationOptions& options,
                                          const std::function<void(const std::string&)>& on_text) {
  StreamDecoder decoder(tokenizer, /*skip_special=*/true);
  GenerationOptions o = options;
  if (o.sample_vocab <= 0) o.sample_vocab = tokenizer.vocab_size();   // only ids the tokenizer can spell
  GenerationResult r = generate(prompt, o, [&](int32_t id) {
    std::string piece = decoder.push(id);
    if (!piece.empty() && on_text) on_text(piece);
    return true;
  });
  std::string rest = decoder.finish();
  if (!rest.empty() && on_text) on_text(rest);
  return r;
}

Tokenizer load_tokenizer(const std::string& model_path) {
  std::unique_ptr<Checkpoint> ck = open_checkpoint(model_path);
  const int64_t model_vocab = ck->config().vocab_size;
  if (ck->kind() == CheckpointKind::Gguf) {
    Tokenizer t = Tokenizer::from_gguf(GgufFile::open(ck->path()));
    if (t.vocab_size() > model_vocab)
      throw invalid_input(fmt::format("{}: tokenizer.ggml.tokens holds {} tokens, more than the model's vocabulary of "
                                      "{} (token_embd.weight rows): ids from {} on have no embedding",
                                      ck->path(), t.vocab_size(), model_vocab, model_vocab));
    return t;
  }
  const std::string json = ck->tokenizer_json_path();
  if (json.empty() || !std::filesystem::exists(json))
    throw invalid_input(fmt::format("{}: no tokenizer.json in the model folder (qrt needs the Hugging Face "
                                    "tokenizer.json next to config.json)",
                                    model_path));
  Tokenizer t = Tokenizer::from_tokenizer_json(json);
  // A model's vocabulary may be padded past its tokenizer (rows rounded up to a multiple of 64 or
  // 128, as Qwen2 and others ship): those ids are never sampled (GenerationOptions::sample_vocab).
  // A tokenizer LARGER than the vocabulary would produce ids the model has no row for.
  if (t.vocab_size() > model_vocab)
    throw invalid_input(fmt::format("{}: the tokenizer has {} tokens (ids 0..{}), more than vocab_size {} of {}/config.json: "
                                    "ids from {} on have no embedding row; use the tokenizer that belongs to this model",
                                    json, t.vocab_size(), t.vocab_size() - 1, model_vocab, ck->path(), model_vocab));
  return t;
}

std::vector<int32_t> stop_tokens_for(const ModelConfig& config, const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  auto add = [&](int64_t id) {
    if (id >= 0 && id < config.vocab_size && std::find(ids.begin(), ids.end(), id) == ids.end())
      ids.push_back(static_cast<int32_t>(id));
  };
  for (int64_t id : config.eos_token_ids) add(id);
  for (int32_t id : tokenizer.stop_ids()) add(id);
  return ids;
}

}  // namespace qrt
