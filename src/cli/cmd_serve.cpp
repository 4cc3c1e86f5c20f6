// `qrt serve`: an OpenAI-compatible HTTP server over the batched engine (qrt/batch_engine.h)
// with continuous batching (src/serve/scheduler.h). Loads the model once, binds to 127.0.0.1
// unless told otherwise, serves until SIGTERM / SIGINT, then stops taking requests, lets the
// running ones finish (up to --shutdown-timeout, then cancels them) and exits 0.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/engine_cli.h"
#include "cli/model_argument.h"
#include "qrt/batch_engine.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/model.h"
#include "qrt/setup.h"
#include "serve/http_server.h"
#include "serve/scheduler.h"

namespace qrt::cli {
namespace {

struct ServeOptions {
  std::string model, model_name, host = "127.0.0.1", api_key;
  int port = 8080, max_connections = 32;
  int64_t max_seqs = 8, ctx_size = 4096, kv_blocks = 0, max_queue = 64, max_prompt_tokens = 0, max_tokens = 0;
  int64_t max_body_bytes = 4 << 20;
  double shutdown_timeout = 30;
  bool verbose = false;
  EngineCliOptions engine;
};

int serve_command(const ServeOptions& o) {
  // Signals are taken by one thread (sigwait below): block them before any thread exists, so
  // every thread the engine, the scheduler and the HTTP server start inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that vanishes mid-write is an error return, not a crash

  const std::string path = resolve_model_path(o.model);
  if (o.max_seqs < 1 || o.max_seqs > 4096) throw invalid_input(fmt::format("--max-seqs {}: expected 1 to 4096", o.max_seqs));
  if (o.ctx_size < 2) throw invalid_input(fmt::format("--ctx-size {}: expected >= 2", o.ctx_size));
  if (o.kv_blocks < 0) throw invalid_input(fmt::format("--kv-blocks {}: expected >= 1 (0 = enough for every sequence)", o.kv_blocks));
  if (o.max_queue < 0) throw invalid_input(fmt::format("--max-queue {}: expected >= 0", o.max_queue));
  if (o.max_connections < 1) throw invalid_input(fmt::format("--max-connections {}: expected >= 1", o.max_connections));
  if (o.max_body_bytes < 1024) throw invalid_input(fmt::format("--max-body-bytes {}: expected >= 1024", o.max_body_bytes));
  if (o.max_prompt_tokens < 0 || o.max_tokens < 0)
    throw invalid_input("--max-prompt-tokens and --max-tokens must be >= 1 (0 = the context size)");
  if (!(o.shutdown_timeout >= 0)) throw invalid_input("--shutdown-timeout must be >= 0 seconds");
  if (o.port < 0 || o.port > 65535) throw invalid_input(fmt::format("--port {}: expected 0 to 65535", o.port));
  std::string api_key = o.api_key;
  if (api_key.empty())
    if (const char* env = std::getenv("QRT_API_KEY")) api_key = env;
  o.engine.validate();

  CliOverrides cli;
  cli.max_input_length = o.ctx_size;  // positions per sequence: the RoPE tables and the limits
  cli.max_new_tokens = 0;
  std::unique_ptr<Checkpoint> checkpoint = open_checkpoint(path);
  // The batched engine runs on the CPU and on a CUDA GPU (its KV pool in GPU memory): --device
  // picks as for `qrt run` (auto: the GPU where one serves the model).
  const SetupRequest request = o.engine.setup_request(cli);
  const ResolvedSetup setup = resolve_setup(*checkpoint, request);
  std::shared_ptr<ModelWeights> weights = load_model(*checkpoint, o.engine.load_options());
  checkpoint.reset();  // unmap the files: what the model needs is loaded (a fallback re-opens them)
  Tokenizer tokenizer = load_tokenizer(path);
  if (!tokenizer.chat_template().warning().empty())
    std::fprintf(stderr, "qrt: warning: %s\n", tokenizer.chat_template().warning().c_str());

  EngineOptions eo = o.engine.engine_options(setup);
  eo.log = [&](const std::string& m) {
    if (o.verbose || m.find("fail") != std::string::npos || m.find("fall") != std::string::npos)
      std::fprintf(stderr, "qrt: %s\n", m.c_str());
  };
  const int64_t blocks_per_seq = (o.ctx_size + kKvBlockPositions - 1) / kKvBlockPositions;
  eo.kv_blocks = o.kv_blocks > 0 ? o.kv_blocks : o.max_seqs * blocks_per_seq;
  eo.max_step_rows = o.max_seqs + eo.prefill_batch;
  // Every step wakes one connection thread per stream, which preempts the engine's threads for
  // tens of microseconds: not a reason to stop spinning (thread_pool.cpp). (The CPU engine's pool;
  // the GPU engine has none.)
  eo.cpu_spin = SpinPolicy::Always;
  std::unique_ptr<BatchEngine> engine = make_batch_engine(weights, eo);
  // The engine packed its own copy of every quantized linear: the canonical form goes (re-read
  // from the model's files if a fallback needs it).
  drop_canonical_weights(*weights);

  serve::SchedulerOptions so;
  so.max_sequences = o.max_seqs;
  so.max_queue = o.max_queue;
  so.stop_tokens = stop_tokens_for(weights->config, tokenizer);
  serve::Scheduler scheduler(*engine, tokenizer, so);

  serve::ApiLimits limits;
  limits.model_id = serve::served_model_id(path, o.model_name);
  limits.context = o.ctx_size;
  limits.max_prompt_tokens = o.max_prompt_tokens > 0 ? std::min(o.max_prompt_tokens, o.ctx_size - 1) : o.ctx_size - 1;
  limits.max_tokens = o.max_tokens > 0 ? std::min(o.max_tokens, o.ctx_size - 1) : o.ctx_size - 1;
  // Defaults when a request gives none: the model's generation_config.json, else OpenAI's.
  serve::SamplingDefaults defaults;
  const GenerationDefaults& gd = weights->generation;
  if (gd.temperature) defaults.temperature = static_cast<float>(*gd.temperature);
  if (gd.do_sample && !*gd.do_sample) defaults.temperature = 0;
  if (gd.top_p) defaults.top_p = static_cast<float>(*gd.top_p);
  if (gd.top_k) defaults.top_k = static_cast<int>(*gd.top_k);
  if (gd.min_p) defaults.min_p = static_cast<float>(*gd.min_p);
  if (gd.repetition_penalty) defaults.repetition_penalty = static_cast<float>(*gd.repetition_penalty);

  serve::HttpOptions ho;
  ho.host = o.host;
  ho.port = o.port;
  ho.api_key = api_key;
  ho.max_connections = o.max_connections;
  ho.max_body_bytes = static_cast<size_t>(o.max_body_bytes);
  serve::HttpServer server(scheduler, tokenizer, ho, limits, defaults);
  server.bind();

  const ModelConfig& c = weights->config;
  std::fprintf(stderr, "qrt: model %s (%s, %lld layers, %s) as '%s'\n", path.c_str(), c.architecture.c_str(),
               static_cast<long long>(c.num_layers), weights->quantization.c_str(), limits.model_id.c_str());
  std::fprintf(stderr, "qrt: backends: %s on %s\n",
               [&] {
                 std::string s;
                 for (const auto& [name, n] : engine->backend_counts()) s += fmt::format("{}{} x {}", s.empty() ? "" : ", ", name, n);
                 return s;
               }().c_str(),
               engine->device_name().c_str());
  std::fprintf(stderr,
               "qrt: %lld sequences at once, %lld positions each, KV pool of %lld blocks x %lld positions; limits: "
               "prompt %lld tokens, max_tokens %lld, body %lld bytes, %d connections, queue %lld%s\n",
               static_cast<long long>(o.max_seqs), static_cast<long long>(o.ctx_size),
               static_cast<long long>(engine->kv_blocks()), static_cast<long long>(kKvBlockPositions),
               static_cast<long long>(limits.max_prompt_tokens), static_cast<long long>(limits.max_tokens),
               static_cast<long long>(o.max_body_bytes), o.max_connections, static_cast<long long>(o.max_queue),
               api_key.empty() ? "" : "; API key required");
  std::fprintf(stderr, "qrt: listening on http://%s:%d\n", o.host.c_str(), server.port());
  std::fflush(stderr);

  std::atomic<bool> served{false};
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(o.shutdown_timeout * 1000));
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (served) return;  // run() ended by itself; this wake-up is ours
    std::fprintf(stderr, "qrt: %s: no new requests; finishing the running ones (up to %.0f s)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", o.shutdown_timeout);
    if (const int64_t cancelled = server.shutdown(grace))
      std::fprintf(stderr, "qrt: the grace period is over: %lld running requests cancelled\n",
                   static_cast<long long>(cancelled));
  });
  server.run();
  served = true;
  pthread_kill(watcher.native_handle(), SIGTERM);  // wakes the watcher if no signal came
  watcher.join();
  const serve::SchedulerMetrics m = scheduler.metrics();
  std::fprintf(stderr, "qrt: stopped after %lld requests (%lld cancelled), %lld tokens generated\n",
               static_cast<long long>(m.finished + m.cancelled + m.failed), static_cast<long long>(m.cancelled),
               static_cast<long long>(m.generated_tokens));
  return 0;
}

const CommandRegistrar registrar(
    "serve", "Serve a model over an OpenAI-compatible HTTP API with continuous batching",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<ServeOptions>();
      add_model_argument(app, o->model, "default: " + default_model_path());
      app.add_option("--host", o->host, "Address to listen on (0.0.0.0 exposes the server to the network)")
          ->capture_default_str();
      app.add_option("--port", o->port, "Port to listen on (0 = any free port, printed at start)")->capture_default_str();
      app.add_option("--api-key", o->api_key,
                     "Require 'Authorization: Bearer KEY' on every request but /health (default: $QRT_API_KEY)");
      app.add_option("--model-name", o->model_name, "The model id clients ask for (default: the model's file name)");
      app.add_option("--max-seqs", o->max_seqs, "Sequences generating at once (the batch)")->capture_default_str();
      app.add_option("--ctx-size", o->ctx_size, "Positions per sequence (prompt + max_tokens)")->capture_default_str();
      app.add_option("--kv-blocks", o->kv_blocks,
                     "KV cache blocks of 16 positions shared by all sequences (default: max-seqs x ctx-size / 16)");
      app.add_option("--max-queue", o->max_queue, "Requests waiting at once; more get 503")->capture_default_str();
      app.add_option("--max-connections", o->max_connections, "Connections served at once; more get 503")
          ->capture_default_str();
      app.add_option("--max-body-bytes", o->max_body_bytes, "Largest request body; larger gets 413")
          ->capture_default_str();
      app.add_option("--max-prompt-tokens", o->max_prompt_tokens, "Longest prompt in tokens (default: ctx-size - 1)");
      app.add_option("--max-tokens", o->max_tokens,
                     "Largest max_tokens a request may ask for (default: ctx-size - 1)");
      app.add_option("--shutdown-timeout", o->shutdown_timeout,
                     "Seconds running requests get to finish after SIGTERM before they are cancelled")
          ->capture_default_str();
      o->engine.add_setup_options(app);
      o->engine.add_engine_options(app);
      app.add_flag("-v,--verbose", o->verbose, "Print plan notes and backend messages");
      return [o] { return serve_command(*o); };
    });

}  // namespace
}  // namespace qrt::cli
