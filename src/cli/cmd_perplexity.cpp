// `qrt perplexity`: perplexity of a model on a text file with llama.cpp's method (qrt/perplexity.h:
// windows of --ctx tokens, the second half of each scored), so numbers are comparable with
// `llama-perplexity`. Prints the running value per window, then llama-perplexity's last line,
// "Final estimate: PPL = x +/- e", where e is the standard error of exp(mean NLL) by the delta
// method: ppl * sqrt(var(NLL) / (count - 1)), var(NLL) = mean(NLL^2) - mean(NLL)^2.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/engine_cli.h"
#include "cli/model_argument.h"
#include "core/host_memory.h"
#include "io/bounded_read.h"
#include "qrt/thread_pool.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/model.h"
#include "qrt/perplexity.h"
#include "qrt/plural.h"
#include "qrt/runtime_config.h"
#include "qrt/setup.h"

namespace qrt::cli {
namespace {

struct PplOptions {
  std::string model, file;
  int64_t ctx = 512, chunks = -1;
  EngineCliOptions engine;
};

int perplexity_command(const PplOptions& o) {
  using clock = std::chrono::steady_clock;
  const std::string path = resolve_model_path(o.model);
  if (o.ctx < 4 || o.ctx > (int64_t{1} << 31))
    throw invalid_input(fmt::format("--ctx {}: expected a window of 4 to 2^31 tokens", o.ctx));
  o.engine.validate();
  const std::string text = io::read_file_bounded(o.file, io::kMaxTextFileBytes, "a text file to evaluate (-f)");
  if (text.empty()) throw invalid_input(fmt::format("{}: the text file is empty", o.file));

  const auto t0 = clock::now();
  CliOverrides cli;
  cli.max_input_length = o.ctx;
  cli.max_new_tokens = 0;
  std::unique_ptr<Checkpoint> checkpoint = open_checkpoint(path);
  {
    // The logits of a whole window, [ctx x vocab] floats, checked before the model, the engine
    // (whose KV cache checks itself) and the buffer are made.
    const int64_t v = checkpoint->config().vocab_size;
    const std::string what = fmt::format("qrt perplexity: the logits of a --ctx {} window ({} x {} floats)", o.ctx, o.ctx, v);
    check_host_memory(checked_product({o.ctx, v, 4}, what), what);
  }
  const ResolvedSetup setup = resolve_setup(*checkpoint, o.engine.setup_request(cli));
  auto weights = load_model(*checkpoint, o.engine.load_options());
  checkpoint.reset();  // unmap the files: what the model needs is loaded
  Tokenizer tokenizer = load_tokenizer(path);
  EngineOptions eo = o.engine.engine_options(setup);
  eo.log = [](const std::string& m) { std::fprintf(stderr, "qrt: %s\n", m.c_str()); };
  auto engine = make_engine(weights, eo);
  drop_canonical_weights(*weights);  // the engine packed its own copies
  const double load_seconds = std::chrono::duration<double>(clock::now() - t0).count();

  auto print_progress = [&](const PerplexityProgress& p) {
    if (p.windows_done == 0) {
      std::fprintf(stderr, "qrt: %s: %s, %s of %s, scoring the second half of each%s\n", o.file.c_str(),
                   count_of(p.text_tokens, "token").c_str(), count_of(p.windows, "window").c_str(),
                   count_of(o.ctx, "token").c_str(), p.bos_at_window_start ? " (BOS at each window start)" : "");
      return;
    }
    std::printf("[%lld]%.4f%s", static_cast<long long>(p.windows_done), p.running_perplexity,
                p.windows_done < p.windows ? "," : "\n");
    std::fflush(stdout);
  };
  const PerplexityResult r = perplexity(*engine, tokenizer, text, o.file, o.ctx, o.chunks, print_progress);
  std::fprintf(stderr, "qrt: %s scored\n", count_of(r.tokens_scored, "token").c_str());
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.perplexity, r.standard_error);
  std::fprintf(stderr, "qrt: load %.2f s, evaluation %.2f s (%.1f tokens/s); model %s (%s)\n", load_seconds,
               r.seconds, r.windows * o.ctx / r.seconds, path.c_str(), weights->quantization.c_str());
  std::string counts;
  for (const auto& [name, n] : engine->backend_counts()) counts += fmt::format("{}{} x {}", counts.empty() ? "" : ", ", name, n);
  print_device_choice(setup.device, setup.device_why, /*verbose=*/false);
  std::fprintf(stderr, "qrt: backends: %s on %s\n", counts.c_str(), engine->device_name().c_str());
  return 0;
}

const CommandRegistrar registrar(
    "perplexity", "Perplexity of a model on a text file (llama.cpp's method: second half of each window)",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<PplOptions>();
      add_model_argument(app, o->model, "default: " + default_model_path());
      app.add_option("-f,--file", o->file, "Text file (UTF-8)")->required();
      app.add_option("-c,--ctx,--ctx-size", o->ctx, "Window length in tokens (llama-perplexity's -c)")->capture_default_str();
      app.add_option("--chunks", o->chunks, "Evaluate at most this many windows (default: all)");
      o->engine.add_setup_options(app);
      o->engine.add_engine_options(app);
      return [o] { return perplexity_command(*o); };
    });

}  // namespace
}  // namespace qrt::cli
