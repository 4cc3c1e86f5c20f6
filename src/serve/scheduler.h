// The engine side of `qrt serve`: one thread runs the batched engine (qrt/batch_engine.h) step
// after step; requests queue; each step carries the decode row of every running sequence and the
// next prompt chunk(s) of the sequences still reading their prompt (continuous batching, in the
// manner of vLLM's scheduler: a sequence joins at any step and leaves the moment it ends).
//
// Admission: a request waits in a FIFO queue until a sequence slot is free and the KV pool can
// reserve its prompt + max_tokens positions (kv_block_pool.h); a full queue rejects at once. A
// running sequence therefore never waits for memory. A sequence that finishes, is cancelled (its
// client went away) or fails releases its blocks before the next step.
//
// Per request: its own sampler (temperature, top-k, top-p, min-p, seed, repetition / presence /
// frequency penalties), stop tokens, stop strings (never leaked, stop_matcher.h) and token limit.
// Text reaches the client through its RequestState as it becomes complete UTF-8.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "qrt/batch_engine.h"
#include "qrt/sampler.h"
#include "qrt/tokenizer.h"
#include "serve/kv_block_pool.h"

namespace qrt::serve {

struct GenerationParams {
  SamplingParams sampling;
  float presence_penalty = 0.0f;   // OpenAI: minus this from the logit of every token already generated
  float frequency_penalty = 0.0f;  // OpenAI: minus this times the count of each generated token
  int64_t max_tokens = 16;         // >= 1
  std::vector<std::string> stop;   // stop strings (not included in the text)
  bool ignore_eos = false;         // keep going past the model's stop tokens (benchmarks)
};

// One request as the client and the engine thread share it.
class RequestState {
 public:
  // What the engine produced since the last call, and whether it is finished. One piece per
  // token that released text (a stream sends each as its own event, as OpenAI does).
  struct Update {
    std::vector<std::string> pieces;
    bool finished = false;
    std::string text() const;
  };
  // Waits up to `timeout` for text or the end; returns what is new.
  Update wait(std::chrono::milliseconds timeout);
  bool finished() const;

  // After finished(): "stop", "length", or "" with error() set (cancelled, shutting down, failed).
  std::string finish_reason() const;
  std::string error() const;
  int error_status() const;  // the HTTP status that error() maps to
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const;
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Scheduler;
  void deliver(const std::string& text);
  void finish(const std::string& reason, const std::string& error = {}, int status = 0);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> pending_;
  bool finished_ = false;
  std::string finish_reason_, error_;
  int error_status_ = 0;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point submitted_;
};

struct SchedulerOptions {
  int64_t max_sequences = 8;         // running at once (<= engine.max_rows() - prefill_chunk())
  int64_t max_queue = 64;            // waiting at once; more are rejected
  std::vector<int32_t> stop_tokens;  // end generation (unless ignore_eos)
};

// Counters and gauges for /metrics.
struct SchedulerMetrics {
  int64_t running = 0, queued = 0;
  int64_t kv_blocks_total = 0, kv_blocks_in_use = 0, kv_blocks_reserved = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0;
  int64_t finished = 0, cancelled = 0, rejected_queue_full = 0, failed = 0;
  int64_t steps = 0, step_rows = 0;
  double step_seconds = 0;
  // Histograms: cumulative counts per upper bound of kHistogramBounds, then the total (+Inf).
  static constexpr double kStepBounds[] = {0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2};
  static constexpr double kTtftBounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  std::vector<int64_t> step_histogram, ttft_histogram;
  double ttft_seconds = 0;
  int64_t ttft_count = 0;
};

class Scheduler {
 public:
  // `engine` and `tokenizer` outlive the scheduler. Starts the engine thread.
  Scheduler(BatchEngine& engine, const Tokenizer& tokenizer, SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Throws qrt::Error (InvalidInput) when it can never run: an empty prompt, a
  // token outside the vocabulary, prompt + max_tokens past the engine's positions or the pool.
  // Returns nullptr with *why set when the queue is full or the scheduler is draining (the client
  // should retry later: HTTP 503).
  std::shared_ptr<RequestState> submit(std::vector<int32_t> prompt, const GenerationParams& params, std::string* why);
  // The client is gone: the sequence stops and frees its blocks before the next step.
  void cancel(const std::shared_ptr<RequestState>& request);
  // Stops admitting: queued requests end with a 503 error, later submits are refused; running
  // sequences go on.
  void drain();
  // Cancels every running sequence (after drain(), when the grace period is over): each ends with
  // a 503 error before the next step. Returns how many were running.
  int64_t cancel_running();
  // Waits until nothing is queued and every admitted sequence has ended (its last text and its end
  // handed to its RequestState), or the deadline passes; true when idle. A request whose client
  // has seen any of its text is never taken for idle while it runs.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);

  SchedulerMetrics metrics() const;
  const BatchEngine& engine() const { return engine_; }

 private:
  struct Sequence;
  void loop();
  void run_step();
  void sample_row(Sequence& s, float* logits);
  void end(Sequence& s, const std::string& reason, const std::string& error = {}, int status = 0);

  BatchEngine& engine_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  int64_t vocab_ = 0;

  mutable std::mutex mu_;  // queue_, flags, metrics_; running_ is the engine thread's alone
  std::condition_variable cv_, idle_cv_;
  std::deque<std::unique_ptr<Sequence>> queue_;
  std::vector<std::unique_ptr<Sequence>> running_;
  bool stopping_ = false, draining_ = false, cancel_running_ = false;
  SchedulerMetrics metrics_;
  std::thread thread_;

  // Step buffers, reused (engine thread only).
  std::vector<int32_t> tokens_, sequences_;
  std::vector<int64_t> positions_, logit_rows_;
  std::vector<KvBlockTable> tables_;
  std::vector<Sequence*> logit_owner_;
  std::vector<float> logits_;
  KvBlockPool pool_;  // engine thread only; its counts reach metrics_ after every step
};

}  // namespace qrt::serve
