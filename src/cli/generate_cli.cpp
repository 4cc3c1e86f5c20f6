// See generate_cli.h.
#include "cli/generate_cli.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "cli/model_argument.h"
#include "cli/number_validators.h"
#include "cli/progress.h"
#include "qrt/error.h"
#include "qrt/runtime_config.h"
#include "qrt/setup.h"

namespace qrt::cli {

void GenerateCliOptions::add_to(CLI::App& app, bool takes_prompt) {
  add_model_argument(app, model, "default: " + default_model_path(), takes_prompt);
  o_n = app.add_option("-n,--max-new-tokens,--n-predict", n,
                       "Tokens to generate at most (default: the config file's max_new_tokens, else "
                       "generation_config.json's, else " + std::to_string(kDefaultMaxNewTokens) + ")");
  o_ctx = app.add_option("-c,--ctx-size", ctx_size,
                         "Context length in tokens, prompt and generated together (as llama.cpp's -c; sizes the KV "
                         "cache; default: --max-input-length + -n)");
  app.add_option("--system", system, "System message (chat template; also -sys, --system-prompt)");
  engine.add_setup_options(app);
  engine.add_engine_options(app);
  o_temp = app.add_option("--temp,--temperature", temp,
                          "Sampling temperature; 0 = greedy. Without any sampling flag qrt is greedy unless "
                          "generation_config.json sets do_sample");
  o_top_k = app.add_option("--top-k", top_k, "Keep the k most likely tokens (0 = off); turns sampling on (default 50 when sampling)");
  o_top_p = app.add_option("--top-p", top_p, "Nucleus sampling threshold (1 = off); turns sampling on");
  o_min_p = app.add_option("--min-p", min_p, "Drop tokens below min-p x the top probability (0 = off); turns sampling on");
  o_repeat = app.add_option("--repeat-penalty", repeat_penalty,
                            "Repetition penalty (1 = off): positive logits of recent tokens / penalty, negative x penalty");
  o_repeat_last_n = app.add_option("--repeat-last-n", repeat_last_n,
                                   "Tokens the repetition penalty looks back at (-1 = all; default 64, or all for "
                                   "generation_config.json's penalty)");
  o_seed = app.add_option("-s,--seed", seed, "Random seed for sampling (default: random, printed at the end)")
               ->check(unsigned_64bit_integer());
  o_max_input = app.add_option("--max-input-length", max_input_length,
                               "Longest prompt in tokens (sizes the KV cache with -n; -c sets both)");
  app.add_flag("--ignore-eos", ignore_eos, "Do not stop at the model's end-of-sequence tokens");
  app.add_flag("-v,--verbose", verbose, "Print plan notes, backend messages and generation decisions");
}

GenerationRequest GenerateCliOptions::request() const {
  GenerationRequest r;
  if (o_n->count()) r.max_new_tokens = n;
  if (o_ctx->count()) r.context_length = ctx_size;
  if (o_temp->count()) r.temperature = temp;
  if (o_top_k->count()) r.top_k = top_k;
  if (o_top_p->count()) r.top_p = top_p;
  if (o_min_p->count()) r.min_p = min_p;
  if (o_repeat->count()) r.repetition_penalty = repeat_penalty;
  if (o_repeat_last_n->count()) r.repeat_last_n = repeat_last_n;
  if (o_seed->count()) r.seed = seed;
  return r;
}

GenerationOptions GenerationSession::generation_options(bool ignore_eos) const {
  GenerationOptions go;
  go.max_new_tokens = settings.max_new_tokens;
  go.max_input_length = engine_options.runtime.max_input_length;
  go.sampling = settings.sampling;
  if (!ignore_eos) go.stop_tokens = stop_tokens_for(weights->config, *tokenizer);
  return go;
}

GenerationSession open_generation_session(const GenerateCliOptions& o) {
  using clock = std::chrono::steady_clock;
  GenerationSession s;
  s.path = resolve_model_path(o.model);
  if (o.o_n->count() && o.n < 0) throw invalid_input(fmt::format("-n {}: expected >= 0", o.n));
  if (o.o_ctx->count() && o.o_max_input->count())
    throw invalid_input("-c and --max-input-length both size the context: use one of them");
  o.engine.validate();

  const auto t_load = clock::now();
  CliOverrides cli;
  if (o.o_max_input->count()) cli.max_input_length = o.max_input_length;
  std::unique_ptr<Checkpoint> checkpoint = open_checkpoint(s.path);
  const ResolvedSetup setup = resolve_setup(*checkpoint, o.engine.setup_request(cli));
  LoadOptions lo = o.engine.load_options();
  Progress progress("loading");
  lo.progress = [&](int64_t d, int64_t t) { progress.update(d, t); };
  s.weights = load_model(*checkpoint, lo);
  checkpoint.reset();  // unmap the files: what the model needs is loaded (a fallback re-opens them)
  progress.done();
  s.tokenizer = std::make_unique<Tokenizer>(load_tokenizer(s.path));

  s.engine_options = o.engine.engine_options(setup);
  s.device_why = setup.device_why;
  s.verbose = o.verbose;
  // Length and sampling: the KV cache is sized for what they decide.
  s.settings = resolve_generation_settings(o.request(), s.weights->generation, &s.engine_options.runtime);
  for (const auto& note : s.settings.notes) std::fprintf(stderr, "qrt: note: %s\n", note.c_str());
  const bool verbose = o.verbose;
  s.engine_options.log = [verbose](const std::string& m) {
    if (verbose || m.find("fail") != std::string::npos || m.find("fall") != std::string::npos)
      std::fprintf(stderr, "qrt: %s\n", escape_message(m).c_str());
  };
  s.engine = make_engine(s.weights, s.engine_options);
  // The engine packed its own copies: the canonical weights are re-read if a fallback needs them.
  s.freed_weight_bytes = drop_canonical_weights(*s.weights);
  s.load_seconds = std::chrono::duration<double>(clock::now() - t_load).count();
  if (o.verbose) {
    for (const auto& p : s.engine->plans())
      for (const auto& note : p.notes)
        std::fprintf(stderr, "qrt: %s: %s\n", p.layer.name.c_str(), escape_untrusted(note).c_str());
    // What runs, one line per layer and M range (tests/cli/e2e_plan_vs_run.sh compares it with `qrt plan --json`).
    for (const auto& [name, ranges] : s.engine->kernels())
      for (const auto& k : ranges)
        std::fprintf(stderr, "qrt: runs %s M %lld-%s: %s %s (%s)\n", name.c_str(), static_cast<long long>(k.m_min),
                     k.m_max == INT64_MAX ? "max" : std::to_string(k.m_max).c_str(), k.backend.c_str(),
                     k.params.to_json().c_str(), param_source_name(k.source));
    const RuntimeConfig& rc = s.engine_options.runtime;
    std::fprintf(stderr, "qrt: max_new_tokens %lld (%s), context %lld tokens (max_input_length %lld, %s)\n",
                 static_cast<long long>(rc.max_new_tokens), s.settings.max_new_tokens_source.c_str(),
                 static_cast<long long>(s.engine->capacity()), static_cast<long long>(rc.max_input_length),
                 rc.provenance_of("max_input_length").c_str());
    std::fprintf(stderr, "qrt: sampling: %s (%s)\n", s.settings.describe().c_str(),
                 s.settings.sampling_source.c_str());
  }
  return s;
}

namespace {

// "resident 512.3 MiB, peak 700.1 MiB" from /proc/self/status (Linux), or "" elsewhere.
std::string memory_text() {
  std::ifstream f("/proc/self/status");
  std::string key;
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

}  // namespace

void print_session_summary(const GenerationSession& s) {
  const ModelConfig& c = s.weights->config;
  std::string counts;
  for (const auto& [name, n] : s.engine->backend_counts())
    counts += fmt::format("{}{} x {}", counts.empty() ? "" : ", ", name, n);
  std::fprintf(stderr, "qrt: model %s (%s, %lld layers, %s)\n", s.path.c_str(), c.architecture.c_str(),
               static_cast<long long>(c.num_layers), s.weights->quantization.c_str());
  std::fprintf(stderr, "qrt: load: %.2f s\n", s.load_seconds);
  std::fprintf(stderr, "qrt: sampling: %s\n", s.settings.describe().c_str());
  print_device_choice(s.engine_options.device, s.device_why, s.verbose);
  std::fprintf(stderr, "qrt: backends: %s on %s\n", counts.c_str(), s.engine->device_name().c_str());
  if (s.verbose)
    if (const std::string mem = memory_text(); !mem.empty())
      std::fprintf(stderr, "qrt: memory: %s (canonical weights freed after packing: %.1f MiB)\n", mem.c_str(),
                   static_cast<double>(s.freed_weight_bytes) / 1048576.0);
}

}  // namespace qrt::cli
