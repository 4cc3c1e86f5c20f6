// Google Benchmark: one decode step of the batched engine (qrt/batch_engine.h) on the default
// model, with `rows` sequences each decoding one token at context kContext (the step `qrt serve`
// runs with that many streams), next to the single-sequence engine's one-token forward (the step
// `qrt run` decodes with) timed in the same run. tokens_per_s = rows / step time: how decode
// throughput grows with the batch (the linears read each weight once per step for all rows).
// bench/batch_decode_vs_llamacpp.sh runs it next to llama.cpp's llama-batched-bench.
//   [QRT_BENCH_THREADS=T] ./bench_batch_decode [--benchmark_filter=...]
//   (the model: QRT_DEFAULT_MODEL or the cached default; threads: all cores unless T is given)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "qrt/batch_engine.h"
#include "qrt/model.h"
#include "qrt/setup.h"

namespace {

using namespace qrt;

constexpr int64_t kContext = 128;

struct Loaded {
  std::shared_ptr<ModelWeights> weights;
  EngineOptions options;
};

const Loaded* model() {
  static const Loaded* loaded = [] () -> const Loaded* {
    const char* env = std::getenv("QRT_DEFAULT_MODEL");
    try {
      const std::string path = resolve_model_path(env ? env : "");
      auto ck = open_checkpoint(path);
      SetupRequest req;
      req.device = "cpu";
      req.cli.max_input_length = 1024;
      req.cli.max_new_tokens = 0;
      if (const char* t = std::getenv("QRT_BENCH_THREADS")) req.cli.threads = std::atoi(t);
      const ResolvedSetup setup = resolve_setup(*ck, req);
      auto* l = new Loaded;
      l->weights = load_model(*ck);
      l->options = setup.engine_options();
      l->options.kv_dtype = KvCacheDType::F16;
      return l;
    } catch (const std::exception&) {
      return nullptr;
    }
  }();
  return loaded;
}

void BM_BatchedDecodeStep(benchmark::State& state) {
  const Loaded* m = model();
  if (!m) {
    state.SkipWithError("no model: run scripts/fetch-model.sh");
    return;
  }
  const int64_t rows = state.range(0);
  EngineOptions o = m->options;
  const int64_t blocks_per_seq = (kContext + 1 + kKvBlockPositions - 1) / kKvBlockPositions;
  o.kv_blocks = rows * blocks_per_seq;
  o.max_step_rows = rows + o.prefill_batch;
  auto engine = make_batch_engine(m->weights, o);
  const int64_t vocab = engine->config().vocab_size;
  std::vector<int32_t> blocks(static_cast<size_t>(o.kv_blocks));
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<int32_t>(i);
  std::vector<KvBlockTable> tables;
  for (int64_t s = 0; s < rows; ++s) tables.push_back({blocks.data() + s * blocks_per_seq, blocks_per_seq});
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  // Fill every sequence's cache to kContext positions, one prompt chunk per step.
  const int64_t chunk = engine->prefill_chunk();
  for (int64_t s = 0; s < rows; ++s)
    for (int64_t p0 = 0; p0 < kContext; p0 += chunk) {
      const int64_t n = std::min(chunk, kContext - p0);
      std::vector<int32_t> tokens(static_cast<size_t>(n)), seqs(static_cast<size_t>(n), 0);
      std::vector<int64_t> positions(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        tokens[static_cast<size_t>(i)] = static_cast<int32_t>((p0 + i) * 31 % vocab);
        positions[static_cast<size_t>(i)] = p0 + i;
      }
      BatchStep b;
      b.rows = n;
      b.tokens = tokens.data();
      b.positions = positions.data();
      b.sequences = seqs.data();
      b.tables = &tables[static_cast<size_t>(s)];
      b.table_count = 1;
      engine->step(b, logits.data());
    }
  std::vector<int32_t> tokens(static_cast<size_t>(rows)), seqs(static_cast<size_t>(rows));
  std::vector<int64_t> positions(static_cast<size_t>(rows), kContext), logit_rows(static_cast<size_t>(rows));
  for (int64_t s = 0; s < rows; ++s) {
    tokens[static_cast<size_t>(s)] = static_cast<int32_t>(s * 7 % vocab);
    seqs[static_cast<size_t>(s)] = static_cast<int32_t>(s);
    logit_rows[static_cast<size_t>(s)] = s;
  }
  BatchStep b;
  b.rows = rows;
  b.tokens = tokens.data();
  b.positions = positions.data();
  b.sequences = seqs.data();
  b.tables = tables.data();
  b.table_count = rows;
  b.logit_rows = logit_rows.data();
  b.logit_count = rows;
  for (auto _ : state) engine->step(b, logits.data());  // the same position again: the cache stays at kContext
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_BatchedDecodeStep)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->Arg(16)->Arg(32)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The peer: the single-sequence engine's decode forward at the same context.
void BM_SingleSequenceDecode(benchmark::State& state) {
  const Loaded* m = model();
  if (!m) {
    state.SkipWithError("no model: run scripts/fetch-model.sh");
    return;
  }
  auto engine = make_engine(m->weights, m->options);
  const int64_t vocab = engine->config().vocab_size;
  std::vector<int32_t> prompt(static_cast<size_t>(kContext));
  for (int64_t i = 0; i < kContext; ++i) prompt[static_cast<size_t>(i)] = static_cast<int32_t>(i * 31 % vocab);
  std::vector<float> logits(static_cast<size_t>(vocab));
  engine->forward(prompt.data(), kContext, 0, logits.data());
  const int32_t token = 7;
  for (auto _ : state) engine->forward(&token, 1, kContext, logits.data());
  state.counters["tokens_per_s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SingleSequenceDecode)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
