// The HTTP side of `qrt serve` on cpp-httplib: /v1/completions, /v1/chat/completions (JSON or
// server-sent events), /v1/models, /health, /metrics (Prometheus text). Requests go to the
// Scheduler; a client that disconnects has its sequence cancelled.
//
// Guards, in the order a request meets them: a connection past max_connections gets 503 and is
// closed; while shutting down every request gets 503; with an API key, a request without
// "Authorization: Bearer KEY" gets 401 before its body is read (no work is done); a body past
// max_body_bytes gets 413; then the request is checked field by field (openai_api.h). Every error
// body is OpenAI's error object, and the rejected connections are closed ("Connection: close").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "qrt/tokenizer.h"
#include "serve/openai_api.h"
#include "serve/scheduler.h"

namespace httplib {
class Server;
}

namespace qrt::serve {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0 = any free port (port() says which)
  std::string api_key;             // "" = no authentication
  size_t max_body_bytes = 4 << 20;
  int max_connections = 32;        // connections served at once; more get 503
};

class HttpServer {
 public:
  HttpServer(Scheduler& scheduler, const Tokenizer& tokenizer, HttpOptions options, ApiLimits limits,
             SamplingDefaults defaults);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; throws qrt::Error naming host:port when it cannot.
  void bind();
  int port() const { return port_; }
  // Serves until stop(); returns then.
  void run();
  // Graceful shutdown, from another thread: new requests get 503 at once, queued ones end with
  // 503, running sequences get `grace` to finish and are then cancelled; when every response is
  // written, run() returns. Returns how many running requests the end of the grace period cancelled.
  int64_t shutdown(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace qrt::serve
