// The engine thread of `qrt serve` (see scheduler.h).
#include "serve/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <unordered_map>

#include "qrt/error.h"
#include "serve/stop_matcher.h"

namespace qrt::serve {

// ---- RequestState ----

RequestState::Update RequestState::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !pending_.empty() || finished_; });
  Update u;
  u.pieces.swap(pending_);
  u.finished = finished_;
  return u;
}

std::string RequestState::Update::text() const {
  std::string all;
  for (const std::string& p : pieces) all += p;
  return all;
}

bool RequestState::finished() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_;
}

std::string RequestState::finish_reason() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finish_reason_;
}

std::string RequestState::error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return error_;
}

int RequestState::error_status() const {
  std::lock_guard<std::mutex> lk(mu_);
  return error_status_;
}

int64_t RequestState::completion_tokens() const {
  std::lock_guard<std::mutex> lk(mu_);
  return completion_tokens_;
}

void RequestState::deliver(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending_.push_back(text);
  }
  cv_.notify_all();
}

void RequestState::finish(const std::string& reason, const std::string& error, int status) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (finished_) return;
    finished_ = true;
    finish_reason_ = reason;
    error_ = error;
    error_status_ = status;
  }
  cv_.notify_all();
}

// ---- Scheduler ----

struct Scheduler::Sequence {
  Sequence(std::shared_ptr<RequestState> r, std::vector<int32_t> prompt_tokens, const GenerationParams& p,
           const Tokenizer& tokenizer)
      : request(std::move(r)), params(p), tokens(std::move(prompt_tokens)), sampler(p.sampling),
        decoder(tokenizer, /*skip_special=*/true), stop(p.stop) {
    prompt = static_cast<int64_t>(tokens.size());
  }
  std::shared_ptr<RequestState> request;
  GenerationParams params;
  std::vector<int32_t> tokens;  // the prompt, then every generated token
  int64_t prompt = 0;
  int64_t next = 0;             // positions already run through the engine
  int64_t step_end = 0;         // `next` once the current step has run
  SequenceBlocks blocks;
  Sampler sampler;
  StreamDecoder decoder;
  StopMatcher stop;
  int64_t generated = 0;
  std::unordered_map<int32_t, int> counts;  // generated token -> times (presence / frequency penalties)
  bool done = false;
};

Scheduler::Scheduler(BatchEngine& engine, const Tokenizer& tokenizer, SchedulerOptions options)
    : engine_(engine), tokenizer_(tokenizer), options_(std::move(options)), vocab_(engine.config().vocab_size),
      pool_(engine.kv_blocks(), kKvBlockPositions) {
  if (options_.max_sequences < 1 || options_.max_sequences > engine.max_rows() - engine.prefill_chunk())
    throw invalid_input(fmt::format("max sequences {} must be in [1, {}] (the engine's rows per step minus a prompt "
                                    "chunk)",
                                    options_.max_sequences, engine.max_rows() - engine.prefill_chunk()));
  if (options_.max_queue < 0) throw invalid_input(fmt::format("max queue {} must be >= 0", options_.max_queue));
  const size_t rows = static_cast<size_t>(engine.max_rows());
  tokens_.reserve(rows);
  sequences_.reserve(rows);
  positions_.reserve(rows);
  logit_rows_.reserve(rows);
  tables_.reserve(rows);
  logit_owner_.reserve(rows);
  logits_.resize(rows * static_cast<size_t>(vocab_));
  metrics_.kv_blocks_total = pool_.blocks();
  metrics_.step_histogram.assign(std::size(SchedulerMetrics::kStepBounds) + 1, 0);
  metrics_.ttft_histogram.assign(std::size(SchedulerMetrics::kTtftBounds) + 1, 0);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<RequestState> Scheduler::submit(std::vector<int32_t> prompt, const GenerationParams& params,
                                                std::string* why) {
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n == 0) throw invalid_input("the prompt is empty: nothing to generate from");
  for (int64_t i = 0; i < n; ++i)
    if (prompt[static_cast<size_t>(i)] < 0 || prompt[static_cast<size_t>(i)] >= vocab_)
      throw invalid_input(fmt::format("prompt token {} (index {}) is outside the vocabulary [0, {})",
                                      prompt[static_cast<size_t>(i)], i, vocab_));
  if (params.max_tokens < 1) throw invalid_input(fmt::format("max_tokens {} must be >= 1", params.max_tokens));
  if (n + params.max_tokens > engine_.max_positions())
    throw invalid_input(fmt::format("the prompt ({} tokens) plus max_tokens ({}) exceeds the context of {} positions "
                                    "per sequence",
                                    n, params.max_tokens, engine_.max_positions()));
  if (pool_.blocks_for(n + params.max_tokens) > pool_.blocks())
    throw invalid_input(fmt::format("the prompt ({} tokens) plus max_tokens ({}) needs {} KV blocks, more than the "
                                    "pool's {}",
                                    n, params.max_tokens, pool_.blocks_for(n + params.max_tokens), pool_.blocks()));
  params.sampling.validate();
  auto state = std::make_shared<RequestState>();
  state->prompt_tokens_ = n;
  state->submitted_ = std::chrono::steady_clock::now();
  auto seq = std::make_unique<Sequence>(state, std::move(prompt), params, tokenizer_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (draining_ || stopping_) {
      *why = "the server is shutting down";
      return nullptr;
    }
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
      ++metrics_.rejected_queue_full;
      *why = fmt::format("the server is busy: {} requests are already waiting; retry later", queue_.size());
      return nullptr;
    }
    queue_.push_back(std::move(seq));
    metrics_.queued = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return state;
}

void Scheduler::cancel(const std::shared_ptr<RequestState>& request) {
  if (!request || request->finished()) return;
  request->cancelled_ = true;
  cv_.notify_all();
}

void Scheduler::drain() {
  std::deque<std::unique_ptr<Sequence>> dropped;
  {
    std::lock_guard<std::mutex> lk(mu_);
    draining_ = true;
    dropped.swap(queue_);
    metrics_.queued = 0;
    metrics_.cancelled += static_cast<int64_t>(dropped.size());
  }
  for (auto& s : dropped) s->request->finish("", "the server is shutting down", 503);
  cv_.notify_all();
  idle_cv_.notify_all();
}

int64_t Scheduler::cancel_running() {
  int64_t running = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancel_running_ = true;
    running = metrics_.running;
  }
  cv_.notify_all();
  return running;
}

bool Scheduler::wait_idle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lk(mu_);
  return idle_cv_.wait_until(lk, deadline, [&] { return metrics_.running == 0 && queue_.empty(); });
}

SchedulerMetrics Scheduler::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  return metrics_;
}

void Scheduler::end(Sequence& s, const std::string& reason, const std::string& error, int status) {
  if (s.done) return;
  s.done = true;
  pool_.release(s.blocks);
  {
    std::lock_guard<std::mutex> lk(s.request->mu_);
    s.request->completion_tokens_ = s.generated;
  }
  s.request->finish(reason, error, status);
  std::lock_guard<std::mutex> lk(mu_);
  // 499: the client left; 503: the shutdown's grace period ran out. Both are cancellations.
  if (!error.empty() && (status == 499 || status == 503)) ++metrics_.cancelled;
  else if (!error.empty()) ++metrics_.failed;
  else ++metrics_.finished;
  // The count wait_idle() reads moves with the sequence itself, never a step behind: a client that
  // has seen this sequence's text must never find the scheduler idle while it runs on.
  --metrics_.running;
  metrics_.kv_blocks_in_use = pool_.in_use();
  metrics_.kv_blocks_reserved = pool_.reserved();
  if (metrics_.running == 0 && queue_.empty()) idle_cv_.notify_all();
}

void Scheduler::loop() {
  for (;;) {
    bool cancel_all = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty() || !running_.empty(); });
      if (stopping_) break;
      // Queued requests whose clients left never start.
      for (auto it = queue_.begin(); it != queue_.end();) {
        if ((*it)->request->cancelled()) {
          (*it)->request->finish("", "the client cancelled the request", 499);
          ++metrics_.cancelled;
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      // Admission, first come first served: a slot, and the pool reserves the whole request.
      while (!draining_ && !queue_.empty() && static_cast<int64_t>(running_.size()) < options_.max_sequences) {
        Sequence& s = *queue_.front();
        if (!pool_.reserve(s.blocks, s.prompt + s.params.max_tokens)) break;
        metrics_.prompt_tokens += s.prompt;
        ++metrics_.running;  // in the same critical section that takes it off the queue
        metrics_.kv_blocks_reserved = pool_.reserved();
        running_.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      cancel_all = cancel_running_;
      metrics_.queued = static_cast<int64_t>(queue_.size());
    }
    for (auto& s : running_) {
      if (cancel_all) end(*s, "", "the server is shutting down", 503);
      else if (s->request->cancelled()) end(*s, "", "the client cancelled the request", 499);
    }
    running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done; }),
                   running_.end());
    if (!running_.empty()) run_step();
    std::lock_guard<std::mutex> lk(mu_);
    metrics_.kv_blocks_in_use = pool_.in_use();
    metrics_.kv_blocks_reserved = pool_.reserved();
    if (running_.empty() && queue_.empty()) idle_cv_.notify_all();
  }
  // The scheduler is destroyed: whatever is left ends now.
  for (auto& s : running_) end(*s, "", "the server stopped", 503);
  running_.clear();
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& s : queue_) s->request->finish("", "the server stopped", 503);
  queue_.clear();
  metrics_.running = metrics_.queued = 0;
  idle_cv_.notify_all();
}

void Scheduler::run_step() {
  tokens_.clear();
  sequences_.clear();
  positions_.clear();
  logit_rows_.clear();
  tables_.clear();
  logit_owner_.clear();
  const int64_t max_rows = engine_.max_rows(), chunk = engine_.prefill_chunk();
  auto add_rows = [&](Sequence& s, int64_t end) {
    pool_.grow(s.blocks, end);
    const int32_t id = static_cast<int32_t>(tables_.size());
    tables_.push_back({s.blocks.table.data(), static_cast<int64_t>(s.blocks.table.size())});
    for (int64_t p = s.next; p < end; ++p) {
      tokens_.push_back(s.tokens[static_cast<size_t>(p)]);
      positions_.push_back(p);
      sequences_.push_back(id);
    }
    s.step_end = end;
    if (end == static_cast<int64_t>(s.tokens.size())) {  // the newest token: its logits pick the next
      logit_rows_.push_back(static_cast<int64_t>(tokens_.size()) - 1);
      logit_owner_.push_back(&s);
    }
  };
  // Every decoding sequence's next token first (one row each), then prompt chunks in arrival
  // order while they fit. A chunk ends at a multiple of the chunk size, as the single-sequence
  // engine's prefill does, so each row computes exactly what `qrt run` computes.
  for (auto& s : running_)
    if (s->next >= s->prompt) add_rows(*s, s->next + 1);
  for (auto& s : running_) {
    if (s->next >= s->prompt) continue;
    const int64_t end = std::min(s->prompt, (s->next / chunk + 1) * chunk);
    if (static_cast<int64_t>(tokens_.size()) + end - s->next > max_rows) break;
    add_rows(*s, end);
  }
  BatchStep step;
  step.rows = static_cast<int64_t>(tokens_.size());
  step.tokens = tokens_.data();
  step.positions = positions_.data();
  step.sequences = sequences_.data();
  step.tables = tables_.data();
  step.table_count = static_cast<int64_t>(tables_.size());
  step.logit_rows = logit_rows_.data();
  step.logit_count = static_cast<int64_t>(logit_rows_.size());
  const auto t0 = std::chrono::steady_clock::now();
  try {
    engine_.step(step, logits_.data());
  } catch (const std::exception& e) {
    // Never expected (submit() checked every request): the step's sequences fail, others go on.
    for (auto& s : running_)
      if (s->step_end > s->next) end(*s, "", std::string("the engine failed: ") + e.what(), 500);
    running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done; }),
                   running_.end());
    return;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& s : running_)
    if (s->step_end > s->next) s->next = s->step_end;
  for (size_t k = 0; k < logit_owner_.size(); ++k)
    sample_row(*logit_owner_[k], logits_.data() + k * static_cast<size_t>(vocab_));
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done; }),
                 running_.end());
  std::lock_guard<std::mutex> lk(mu_);
  ++metrics_.steps;
  metrics_.step_rows += step.rows;
  metrics_.step_seconds += seconds;
  for (size_t b = 0; b < metrics_.step_histogram.size(); ++b)
    if (b == std::size(SchedulerMetrics::kStepBounds) || seconds <= SchedulerMetrics::kStepBounds[b])
      ++metrics_.step_histogram[b];
}

void Scheduler::sample_row(Sequence& s, float* logits) {
  const GenerationParams& p = s.params;
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    for (const auto& [token, count] : s.counts)
      logits[token] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(count);
  const int32_t token = s.sampler.sample(logits, vocab_, s.tokens);
  if (s.generated == 0) {
    const double ttft = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.request->submitted_).count();
    std::lock_guard<std::mutex> lk(mu_);
    metrics_.ttft_seconds += ttft;
    ++metrics_.ttft_count;
    for (size_t b = 0; b < metrics_.ttft_histogram.size(); ++b)
      if (b == std::size(SchedulerMetrics::kTtftBounds) || ttft <= SchedulerMetrics::kTtftBounds[b])
        ++metrics_.ttft_histogram[b];
  }
  // The end of the text: what the decoder and the stop matcher still hold, unless a stop string
  // already cut it.
  auto flush = [&] {
    const StopMatcher::Result r = s.stop.push(s.decoder.finish());
    s.request->deliver(r.text);
    if (!r.stopped) s.request->deliver(s.stop.finish());
  };
  const bool stop_token = std::find(options_.stop_tokens.begin(), options_.stop_tokens.end(), token) !=
                          options_.stop_tokens.end();
  if (stop_token && !p.ignore_eos) {
    flush();
    end(s, "stop");
    return;
  }
  s.tokens.push_back(token);
  ++s.generated;
  ++s.counts[token];
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++metrics_.generated_tokens;
  }
  const StopMatcher::Result r = s.stop.push(s.decoder.push(token));
  s.request->deliver(r.text);
  if (r.stopped) {
    end(s, "stop");
    return;
  }
  if (s.generated == p.max_tokens) {
    flush();
    end(s, "length");
  }
}

}  // namespace qrt::serve
