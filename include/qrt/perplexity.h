// Perplexity of a model on a text with llama.cpp's method, so numbers compare with
// `llama-perplexity`: the tokens are cut into non-overlapping windows of `ctx` tokens; each window
// is evaluated from an empty cache (its first token replaced by BOS when the tokenizer adds one);
// only the second half of each window is scored, so every scored token has at least ctx/2 tokens
// of context. Used by `qrt perplexity` and the Python package's Model.perplexity.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "qrt/model.h"
#include "qrt/tokenizer.h"

namespace qrt {

struct PerplexityProgress {
  int64_t text_tokens = 0;        // tokens of the whole text (with the tokenizer's BOS)
  int64_t windows = 0;            // windows to evaluate
  int64_t windows_done = 0;       // 0 before the first window
  bool bos_at_window_start = false;
  double running_perplexity = 0;  // over the windows done so far
};

struct PerplexityResult {
  double perplexity = 0;
  double standard_error = 0;      // of exp(mean NLL), by the delta method
  int64_t tokens_scored = 0;
  int64_t windows = 0;
  double seconds = 0;             // the forward passes and scoring
};

// `origin` names the text in messages ("story.txt"). `max_windows` <= 0 evaluates every window.
// `on_progress` (may be empty) is called once before the first window and after each one.
// Throws qrt::Error (InvalidInput) when ctx < 4, ctx exceeds the engine's capacity, or the text has
// fewer tokens than one window.
PerplexityResult perplexity(ForwardEngine& engine, const Tokenizer& tokenizer, std::string_view text,
                            const std::string& origin, int64_t ctx, int64_t max_windows = 0,
                            const std::function<void(const PerplexityProgress&)>& on_progress = {});

}  // namespace qrt
