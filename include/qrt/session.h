// The embedding API: a Model opened from a path (weights, tokenizer, device, runtime config) and
// Sessions on it (an engine with its KV cache, the tokens it holds, a sampler). The C API
// (qrt/qrt.h) and the Python package are thin layers over these two classes; the settings a
// Model starts from are those of `qrt run` (f16 KV cache, the runtime config's precedence of
// docs/CONFIG.md), so the same model gives the same tokens, plan and perplexity as the command.
//
// A Model is immutable once opened and may be shared by threads; a Session is used by one
// thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qrt/checkpoint.h"
#include "qrt/device.h"
#include "qrt/generator.h"
#include "qrt/model.h"
#include "qrt/perplexity.h"
#include "qrt/sampler.h"
#include "qrt/setup.h"
#include "qrt/tokenizer.h"

namespace qrt {

struct ModelOptions {
  std::string device = "auto";        // "auto" (the first CUDA GPU, else the CPU), "cpu", "cuda:N"
  // A runtime config file, as `qrt run --config FILE` takes (docs/CONFIG.md); "" = none.
  std::string config_file;
  // A runtime config as JSON text in that file's format (backend, fallback, disabled,
  // max_input_length, max_new_tokens, threads, kernel_params, layers, ...), applied over the file;
  // "" = none. Both sit where the config file does in the precedence.
  std::string config_json;
  KvCacheDType kv_cache = KvCacheDType::F16;   // `qrt run`'s default
  std::function<void(const std::string&)> log; // plan, fallback and template messages; may be empty
};

class Model {
 public:
  // Loads a Hugging Face folder or a .gguf file ("" = the default model, as `qrt run` without -m).
  // Throws qrt::Error naming the file, field or device, with the command's messages.
  static std::shared_ptr<const Model> open(const std::string& path, const ModelOptions& options = {});

  const std::string& path() const { return path_; }
  const ModelWeights& weights() const { return *weights_; }
  std::shared_ptr<const ModelWeights> shared_weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The runtime config, device, tuning cache and plan (resolve_setup), as `qrt run` decides them.
  const ResolvedSetup& setup() const { return setup_; }
  const EngineOptions& engine_options() const { return engine_options_; }
  const std::vector<int32_t>& stop_tokens() const { return stop_tokens_; }

  // The tokens of a prompt: the text with the tokenizer's BOS, or (chat) the text as one user
  // message through the model's chat template with the assistant's turn opened. Throws qrt::Error
  // for an empty text.
  std::vector<int32_t> prompt_tokens(const std::string& text, bool chat) const;
  // What the model is and how it is set up (architecture, sizes, quantization, device, lengths).
  std::string info_json() const;
  // `qrt plan MODEL --json` under this model's device and runtime config.
  std::string plan_json() const;

 private:
  Model() = default;
  std::string path_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ResolvedSetup setup_;
  EngineOptions engine_options_;
  std::shared_ptr<const ModelWeights> weights_;
  std::optional<Tokenizer> tokenizer_;    // always set once opened
  std::vector<int32_t> stop_tokens_;
};

class Session {
 public:
  // Builds an engine that runs the model's plan (kernels prepared, a KV cache of
  // max_input_length + max_new_tokens positions allocated).
  explicit Session(std::shared_ptr<const Model> model);

  const Model& model() const { return *model_; }
  ForwardEngine& engine() { return *engine_; }
  int64_t position() const { return static_cast<int64_t>(tokens_.size()); }   // tokens held
  int64_t capacity() const { return engine_->capacity(); }

  // Forgets every token; the next feed starts at position 0.
  void reset();
  // Appends tokens at position(); afterwards logits() are the next-token logits after the last one.
  // Throws qrt::Error (the session unchanged) for n < 1, a token outside the vocabulary or more
  // tokens than the cache has room for.
  void feed(const int32_t* tokens, int64_t n);
  // [vocab] logits after the last fed token. Throws qrt::Error when nothing was fed since reset.
  const std::vector<float>& logits() const;
  // A token from logits(), the held tokens as the repetition penalty's history; ids past the
  // tokenizer (a vocabulary padded for alignment) are never sampled. The random stream is seeded
  // by params.seed when the session is reset or the parameters change.
  int32_t sample(const SamplingParams& params);
  // The logits of every position of `tokens` from an empty cache, [n][vocab] row-major (the
  // session is reset afterwards).
  std::vector<float> score(const int32_t* tokens, int64_t n);
  // Generates from `prompt` on an empty cache until a stop token, max_new_tokens or the end of the
  // cache; the session is reset afterwards. on_piece(token, text) gets every generated token with
  // the text it completes ("" while a UTF-8 character is incomplete, or for special tokens), and a
  // last call with token -1 when text was held back at the end; returning false stops generation.
  GenerationResult generate(const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                            const SamplingParams& sampling,
                            const std::function<bool(int32_t token, const std::string& text)>& on_piece);
  // `qrt perplexity`'s figure for `text` (`origin` names it in messages); resets the session.
  PerplexityResult perplexity(std::string_view text, int64_t ctx, const std::string& origin = "the text");

 private:
  friend class TextStream;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<ForwardEngine> engine_;
  std::vector<int32_t> tokens_;           // what the KV cache holds, in order
  std::vector<float> logits_;             // after the last fed token (empty: none)
  std::optional<Sampler> sampler_;
};

// One generation on a session, stepped by the caller (what Session::generate runs to the end, and
// what a streaming iterator steps). The session is reset when the stream is made and must not be
// used otherwise until the stream is done or destroyed.
class TextStream {
 public:
  struct Piece {
    int32_t token = -1;                   // -1: the text held back at the end
    std::string text;
  };
  TextStream(Session& session, const std::vector<int32_t>& prompt, int64_t max_new_tokens,
             const SamplingParams& sampling);
  // The next token and its text, or nullopt once generation has ended.
  std::optional<Piece> next();
  void stop();
  const GenerationResult& result() const { return stream_.result(); }

 private:
  Session& session_;
  GenerationStream stream_;
  StreamDecoder decoder_;
  bool flushed_ = false;
};

}  // namespace qrt
