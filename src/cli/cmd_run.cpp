// `qrt run`: load a model (default: the SmolLM2 GGUF fetched by scripts/fetch-model.sh), plan a
// backend for every quantized layer, and stream a completion of the prompt (raw or through the
// model's chat template). Ends with load time, prompt and decode speed and the backends used.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/engine_cli.h"
#include "cli/number_validators.h"
#include "qrt/thread_pool.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/model.h"
#include "qrt/runtime_config.h"
#include "qrt/setup.h"

namespace qrt::cli {
namespace {

struct RunOptions {
  std::string model, prompt, system;
  int64_t n = 128, max_input_length = 2048;
  int top_k = 0;
  bool chat = false, verbose = false;
  float temp = 0, top_p = 1, min_p = 0, repeat_penalty = 1;
  uint64_t seed = 0;
  EngineCliOptions engine;
  CLI::Option *o_max_input = nullptr, *o_temp = nullptr, *o_top_k = nullptr, *o_top_p = nullptr,
              *o_min_p = nullptr, *o_repeat = nullptr;
};

// A one-line progress bar on stderr, only when stderr is a terminal (logs stay clean).
class LoadProgress {
 public:
  explicit LoadProgress(const char* what) : what_(what), tty_(isatty(2) != 0) {}
  void update(int64_t done, int64_t total) {
    if (!tty_ || total <= 0) return;
    const int pct = static_cast<int>(100 * done / total);
    if (pct == last_) return;
    last_ = pct;
    const int width = 30, fill = width * pct / 100;
    std::fprintf(stderr, "\r%s [%s%s] %3d%%", what_, std::string(fill, '#').c_str(),
                 std::string(width - fill, ' ').c_str(), pct);
    std::fflush(stderr);
  }
  void done() {
    if (tty_ && last_ >= 0) std::fprintf(stderr, "\r%*s\r", 50, "");
  }

 private:
  const char* what_;
  bool tty_;
  int last_ = -1;
};

// "resident 512.3 MiB, peak 700.1 MiB" from /proc/self/status (Linux), or "" elsewhere.
std::string memory_text() {
  std::ifstream f("/proc/self/status");
  std::string key, unit;
  int64_t kib = 0, rss = -1, peak = -1;
  for (std::string line; std::getline(f, line);) {
    std::istringstream is(line);
    if (!(is >> key >> kib)) continue;
    if (key == "VmRSS:") rss = kib;
    if (key == "VmHWM:") peak = kib;
  }
  if (rss < 0 || peak < 0) return "";
  return fmt::format("resident {:.1f} MiB, peak {:.1f} MiB", rss / 1024.0, peak / 1024.0);
}

std::string join_counts(const std::map<std::string, int>& counts) {
  std::string s;
  for (const auto& [name, n] : counts) s += fmt::format("{}{} x {}", s.empty() ? "" : ", ", name, n);
  return s;
}

int run_command(const RunOptions& o) {
  using clock = std::chrono::steady_clock;
  const std::string path = resolve_model_path(o.model);
  if (o.prompt.empty()) throw invalid_input("the prompt is empty (-p): nothing to generate from");
  if (o.n < 0) throw invalid_input(fmt::format("-n {}: expected >= 0", o.n));
  o.engine.validate();

  CliOverrides cli;
  if (o.o_max_input->count()) cli.max_input_length = o.max_input_length;
  cli.max_new_tokens = o.n;
  const auto t_load = clock::now();
  std::unique_ptr<Checkpoint> checkpoint = open_checkpoint(path);
  const ResolvedSetup setup = resolve_setup(*checkpoint, o.engine.setup_request(cli));
  LoadOptions lo = o.engine.load_options();
  LoadProgress progress("loading");
  lo.progress = [&](int64_t d, int64_t t) { progress.update(d, t); };
  std::shared_ptr<ModelWeights> weights = load_model(*checkpoint, lo);
  checkpoint.reset();  // unmap the files: what the model needs is loaded (a fallback re-opens them)
  progress.done();
  Tokenizer tokenizer = load_tokenizer(path);

  EngineOptions eo = o.engine.engine_options(setup);
  eo.log = [&](const std::string& m) {
    if (o.verbose || m.find("fail") != std::string::npos || m.find("fall") != std::string::npos)
      std::fprintf(stderr, "qrt: %s\n", escape_message(m).c_str());
  };
  std::unique_ptr<ForwardEngine> engine = make_engine(weights, eo);
  // The engine packed its own copies: the canonical weights are re-read if a fallback needs them.
  const int64_t freed = drop_canonical_weights(*weights);
  const double load_seconds = std::chrono::duration<double>(clock::now() - t_load).count();
  if (o.verbose) {
    for (const auto& p : engine->plans())
      for (const auto& note : p.notes)
        std::fprintf(stderr, "qrt: %s: %s\n", p.layer.name.c_str(), escape_untrusted(note).c_str());
    // What runs, one line per layer and M range (tests/cli/e2e_plan_vs_run.sh compares it with `qrt plan --json`).
    for (const auto& [name, ranges] : engine->kernels())
      for (const auto& k : ranges)
        std::fprintf(stderr, "qrt: runs %s M %lld-%s: %s %s (%s)\n", name.c_str(), static_cast<long long>(k.m_min),
                     k.m_max == INT64_MAX ? "max" : std::to_string(k.m_max).c_str(), k.backend.c_str(),
                     k.params.to_json().c_str(), param_source_name(k.source));
  }

  // The prompt: through the chat template (special tokens already in the text) or raw.
  std::vector<int32_t> prompt;
  if (o.chat) {
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    messages.push_back({"user", o.prompt});
    if (!tokenizer.chat_template().warning().empty())
      std::fprintf(stderr, "qrt: warning: %s\n", escape_message(tokenizer.chat_template().warning()).c_str());
    prompt = tokenizer.encode(tokenizer.apply_chat_template(messages, true), /*add_special=*/false);
  } else {
    if (!o.system.empty()) std::fprintf(stderr, "qrt: warning: --system is only used with --chat\n");
    prompt = tokenizer.encode(o.prompt, /*add_special=*/true);
  }

  // Sampling: CLI flags, else generation_config.json's defaults when it asks for sampling, else greedy.
  GenerationOptions go;
  go.max_new_tokens = o.n;
  go.max_input_length = eo.runtime.max_input_length;
  const GenerationDefaults& gd = weights->generation;
  SamplingParams& sp = go.sampling;
  if (gd.do_sample.value_or(false)) {
    sp.temperature = static_cast<float>(gd.temperature.value_or(1.0));
    sp.top_k = static_cast<int>(gd.top_k.value_or(0));
    sp.top_p = static_cast<float>(gd.top_p.value_or(1.0));
    sp.min_p = static_cast<float>(gd.min_p.value_or(0.0));
  }
  if (gd.repetition_penalty) sp.repetition_penalty = static_cast<float>(*gd.repetition_penalty);
  if (o.o_temp->count()) sp.temperature = o.temp;
  if (o.o_top_k->count()) sp.top_k = o.top_k;
  if (o.o_top_p->count()) sp.top_p = o.top_p;
  if (o.o_min_p->count()) sp.min_p = o.min_p;
  if (o.o_repeat->count()) sp.repetition_penalty = o.repeat_penalty;
  sp.seed = o.seed;
  go.stop_tokens = stop_tokens_for(weights->config, tokenizer);

  Generator gen(*engine);
  GenerationResult r = gen.generate_text(tokenizer, prompt, go, [](const std::string& piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);

  const ModelConfig& c = weights->config;
  std::fprintf(stderr, "qrt: model %s (%s, %lld layers, %s)\n", path.c_str(), c.architecture.c_str(),
               static_cast<long long>(c.num_layers), weights->quantization.c_str());
  std::fprintf(stderr, "qrt: load: %.2f s\n", load_seconds);
  std::fprintf(stderr, "qrt: prompt: %lld tokens in %.3f s (%.1f tokens/s)\n", static_cast<long long>(r.prompt_tokens),
               r.prompt_seconds, r.prompt_tokens_per_second());
  std::fprintf(stderr, "qrt: decode: %lld tokens in %.3f s (%.1f tokens/s), %zu generated, stopped: %s\n",
               static_cast<long long>(r.decode_steps), r.decode_seconds, r.decode_tokens_per_second(),
               r.tokens.size(), r.stop_reason.c_str());
  std::fprintf(stderr, "qrt: sampling: %s\n", sp.describe().c_str());
  if (!setup.device_why.empty())
    std::fprintf(stderr, "qrt: device: %s (%s)\n", setup.device.id.c_str(), setup.device_why.c_str());
  std::fprintf(stderr, "qrt: backends: %s on %s\n", join_counts(engine->backend_counts()).c_str(),
               engine->device_name().c_str());
  if (o.verbose)
    if (const std::string mem = memory_text(); !mem.empty())
      std::fprintf(stderr, "qrt: memory: %s (canonical weights freed after packing: %.1f MiB)\n", mem.c_str(),
                   static_cast<double>(freed) / 1048576.0);
  return 0;
}

const CommandRegistrar registrar(
    "run", "Generate text from a prompt with a model (default: the SmolLM2 GGUF of scripts/fetch-model.sh)",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<RunOptions>();
      app.add_option("-m,--model", o->model, "Model: a Hugging Face folder or a .gguf file (default: " +
                                                   default_model_path() + ")");
      app.add_option("-p,--prompt", o->prompt, "Prompt text")->required();
      app.add_option("-n,--max-new-tokens", o->n, "Tokens to generate at most")->capture_default_str();
      app.add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template as a user message");
      app.add_option("--system", o->system, "System message (with --chat)");
      o->engine.add_setup_options(app);
      o->engine.add_engine_options(app);
      o->o_temp = app.add_option("--temp", o->temp, "Sampling temperature (0 = greedy, the default)");
      o->o_top_k = app.add_option("--top-k", o->top_k, "Keep the k most likely tokens (0 = off)");
      o->o_top_p = app.add_option("--top-p", o->top_p, "Nucleus sampling threshold (1 = off)");
      o->o_min_p = app.add_option("--min-p", o->min_p, "Drop tokens below min-p x the top probability (0 = off)");
      o->o_repeat = app.add_option("--repeat-penalty", o->repeat_penalty, "Repetition penalty (1 = off)");
      app.add_option("--seed", o->seed, "Random seed for sampling")->capture_default_str()->check(unsigned_64bit_integer());
      o->o_max_input = app.add_option("--max-input-length", o->max_input_length,
                                      "Longest prompt in tokens (sizes the KV cache with -n)");
      app.add_flag("-v,--verbose", o->verbose, "Print plan notes and backend messages");
      return [o] { return run_command(*o); };
    });

}  // namespace
}  // namespace qrt::cli
