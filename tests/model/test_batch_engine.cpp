// The batched engine (qrt/batch_engine.h) against the single-sequence engine on tiny random
// models: sequences that join and leave at different steps, prompt chunks next to decode rows,
// block tables scattered over the pool (and blocks reused after a sequence leaves), a long
// sequence whose decode rows split their attention. Every row's logits must equal, bit for bit,
// what the single-sequence engine gives for the same tokens: the server's greedy output is then
// exactly `qrt run`'s.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

#include "qrt/batch_engine.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "quant/rtn.h"
#include "batch_runner.h"
#include "tiny_model.h"

namespace qrt {
namespace {

using testing::reference_logits;
using testing::run_batched;
using testing::Sequence;
using testing::tiny_config;
using testing::tiny_weights;

EngineOptions options_for(int64_t max_input, int64_t max_new, int64_t prefill, KvCacheDType kv) {
  EngineOptions o;
  o.runtime.max_input_length = max_input;
  o.runtime.max_new_tokens = max_new;
  o.runtime.threads = 2;
  o.runtime.use_tuning_cache = false;
  o.device = probe_cpu();
  o.prefill_batch = prefill;
  o.kv_dtype = kv;
  return o;
}

// Quantizes q_proj, the MLP and (8-bit) down_proj so the default backend's kernels run with M rows.
void quantize_some(ModelWeights& w) {
  for (auto& l : w.layers) {
    for (LinearWeight* lw : {&l.gate_proj, &l.up_proj, &l.q_proj}) {
      lw->quantized = std::make_shared<QuantizedWeight>(
          quant::rtn_quantize(lw->name, lw->dense.data(), lw->out_features, lw->in_features, 4, 32, false));
      lw->dense.clear();
    }
    l.down_proj.quantized = std::make_shared<QuantizedWeight>(quant::rtn_quantize(
        l.down_proj.name, l.down_proj.dense.data(), l.down_proj.out_features, l.down_proj.in_features, 8, -1, true));
    l.down_proj.dense.clear();
  }
}

void expect_batched_equals_single(const std::shared_ptr<ModelWeights>& w, KvCacheDType kv, const char* what) {
  const int64_t V = w->config.vocab_size;
  std::mt19937 rng(7);
  std::vector<Sequence> seqs;
  // (prompt, generated, joins at step): a long one whose decode rows split their attention
  // (position >= 511), short ones, a one-token prompt, late joiners that reuse freed blocks.
  const int64_t shapes[][3] = {{600, 12, 0}, {5, 20, 0}, {13, 6, 1}, {1, 9, 2}, {37, 4, 3}, {9, 15, 12}, {20, 3, 26}};
  for (const auto& sh : shapes) {
    Sequence s;
    s.prompt = sh[0];
    s.start_step = sh[2];
    for (int64_t i = 0; i < sh[0] + sh[1]; ++i) s.tokens.push_back(static_cast<int32_t>(rng() % V));
    seqs.push_back(std::move(s));
  }
  const int64_t max_input = 620, max_new = 20, prefill = 16;
  auto single = make_cpu_engine(w, options_for(max_input, max_new, prefill, kv));
  EngineOptions bo = options_for(max_input, max_new, prefill, kv);
  bo.kv_blocks = 60;  // fewer than all sequences at once would need: the late ones reuse blocks
  bo.max_step_rows = prefill + 8;
  auto batched = make_batch_engine(w, bo);
  EXPECT_EQ(batched->kv_blocks(), 60);
  EXPECT_EQ(batched->max_rows(), prefill + 8);
  EXPECT_EQ(batched->prefill_chunk(), prefill);
  run_batched(*batched, seqs, 11, V);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto ref = reference_logits(*single, seqs[i], V);
    ASSERT_EQ(seqs[i].logits.size(), ref.size()) << what << ", sequence " << i;
    for (size_t r = 0; r < ref.size(); ++r)
      ASSERT_EQ(0, std::memcmp(ref[r].data(), seqs[i].logits[r].data(), static_cast<size_t>(V) * sizeof(float)))
          << what << ": sequence " << i << ", logits row " << r << " differ from the single-sequence engine";
  }
}

TEST(BatchEngine, RowsOfManySequencesEqualTheSingleSequenceEngineBitForBit) {
  auto c = tiny_config();
  c.max_position_embeddings = 4096;
  auto dense = tiny_weights(c, 31);
  expect_batched_equals_single(dense, KvCacheDType::F32, "dense, f32 KV");
  auto quantized = tiny_weights(c, 32);
  quantize_some(*quantized);
  expect_batched_equals_single(quantized, KvCacheDType::F16, "quantized, f16 KV");
}

TEST(BatchEngine, SlidingWindowRowsEqualTheSingleSequenceEngine) {
  auto c = tiny_config();
  c.max_position_embeddings = 4096;
  c.architecture = "MistralForCausalLM";
  c.model_type = "mistral";
  c.sliding_window = 40;
  expect_batched_equals_single(tiny_weights(c, 33), KvCacheDType::F16, "sliding window");
}

TEST(BatchEngine, BadStepsAreErrorsBeforeAnyWork) {
  auto c = tiny_config();
  EngineOptions o = options_for(16, 16, 8, KvCacheDType::F16);
  o.kv_blocks = 4;
  o.max_step_rows = 10;
  auto e = make_batch_engine(tiny_weights(c, 34), o);
  std::vector<int32_t> blocks = {3, 1};
  KvBlockTable table{blocks.data(), 2};
  std::vector<int32_t> tokens = {1, 2}, sequences = {0, 0};
  std::vector<int64_t> positions = {0, 1}, logit_rows = {1};
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  auto step = [&] {
    BatchStep b;
    b.rows = static_cast<int64_t>(tokens.size());
    b.tokens = tokens.data();
    b.positions = positions.data();
    b.sequences = sequences.data();
    b.tables = &table;
    b.table_count = 1;
    b.logit_rows = logit_rows.data();
    b.logit_count = static_cast<int64_t>(logit_rows.size());
    e->step(b, logits.data());
  };
  EXPECT_NO_THROW(step());
  tokens[1] = static_cast<int32_t>(c.vocab_size);
  EXPECT_THROW(step(), Error);  // token outside the vocabulary
  tokens[1] = 2;
  positions[1] = 32;
  EXPECT_THROW(step(), Error);  // position past max_positions
  positions[1] = 20;
  table.count = 1;
  EXPECT_THROW(step(), Error);  // position 20 is in block 1 of a 1-block table
  table.count = 2;
  EXPECT_NO_THROW(step());
  positions[1] = 1;
  blocks[0] = 4;
  EXPECT_THROW(step(), Error);  // block outside the pool
  blocks[0] = 3;
  sequences[1] = 1;
  EXPECT_THROW(step(), Error);  // sequence without a table
  sequences[1] = 0;
  logit_rows = {1, 0};
  EXPECT_THROW(step(), Error);  // logit rows not ascending
  logit_rows = {2};
  EXPECT_THROW(step(), Error);  // logit row outside the step
  logit_rows = {1};
  tokens.assign(11, 1);
  positions.assign(11, 0);
  sequences.assign(11, 0);
  EXPECT_THROW(step(), Error);  // more rows than max_step_rows
  EXPECT_THROW(make_batch_engine(tiny_weights(c, 34), options_for(16, 16, 8, KvCacheDType::F16)), Error);  // no pool
}

}  // namespace
}  // namespace qrt
