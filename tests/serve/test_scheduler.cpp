// The scheduler (serve/scheduler.h) on a tiny random model: requests that run together, queue
// for a slot or for KV blocks, and end by length, stop token or stop string produce exactly the
// text the single-sequence Generator produces for each alone (greedy and seeded sampling);
// cancelling frees the blocks; a full queue and a draining scheduler refuse; a shutdown past its
// grace period cancels what runs; requests that can never run are errors. A gate on the engine's
// steps (GatedEngine) fixes how far generation has got when a test looks, on any machine.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "../model/tiny_model.h"
#include "qrt/batch_engine.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "serve/scheduler.h"

namespace qrt::serve {
namespace {

// 50 one-letter tokens, so the tiny model's ids print as letters.
Tokenizer letter_tokenizer() {
  TokenizerSpec spec;
  for (char c = 'a'; c <= 'z'; ++c) spec.tokens.push_back(std::string(1, c));
  for (char c = 'A'; c <= 'X'; ++c) spec.tokens.push_back(std::string(1, c));
  spec.origin = "letters";
  return Tokenizer::from_spec(spec);
}

EngineOptions tiny_options(int64_t positions, int64_t prefill) {
  EngineOptions o;
  o.runtime.max_input_length = positions;
  o.runtime.max_new_tokens = 0;
  o.runtime.threads = 2;
  o.runtime.use_tuning_cache = false;
  o.device = probe_cpu();
  o.prefill_batch = prefill;
  o.kv_dtype = KvCacheDType::F16;
  return o;
}

struct Outcome {
  std::string text, finish_reason, error;
  int64_t completion_tokens = 0;
};

Outcome collect(const std::shared_ptr<RequestState>& r) {
  Outcome o;
  for (;;) {
    RequestState::Update u = r->wait(std::chrono::milliseconds(1000));
    o.text += u.text();
    if (u.finished) break;
  }
  o.finish_reason = r->finish_reason();
  o.error = r->error();
  o.completion_tokens = r->completion_tokens();
  return o;
}

// The real engine, except that each step waits for a permit from the test: the test decides how
// far generation has got when it looks, whatever the speed of the machine.
class GatedEngine final : public BatchEngine {
 public:
  explicit GatedEngine(std::unique_ptr<BatchEngine> inner) : inner_(std::move(inner)) {}
  void allow(int64_t steps) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      permits_ += steps;
    }
    cv_.notify_all();
  }
  void open() { allow(int64_t{1} << 40); }
  // Opens the gate when it goes: a failed assertion must not leave the scheduler's thread waiting.
  struct OpenAtExit {
    GatedEngine& engine;
    ~OpenAtExit() { engine.open(); }
  };
  void step(const BatchStep& step, float* logits) override {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return permits_ > 0; });
      --permits_;
    }
    inner_->step(step, logits);
  }
  const ModelConfig& config() const override { return inner_->config(); }
  int64_t kv_blocks() const override { return inner_->kv_blocks(); }
  int64_t max_rows() const override { return inner_->max_rows(); }
  int64_t max_positions() const override { return inner_->max_positions(); }
  int64_t prefill_chunk() const override { return inner_->prefill_chunk(); }
  const std::vector<LinearPlan>& plans() const override { return inner_->plans(); }
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const override { return inner_->kernels(); }
  std::map<std::string, int> backend_counts() const override { return inner_->backend_counts(); }
  std::string device_name() const override { return inner_->device_name(); }

 private:
  std::unique_ptr<BatchEngine> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t permits_ = 0;
};

// The first text of a request (waits up to 30 s).
std::string first_text(const std::shared_ptr<RequestState>& r) {
  std::string text;
  for (int i = 0; i < 30 && text.empty(); ++i) text += r->wait(std::chrono::milliseconds(1000)).text();
  return text;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = testing::tiny_config();
    c.max_position_embeddings = 512;
    weights_ = testing::tiny_weights(c, 41);
    tokenizer_ = std::make_unique<Tokenizer>(letter_tokenizer());
  }
  // The Generator's text for `prompt` alone (the reference).
  std::string generate_alone(const std::vector<int32_t>& prompt, const GenerationParams& p,
                             const std::vector<int32_t>& stop_tokens) {
    auto engine = make_cpu_engine(weights_, tiny_options(128, 8));
    Generator g(*engine);
    GenerationOptions go;
    go.max_new_tokens = p.max_tokens;
    go.sampling = p.sampling;
    go.stop_tokens = stop_tokens;
    std::string text;
    g.generate_text(*tokenizer_, prompt, go, [&](const std::string& s) { text += s; });
    return text;
  }
  std::unique_ptr<BatchEngine> batch_engine(int64_t kv_blocks, int64_t max_seqs) {
    EngineOptions o = tiny_options(128, 8);
    o.kv_blocks = kv_blocks;
    o.max_step_rows = max_seqs + 8;
    return make_batch_engine(weights_, o);
  }
  std::vector<int32_t> prompt(const std::string& text) { return tokenizer_->encode(text); }

  std::shared_ptr<ModelWeights> weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(SchedulerTest, ConcurrentRequestsGiveWhatEachGivesAlone) {
  // 3 slots and a pool of 14 blocks for 7 requests: some wait for a slot, some for blocks.
  auto engine = batch_engine(14, 3);
  SchedulerOptions so;
  so.max_sequences = 3;
  so.stop_tokens = {7};  // 'h' ends generation in some of them
  Scheduler scheduler(*engine, *tokenizer_, so);
  struct Case {
    std::string prompt;
    GenerationParams params;
  };
  std::vector<Case> cases;
  const char* prompts[] = {"thequickbrownfox", "a", "JumpsOverTheLazyDog", "loremipsumdolorsitametconsecteturadipiscing",
                           "xyz", "helloworld", "Q"};
  for (int i = 0; i < 7; ++i) {
    Case c;
    c.prompt = prompts[i];
    c.params.max_tokens = 10 + 7 * i;
    if (i % 2) {  // seeded sampling on every other request
      c.params.sampling.temperature = 0.9f;
      c.params.sampling.top_k = 20;
      c.params.sampling.top_p = 0.95f;
      c.params.sampling.seed = 1000 + i;
    }
    cases.push_back(c);
  }
  std::vector<std::shared_ptr<RequestState>> requests;
  for (const Case& c : cases) {
    std::string why;
    requests.push_back(scheduler.submit(prompt(c.prompt), c.params, &why));
    ASSERT_TRUE(requests.back()) << why;
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Outcome o = collect(requests[i]);
    EXPECT_EQ(o.error, "");
    EXPECT_EQ(o.text, generate_alone(prompt(cases[i].prompt), cases[i].params, so.stop_tokens)) << "request " << i;
    EXPECT_TRUE(o.finish_reason == "stop" || o.finish_reason == "length") << o.finish_reason;
    if (o.finish_reason == "length") {
      EXPECT_EQ(o.completion_tokens, cases[i].params.max_tokens);
    }
  }
  const SchedulerMetrics m = scheduler.metrics();
  EXPECT_EQ(m.finished, 7);
  EXPECT_EQ(m.running, 0);
  EXPECT_EQ(m.kv_blocks_in_use, 0);  // every finished sequence gave its blocks back
  EXPECT_EQ(m.kv_blocks_reserved, 0);
  EXPECT_GT(m.steps, 0);
}

TEST_F(SchedulerTest, StopStringsEndTheTextBeforeThem) {
  auto engine = batch_engine(16, 2);
  SchedulerOptions so;
  so.max_sequences = 2;
  Scheduler scheduler(*engine, *tokenizer_, so);
  GenerationParams p;
  p.max_tokens = 40;
  const std::string full = generate_alone(prompt("stopstrings"), p, {});
  ASSERT_GE(full.size(), 12u);
  // A two-letter stop string from the middle of the greedy text, and one that never occurs.
  p.stop = {full.substr(9, 2), "NEVERSEEN"};
  std::string why;
  const Outcome o = collect(scheduler.submit(prompt("stopstrings"), p, &why));
  EXPECT_EQ(o.text, full.substr(0, full.find(p.stop[0])));
  EXPECT_EQ(o.finish_reason, "stop");
}

TEST_F(SchedulerTest, CancellingFreesTheSequenceAndItsBlocks) {
  GatedEngine engine(batch_engine(16, 2));
  SchedulerOptions so;
  so.max_sequences = 2;
  Scheduler scheduler(engine, *tokenizer_, so);
  GatedEngine::OpenAtExit open_at_exit{engine};
  GenerationParams p;
  p.max_tokens = 100;
  p.ignore_eos = true;
  std::string why;
  auto r = scheduler.submit(prompt("cancel"), p, &why);  // one prompt chunk
  ASSERT_TRUE(r) << why;
  // One step (the prompt and the first token), then the client goes away.
  engine.allow(1);
  ASSERT_FALSE(first_text(r).empty());
  EXPECT_GT(scheduler.metrics().kv_blocks_reserved, 0);
  scheduler.cancel(r);
  engine.open();
  const Outcome o = collect(r);
  EXPECT_EQ(r->error_status(), 499);
  EXPECT_NE(o.error, "");
  EXPECT_LE(o.completion_tokens, 2);
  ASSERT_TRUE(scheduler.wait_idle(std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  const SchedulerMetrics m = scheduler.metrics();
  EXPECT_EQ(m.cancelled, 1);
  EXPECT_EQ(m.kv_blocks_in_use, 0);
  EXPECT_EQ(m.kv_blocks_reserved, 0);
}

TEST_F(SchedulerTest, AFullQueueAndADrainingSchedulerRefuse) {
  GatedEngine engine(batch_engine(8, 1));
  SchedulerOptions so;
  so.max_sequences = 1;
  so.max_queue = 1;
  Scheduler scheduler(engine, *tokenizer_, so);
  GatedEngine::OpenAtExit open_at_exit{engine};
  GenerationParams p;
  p.max_tokens = 100;  // 7 of the 8 blocks: one request at a time
  p.ignore_eos = true;
  std::string why;
  auto running = scheduler.submit(prompt("first"), p, &why);
  ASSERT_TRUE(running) << why;
  engine.allow(1);
  ASSERT_FALSE(first_text(running).empty());  // it runs, and cannot end while the gate is shut
  auto queued = scheduler.submit(prompt("second"), p, &why);
  ASSERT_TRUE(queued) << why;
  EXPECT_FALSE(scheduler.submit(prompt("third"), p, &why));
  EXPECT_NE(why.find("busy"), std::string::npos) << why;
  EXPECT_EQ(scheduler.metrics().rejected_queue_full, 1);
  scheduler.drain();
  const Outcome q = collect(queued);
  EXPECT_EQ(queued->error_status(), 503);
  EXPECT_FALSE(scheduler.submit(prompt("fourth"), p, &why));
  EXPECT_NE(why.find("shutting down"), std::string::npos) << why;
  // The running request goes on to its end.
  engine.open();
  const Outcome r = collect(running);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.completion_tokens, 100);
  EXPECT_EQ(r.finish_reason, "length");
}

TEST_F(SchedulerTest, ARequestWhoseTextWasSeenIsNeverIdleAndShutdownCancelsIt) {
  // What `qrt serve` does on SIGTERM: drain, wait for the running requests up to a grace period,
  // then cancel them. A client that has its first text must never find the scheduler idle (the
  // shutdown would skip the cancellation and leave the request running past its grace period).
  GatedEngine engine(batch_engine(16, 2));
  SchedulerOptions so;
  so.max_sequences = 2;
  Scheduler scheduler(engine, *tokenizer_, so);
  GatedEngine::OpenAtExit open_at_exit{engine};
  GenerationParams p;
  p.max_tokens = 100;
  p.ignore_eos = true;
  std::string why;
  auto r = scheduler.submit(prompt("halt"), p, &why);  // one prompt chunk: its step gives a token
  ASSERT_TRUE(r) << why;
  engine.allow(1);
  ASSERT_FALSE(first_text(r).empty()) << "no text after the first step";
  // The engine thread is at most at the start of its second step; nothing more can have come.
  EXPECT_EQ(scheduler.metrics().running, 1);
  EXPECT_FALSE(scheduler.wait_idle(std::chrono::steady_clock::now()));
  scheduler.drain();
  EXPECT_FALSE(scheduler.wait_idle(std::chrono::steady_clock::now() + std::chrono::milliseconds(20)));
  EXPECT_EQ(scheduler.cancel_running(), 1);
  engine.open();  // a step that had begun ends; the next iteration cancels the sequence
  const Outcome o = collect(r);
  EXPECT_EQ(r->error_status(), 503);
  EXPECT_NE(o.error.find("shutting down"), std::string::npos) << o.error;
  EXPECT_EQ(o.finish_reason, "");
  EXPECT_LE(o.completion_tokens, 2);
  ASSERT_TRUE(scheduler.wait_idle(std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  const SchedulerMetrics m = scheduler.metrics();
  EXPECT_EQ(m.cancelled, 1);
  EXPECT_EQ(m.failed, 0);
  EXPECT_EQ(m.running, 0);
  EXPECT_EQ(m.kv_blocks_in_use, 0);
  EXPECT_EQ(m.kv_blocks_reserved, 0);
}

TEST_F(SchedulerTest, RequestsThatCanNeverRunAreErrors) {
  auto engine = batch_engine(4, 2);  // 64 positions in the pool, 128 per sequence
  SchedulerOptions so;
  so.max_sequences = 2;
  Scheduler scheduler(*engine, *tokenizer_, so);
  GenerationParams p;
  std::string why;
  EXPECT_THROW(scheduler.submit({}, p, &why), Error);
  EXPECT_THROW(scheduler.submit({1, 50}, p, &why), Error);  // outside the vocabulary
  p.max_tokens = 0;
  EXPECT_THROW(scheduler.submit({1}, p, &why), Error);
  p.max_tokens = 100;
  EXPECT_THROW(scheduler.submit({1}, p, &why), Error);  // 101 positions: more than the pool's 64
  p.max_tokens = 200;
  EXPECT_THROW(scheduler.submit({1}, p, &why), Error);  // more than 128 positions per sequence
  p.max_tokens = 10;
  p.sampling.top_p = 0;
  EXPECT_THROW(scheduler.submit({1}, p, &why), Error);
  so.max_sequences = 100;  // more than a step's rows can carry
  EXPECT_THROW(Scheduler(*engine, *tokenizer_, so), Error);
}

}  // namespace
}  // namespace qrt::serve
