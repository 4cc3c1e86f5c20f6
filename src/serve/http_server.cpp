// The HTTP side of `qrt serve` (see http_server.h).
#include "serve/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <condition_variable>
#include <ctime>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "qrt/error.h"

namespace qrt::serve {
namespace {

// Set on the thread that answers connections past the limit.
thread_local bool t_over_connection_limit = false;

// httplib's connection queue with a limit: `workers` threads serve connections (each for its
// whole keep-alive life); a connection that arrives while all are taken goes to one extra thread
// that answers its request with 503 and closes it, so a flood of connections never queues
// silently behind the running ones.
class ConnectionQueue final : public httplib::TaskQueue {
 public:
  explicit ConnectionQueue(int workers) : workers_(static_cast<size_t>(workers)) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(false); });
    threads_.emplace_back([this] { work(true); });
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (busy_ + jobs_.size() < workers_) jobs_.push_back(std::move(fn));
      else overflow_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  size_t busy() const {
    std::lock_guard<std::mutex> lk(mu_);
    return busy_;
  }

 private:
  void work(bool overflow) {
    t_over_connection_limit = overflow;
    auto& queue = overflow ? overflow_ : jobs_;
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return shutdown_ || !queue.empty(); });
        if (queue.empty()) return;  // shut down, nothing left
        fn = std::move(queue.front());
        queue.pop_front();
        if (!overflow) ++busy_;
      }
      fn();
      if (!overflow) {
        std::lock_guard<std::mutex> lk(mu_);
        --busy_;
      }
    }
  }

  const size_t workers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_, overflow_;
  size_t busy_ = 0;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

std::string sse(const json& j) { return "data: " + json_text(j) + "\n\n"; }

// Compares the given key with the server's in time that does not depend on where they differ
// (a key must not leak through response timing).
bool same_secret(const std::string& given, const std::string& key) {
  if (key.empty()) return false;
  unsigned char diff = given.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i % key.size()]);
  return diff == 0;
}

int64_t unix_time() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

struct HttpServer::Impl {
  Impl(Scheduler& s, const Tokenizer& t, HttpOptions o, ApiLimits l, SamplingDefaults d)
      : scheduler(s), tokenizer(t), options(std::move(o)), limits(std::move(l)), defaults(d),
        seeds(std::random_device{}()) {}

  Scheduler& scheduler;
  const Tokenizer& tokenizer;
  HttpOptions options;
  ApiLimits limits;
  SamplingDefaults defaults;
  httplib::Server server;
  ConnectionQueue* connections = nullptr;  // owned by the server while it runs
  std::atomic<bool> draining{false};
  std::atomic<int64_t> in_flight{0};  // generation responses still being written
  const int64_t started = unix_time();

  std::mutex mu_;  // seeds, counters
  std::mt19937_64 seeds;
  std::map<std::pair<std::string, int>, int64_t> responses;  // (path, status) -> count

  uint64_t random_seed() {
    std::lock_guard<std::mutex> lk(mu_);
    return seeds();
  }
  std::string new_id(const char* prefix) {
    std::lock_guard<std::mutex> lk(mu_);
    return fmt::format("{}{:016x}", prefix, seeds());
  }

  static void send_error(httplib::Response& res, const ApiError& e, bool close = false) {
    res.status = e.status;
    res.set_content(json_text(e.to_json()), "application/json");
    if (close) res.set_header("Connection", "close");
  }

  void setup();
  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  std::string metrics_text();
};

void HttpServer::Impl::setup() {
  server.new_task_queue = [this] {
    connections = new ConnectionQueue(options.max_connections);
    return connections;
  };
  // SO_REUSEADDR only (httplib's default SO_REUSEPORT would let a second server share the port
  // silently); TCP_NODELAY, inherited by accepted sockets, so each streamed token leaves at once.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  });
  server.set_tcp_nodelay(true);
  server.set_payload_max_length(options.max_body_bytes);
  server.set_keep_alive_max_count(1000);

  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    if (t_over_connection_limit) {
      send_error(res, {503, fmt::format("too many connections (this server serves {} at once); retry later",
                                        options.max_connections),
                       "server_error", "", "too_many_connections"},
                 true);
      res.set_header("Retry-After", "1");
      return R::Handled;
    }
    if (draining) {
      send_error(res, {503, "the server is shutting down", "server_error", "", "shutting_down"}, true);
      return R::Handled;
    }
    if (!options.api_key.empty() && req.path != "/health") {
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      const bool ok = auth.size() > prefix.size() && auth.compare(0, prefix.size(), prefix) == 0 &&
                      same_secret(auth.substr(prefix.size()), options.api_key);
      if (!ok) {
        // Before the body is read: nothing of the request is processed, and the connection closes
        // (its unread body must not be taken for the next request).
        send_error(res, {401,
                         auth.empty() ? "no API key: send it as 'Authorization: Bearer KEY'"
                                      : "incorrect API key provided",
                         "invalid_request_error", "", "invalid_api_key"},
                   true);
        return R::Handled;
      }
    }
    return R::Unhandled;
  });

  // httplib's own errors (unknown path 404, body too large 413, unparsable request 400) in
  // OpenAI's shape; our handlers' errors already have a body.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    if (!res.body.empty()) return R::Unhandled;
    std::string message = fmt::format("HTTP {} for {} {}", res.status, req.method, req.path);
    if (res.status == 404) message = fmt::format("no such endpoint: {} {}", req.method, req.path);
    if (res.status == 413) message = "the request body is larger than this server accepts";
    send_error(res, {res.status, message}, res.status == 413);
    return R::Handled;
  }));
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, {500, what, "server_error"});
  });
  server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    static const char* known[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"};
    std::string path = "other";
    for (const char* k : known)
      if (req.path == k) path = k;
    std::lock_guard<std::mutex> lk(mu_);
    ++responses[{path, res.status}];
  });

  server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(Endpoint::Completions, req, res);
  });
  server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(Endpoint::ChatCompletions, req, res);
  });
  server.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(json_text(models_response(limits.model_id, started)), "application/json");
  });
  server.Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != limits.model_id)
      return send_error(res, {404, fmt::format("The model '{}' does not exist", req.matches[1].str()),
                              "invalid_request_error", "model", "model_not_found"});
    res.set_content(json_text(models_response(limits.model_id, started)["data"][0]), "application/json");
  });
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
}

void HttpServer::Impl::generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  ApiError err;
  std::optional<ParsedRequest> parsed = parse_request(endpoint, req.body, limits, defaults, random_seed(), &err);
  if (!parsed) return send_error(res, err);
  auto r = std::make_shared<ParsedRequest>(std::move(*parsed));
  const bool chat = endpoint == Endpoint::ChatCompletions;

  // Tokenize; text far longer than any prompt the limit admits is refused before encoding.
  std::vector<int32_t> prompt;
  std::string text;
  if (chat) {
    text = tokenizer.apply_chat_template(r->messages, /*add_generation_prompt=*/true);
  } else if (r->prompt_tokens.empty()) {
    text = r->prompt_text;
  }
  const size_t max_text = static_cast<size_t>(limits.max_prompt_tokens) * 64;
  if (text.size() > max_text)
    return send_error(res, {400,
                            fmt::format("the prompt has {} bytes: far more than the {} tokens this server accepts",
                                        text.size(), limits.max_prompt_tokens),
                            "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded"});
  if (chat) prompt = tokenizer.encode(text, /*add_special=*/false);  // the template has its special tokens
  else if (!r->prompt_tokens.empty()) prompt = r->prompt_tokens;
  else prompt = tokenizer.encode(text, /*add_special=*/true);
  if (auto e = check_lengths(*r, static_cast<int64_t>(prompt.size()), limits)) return send_error(res, *e);

  std::string why;
  std::shared_ptr<RequestState> state;
  try {
    state = scheduler.submit(std::move(prompt), r->params, &why);
  } catch (const Error& e) {
    return send_error(res, {400, e.what()});
  }
  if (!state) {
    send_error(res, {503, why, "server_error", "", draining ? "shutting_down" : "server_overloaded"}, true);
    res.set_header("Retry-After", "1");
    return;
  }

  struct Stream {
    std::shared_ptr<RequestState> state;
    std::string id, text;
    int64_t created = 0;
    bool first = true;
  };
  auto s = std::make_shared<Stream>();
  s->state = state;
  s->id = new_id(chat ? "chatcmpl-" : "cmpl-");
  s->created = unix_time();
  ++in_flight;
  const std::string& model = limits.model_id;
  auto release = [this, s](bool success) {
    if (!success) scheduler.cancel(s->state);  // the client left, or the server stopped
    --in_flight;
  };
  constexpr auto kPoll = std::chrono::milliseconds(100);

  if (r->stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [s, r, chat, &model, kPoll](size_t, httplib::DataSink& sink) {
          const RequestState::Update u = s->state->wait(kPoll);
          if (!sink.is_writable()) return false;  // gone: the releaser cancels the sequence
          std::string out;
          if (s->first && chat) out += sse(stream_chunk(*r, s->id, s->created, model, "", "", true));
          s->first = false;
          for (const std::string& piece : u.pieces) out += sse(stream_chunk(*r, s->id, s->created, model, piece, "", false));
          if (u.finished) {
            const std::string error = s->state->error();
            if (!error.empty()) {
              const int status = s->state->error_status();
              out += sse(ApiError{status, error, "server_error", "", status == 503 ? "shutting_down" : ""}.to_json());
            } else {
              out += sse(stream_chunk(*r, s->id, s->created, model, "", s->state->finish_reason(), false));
              if (r->include_usage)
                out += sse(usage_chunk(*r, s->id, s->created, model, s->state->prompt_tokens(),
                                       s->state->completion_tokens()));
            }
            out += "data: [DONE]\n\n";
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) return false;
          if (u.finished) sink.done();
          return true;
        },
        release);
    return;
  }
  // Not streamed: the body is written when the sequence ends; meanwhile the connection is watched,
  // so a client that gives up (a timeout) frees its sequence as a streaming one does.
  res.set_chunked_content_provider(
      "application/json",
      [s, r, &model, kPoll](size_t, httplib::DataSink& sink) {
        const RequestState::Update u = s->state->wait(kPoll);
        s->text += u.text();
        if (!sink.is_writable()) return false;
        if (!u.finished) return true;
        // Cancelled by a shutdown past its grace period: the headers (200) are out, so the
        // response is cut short, and the client sees a failed request rather than a partial one.
        if (!s->state->error().empty()) return false;
        const std::string body = json_text(completion_response(*r, s->id, s->created, model, s->text,
                                                          s->state->finish_reason(), s->state->prompt_tokens(),
                                                          s->state->completion_tokens()));
        if (!sink.write(body.data(), body.size())) return false;
        sink.done();
        return true;
      },
      release);
}

std::string HttpServer::Impl::metrics_text() {
  const SchedulerMetrics m = scheduler.metrics();
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  auto value = [&](const std::string& series, double v) { out += fmt::format("{} {}\n", series, v); };
  metric("qrt_http_responses_total", "counter", "HTTP responses by path and status.");
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& [key, n] : responses)
      value(fmt::format("qrt_http_responses_total{{path=\"{}\",status=\"{}\"}}", key.first, key.second),
            static_cast<double>(n));
  }
  metric("qrt_http_connections", "gauge", "Connections being served.");
  value("qrt_http_connections", connections ? static_cast<double>(connections->busy()) : 0.0);
  metric("qrt_requests_running", "gauge", "Sequences in the engine's batch.");
  value("qrt_requests_running", static_cast<double>(m.running));
  metric("qrt_requests_queued", "gauge", "Requests waiting for a sequence slot or KV blocks.");
  value("qrt_requests_queued", static_cast<double>(m.queued));
  metric("qrt_requests_total", "counter", "Requests that ended, by how.");
  value("qrt_requests_total{result=\"finished\"}", static_cast<double>(m.finished));
  value("qrt_requests_total{result=\"cancelled\"}", static_cast<double>(m.cancelled));
  value("qrt_requests_total{result=\"failed\"}", static_cast<double>(m.failed));
  value("qrt_requests_total{result=\"rejected_queue_full\"}", static_cast<double>(m.rejected_queue_full));
  metric("qrt_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
  value("qrt_prompt_tokens_total", static_cast<double>(m.prompt_tokens));
  metric("qrt_generated_tokens_total", "counter", "Tokens generated.");
  value("qrt_generated_tokens_total", static_cast<double>(m.generated_tokens));
  metric("qrt_kv_blocks_total", "gauge", "Blocks of the paged KV cache (16 positions each).");
  value("qrt_kv_blocks_total", static_cast<double>(m.kv_blocks_total));
  metric("qrt_kv_blocks_in_use", "gauge", "KV blocks holding positions of running sequences.");
  value("qrt_kv_blocks_in_use", static_cast<double>(m.kv_blocks_in_use));
  metric("qrt_kv_blocks_reserved", "gauge", "KV blocks reserved by running sequences (prompt + max_tokens).");
  value("qrt_kv_blocks_reserved", static_cast<double>(m.kv_blocks_reserved));
  metric("qrt_step_rows_total", "counter", "Rows (tokens) run through the model by all steps.");
  value("qrt_step_rows_total", static_cast<double>(m.step_rows));
  auto histogram = [&](const char* name, const char* help, const double* bounds, size_t n,
                       const std::vector<int64_t>& counts, double sum, int64_t count) {
    metric(name, "histogram", help);
    for (size_t b = 0; b < n; ++b)
      value(fmt::format("{}_bucket{{le=\"{}\"}}", name, bounds[b]), static_cast<double>(counts[b]));
    value(fmt::format("{}_bucket{{le=\"+Inf\"}}", name), static_cast<double>(counts[n]));
    value(fmt::format("{}_sum", name), sum);
    value(fmt::format("{}_count", name), static_cast<double>(count));
  };
  histogram("qrt_step_seconds", "Time of one engine step.", SchedulerMetrics::kStepBounds,
            std::size(SchedulerMetrics::kStepBounds), m.step_histogram, m.step_seconds, m.steps);
  histogram("qrt_time_to_first_token_seconds", "From arrival to the first generated token.",
            SchedulerMetrics::kTtftBounds, std::size(SchedulerMetrics::kTtftBounds), m.ttft_histogram,
            m.ttft_seconds, m.ttft_count);
  return out;
}

HttpServer::HttpServer(Scheduler& scheduler, const Tokenizer& tokenizer, HttpOptions options, ApiLimits limits,
                       SamplingDefaults defaults)
    : impl_(std::make_unique<Impl>(scheduler, tokenizer, std::move(options), std::move(limits), defaults)) {
  if (impl_->options.max_connections < 1)
    throw invalid_input(fmt::format("max connections {} must be >= 1", impl_->options.max_connections));
  impl_->setup();
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  const HttpOptions& o = impl_->options;
  if (o.port == 0) {
    port_ = impl_->server.bind_to_any_port(o.host);
    if (port_ <= 0) throw Error(ErrorKind::Io, fmt::format("cannot listen on {} (any port)", o.host));
    return;
  }
  if (o.port < 0 || o.port > 65535) throw invalid_input(fmt::format("--port {}: expected 0 to 65535", o.port));
  if (!impl_->server.bind_to_port(o.host, o.port))
    throw Error(ErrorKind::Io, fmt::format("cannot listen on {}:{} (in use, or not an address of this machine)",
                                           o.host, o.port));
  port_ = o.port;
}

void HttpServer::run() { impl_->server.listen_after_bind(); }

int64_t HttpServer::shutdown(std::chrono::milliseconds grace) {
  using clock = std::chrono::steady_clock;
  impl_->draining = true;
  impl_->scheduler.drain();
  int64_t cancelled = 0;
  if (!impl_->scheduler.wait_idle(clock::now() + grace)) {
    cancelled = impl_->scheduler.cancel_running();
    impl_->scheduler.wait_idle(clock::now() + std::chrono::seconds(10));
  }
  // The last responses are written within a poll interval of their sequence's end.
  const auto deadline = clock::now() + std::chrono::seconds(10);
  while (impl_->in_flight > 0 && clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->server.stop();
  return cancelled;
}

}  // namespace qrt::serve
