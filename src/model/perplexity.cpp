// Perplexity by llama.cpp's method (see qrt/perplexity.h): windows of ctx tokens, second half scored.
#include "qrt/perplexity.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "core/host_memory.h"
#include "qrt/error.h"

namespace qrt {

PerplexityResult perplexity(ForwardEngine& engine, const Tokenizer& tokenizer, std::string_view text,
                            const std::string& origin, int64_t ctx, int64_t max_windows,
                            const std::function<void(const PerplexityProgress&)>& on_progress) {
  if (ctx < 4) throw invalid_input(fmt::format("--ctx {}: expected at least 4 tokens", ctx));
  if (ctx > engine.capacity())
    throw invalid_input(fmt::format("--ctx {}: more than the {} positions the model's KV cache holds (raise "
                                    "max_input_length)",
                                    ctx, engine.capacity()));
  if (text.empty()) throw invalid_input(fmt::format("{}: the text is empty", origin));

  // Tokenize like llama.cpp: with the special tokens the tokenizer adds (BOS for Llama models).
  const std::vector<int32_t> tokens = tokenizer.encode(text, /*add_special=*/true);
  const int32_t bos = tokenizer.bos_id();
  const std::vector<int32_t> probe = tokenizer.encode("a", true);
  const bool add_bos = bos >= 0 && !tokens.empty() && tokens.front() == bos && !probe.empty() && probe.front() == bos;
  int64_t windows = static_cast<int64_t>(tokens.size()) / ctx;
  if (windows < 1)
    throw invalid_input(fmt::format("{}: {} tokens, fewer than one window of --ctx {} (use a longer text or "
                                    "a smaller --ctx)",
                                    origin, tokens.size(), ctx));
  if (max_windows > 0) windows = std::min(windows, max_windows);

  PerplexityProgress progress;
  progress.text_tokens = static_cast<int64_t>(tokens.size());
  progress.windows = windows;
  progress.bos_at_window_start = add_bos;
  if (on_progress) on_progress(progress);

  const int64_t vocab = engine.config().vocab_size;
  const int64_t first = ctx / 2;
  const std::string what = fmt::format("perplexity: the logits of a window of {} tokens ({} x {} floats)", ctx, ctx, vocab);
  check_host_memory(checked_product({ctx, vocab, 4}, what), what);
  std::vector<float> logits(static_cast<size_t>(ctx * vocab));
  std::vector<int32_t> window(static_cast<size_t>(ctx));
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t c = 0; c < windows; ++c) {
    std::copy_n(tokens.begin() + c * ctx, ctx, window.begin());
    if (add_bos) window[0] = bos;
    engine.forward(window.data(), ctx, 0, logits.data(), /*all_logits=*/true);
    for (int64_t j = first; j < ctx - 1; ++j) {
      const float* row = logits.data() + j * vocab;
      const int32_t target = tokens[c * ctx + j + 1];
      float mx = row[0];
      for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, row[v]);
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
      const double loss = -(static_cast<double>(row[target]) - mx - std::log(sum));
      nll += loss;
      nll2 += loss * loss;
      ++count;
    }
    progress.windows_done = c + 1;
    progress.running_perplexity = std::exp(nll / count);
    if (on_progress) on_progress(progress);
  }
  PerplexityResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.windows = windows;
  r.tokens_scored = count;
  const double mean = nll / count;
  r.perplexity = std::exp(mean);
  if (count > 1) {
    const double var = nll2 / count - mean * mean;
    if (var > 0) r.standard_error = std::sqrt(var / (count - 1)) * r.perplexity;
  }
  return r;
}

}  // namespace qrt
