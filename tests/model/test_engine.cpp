// The CPU engine on tiny random models against the naive whole-sequence forward (tiny_model.h):
// prefill in chunks, decode step by step, GQA, q/k/v biases, tied and separate heads, llama3 RoPE,
// Mistral's sliding window, fp16 KV cache, quantized linears through the planned backend, and the
// errors at the edges of the KV cache.
#include <gtest/gtest.h>

#include <cmath>

#include "model/ops.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "quant/rtn.h"
#include "tiny_model.h"

namespace qrt {
namespace {

using testing::naive_forward;
using testing::plain_inv_freq;
using testing::tiny_config;
using testing::tiny_weights;

EngineOptions small_options(int64_t max_input = 32, int64_t max_new = 8, int64_t batch = 128) {
  EngineOptions o;
  o.runtime.max_input_length = max_input;
  o.runtime.max_new_tokens = max_new;
  o.runtime.threads = 2;
  o.runtime.use_tuning_cache = false;
  o.dense_dtype = DenseDType::F32;  // exact comparisons; F16 has its own test
  o.device = probe_cpu();
  o.prefill_batch = batch;
  return o;
}

std::vector<int32_t> some_tokens(int n, int vocab) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 17 + 3) % vocab);
  return t;
}

double max_abs_diff(const float* a, const double* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

void expect_matches_naive(const std::shared_ptr<ModelWeights>& w, const EngineOptions& opt,
                          const std::vector<double>& inv_freq, int64_t window = 0, double tol = 2e-4) {
  const auto tokens = some_tokens(13, static_cast<int>(w->config.vocab_size));
  const int64_t T = tokens.size(), V = w->config.vocab_size;
  const auto ref = naive_forward(*w, tokens, inv_freq, window);
  auto engine = make_cpu_engine(w, opt);
  std::vector<float> logits(T * V);
  engine->forward(tokens.data(), T, 0, logits.data(), /*all_logits=*/true);
  EXPECT_LT(max_abs_diff(logits.data(), ref.data(), T * V), tol) << "prefill, all logits";

  // Prefill 5, then one token at a time: each step's logits equal the naive row.
  std::vector<float> row(V);
  engine->forward(tokens.data(), 5, 0, row.data());
  EXPECT_LT(max_abs_diff(row.data(), ref.data() + 4 * V, V), tol) << "prefill of 5, last row";
  for (int64_t t = 5; t < T; ++t) {
    engine->forward(tokens.data() + t, 1, t, row.data());
    EXPECT_LT(max_abs_diff(row.data(), ref.data() + t * V, V), tol) << "decode at " << t;
  }
}

TEST(CpuEngine, TiedHeadMatchesNaiveForward) {
  auto c = tiny_config();
  c.tie_word_embeddings = true;
  expect_matches_naive(tiny_weights(c, 1), small_options(), plain_inv_freq(c));
}

TEST(CpuEngine, SeparateHeadWithQkvBiasesMatchesNaive) {
  auto c = tiny_config();
  c.architecture = "Qwen2ForCausalLM";
  c.attention_bias = true;
  auto w = tiny_weights(c, 2, /*untied_head=*/true);
  ASSERT_FALSE(w->lm_head_uses_embedding());
  expect_matches_naive(w, small_options(), plain_inv_freq(c));
}

TEST(CpuEngine, PrefillInSmallChunksMatches) {
  auto c = tiny_config();
  expect_matches_naive(tiny_weights(c, 3), small_options(32, 8, /*batch=*/3), plain_inv_freq(c));
}

TEST(CpuEngine, MultiHeadAttentionWithoutGrouping) {
  auto c = tiny_config();
  c.num_kv_heads = c.num_heads;
  expect_matches_naive(tiny_weights(c, 4), small_options(), plain_inv_freq(c));
}

TEST(CpuEngine, Llama3RopeScaling) {
  auto c = tiny_config();
  c.rope_theta = 500000.0;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position_embeddings = 64;
  const auto f = ops::rope_inv_freq(c);
  std::vector<double> inv(f.begin(), f.end());
  // The scaled frequencies differ from the plain ones (otherwise this test proves nothing).
  EXPECT_NE(inv.back(), plain_inv_freq(c).back());
  expect_matches_naive(tiny_weights(c, 5), small_options(), inv);
}

TEST(CpuEngine, MistralSlidingWindow) {
  auto c = tiny_config();
  c.architecture = "MistralForCausalLM";
  c.model_type = "mistral";
  c.sliding_window = 4;
  expect_matches_naive(tiny_weights(c, 6), small_options(), plain_inv_freq(c), /*window=*/4);
}

TEST(CpuEngine, F16KvCacheIsClose) {
  auto c = tiny_config();
  auto opt = small_options();
  opt.kv_dtype = KvCacheDType::F16;
  expect_matches_naive(tiny_weights(c, 7), opt, plain_inv_freq(c), 0, /*tol=*/2e-2);
}

TEST(CpuEngine, F16DenseWeightsAreClose) {
  auto c = tiny_config();
  auto opt = small_options();
  opt.dense_dtype = DenseDType::F16;
  expect_matches_naive(tiny_weights(c, 11, /*untied_head=*/true), opt, plain_inv_freq(c), 0, /*tol=*/2e-2);
  expect_matches_naive(tiny_weights(c, 12), opt, plain_inv_freq(c), 0, /*tol=*/2e-2);
}

TEST(CpuEngine, QuantizedLinearsRunThroughTheirBackend) {
  auto c = tiny_config();
  auto w = tiny_weights(c, 8);
  // Quantize the MLP and q_proj of every layer (4-bit asym g16, 8-bit sym per row).
  for (auto& l : w->layers) {
    for (LinearWeight* lw : {&l.gate_proj, &l.up_proj, &l.q_proj}) {
      lw->quantized = std::make_shared<QuantizedWeight>(
          quant::rtn_quantize(lw->name, lw->dense.data(), lw->out_features, lw->in_features, 4, 16, false));
      lw->dense.clear();
    }
    l.down_proj.quantized = std::make_shared<QuantizedWeight>(quant::rtn_quantize(
        l.down_proj.name, l.down_proj.dense.data(), l.down_proj.out_features, l.down_proj.in_features, 8, -1, true));
    l.down_proj.dense.clear();
  }
  auto opt = small_options();
  opt.runtime.backend = "cpu_ref";
  expect_matches_naive(w, opt, plain_inv_freq(c), 0, 5e-4);
  auto engine = make_cpu_engine(w, opt);
  EXPECT_EQ(engine->plans().size(), 8u);
  auto counts = engine->backend_counts();
  EXPECT_EQ(counts["cpu_ref"], 8);
  EXPECT_EQ(counts["dense"], 7);  // k, v, o per layer + tied head
}

TEST(CpuEngine, KvCacheBoundsAndBadTokensAreErrors) {
  auto c = tiny_config();
  auto engine = make_cpu_engine(tiny_weights(c, 9), small_options(/*max_input=*/6, /*max_new=*/2));
  EXPECT_EQ(engine->capacity(), 8);
  std::vector<float> logits(c.vocab_size);
  auto toks = some_tokens(9, static_cast<int>(c.vocab_size));
  EXPECT_THROW(engine->forward(toks.data(), 9, 0, logits.data()), Error);   // 9 > 8
  EXPECT_THROW(engine->forward(toks.data(), 1, 8, logits.data()), Error);   // position 8 is past the end
  EXPECT_THROW(engine->forward(toks.data(), 0, 0, logits.data()), Error);   // nothing to do
  EXPECT_THROW(engine->forward(toks.data(), 1, -1, logits.data()), Error);
  std::vector<int32_t> bad = {1, static_cast<int32_t>(c.vocab_size)};
  EXPECT_THROW(engine->forward(bad.data(), 2, 0, logits.data()), Error);
  bad = {-1};
  EXPECT_THROW(engine->forward(bad.data(), 1, 0, logits.data()), Error);
  // Exactly filling the cache works.
  EXPECT_NO_THROW(engine->forward(toks.data(), 8, 0, logits.data()));
  EXPECT_NO_THROW(engine->forward(toks.data(), 1, 7, logits.data()));
}

// Decode past 512 positions with fewer KV heads than 2 x threads: the engine splits each head's
// positions into parts and merges them (attention()); the logits must still be the naive ones,
// with full attention and with a sliding window that starts inside a part.
TEST(CpuEngine, LongContextDecodeSplitAcrossThreadsMatchesNaive) {
  for (int64_t window : {int64_t{0}, int64_t{300}}) {
    auto c = tiny_config();
    c.max_position_embeddings = 4096;
    if (window) {
      c.architecture = "MistralForCausalLM";
      c.model_type = "mistral";
      c.sliding_window = window;
    }
    auto w = tiny_weights(c, 21);
    const auto tokens = some_tokens(700, static_cast<int>(c.vocab_size));
    const int64_t T = tokens.size(), V = c.vocab_size;
    const auto ref = naive_forward(*w, tokens, plain_inv_freq(c), window);
    auto engine = make_cpu_engine(w, small_options(/*max_input=*/T, /*max_new=*/0));
    std::vector<float> row(V);
    engine->forward(tokens.data(), 690, 0, row.data());
    EXPECT_LT(max_abs_diff(row.data(), ref.data() + 689 * V, V), 2e-4) << "prefill, window " << window;
    for (int64_t t = 690; t < T; ++t) {
      engine->forward(tokens.data() + t, 1, t, row.data());
      EXPECT_LT(max_abs_diff(row.data(), ref.data() + t * V, V), 2e-4) << "decode at " << t << ", window " << window;
    }
  }
}

// A context that cannot fit in memory is a clear error at build time, not a process killed by the
// kernel while the position tables fill (found with --max-input-length 100000000 on the default model).
TEST(CpuEngine, ContextLargerThanMemoryIsAnError) {
  auto c = tiny_config();
  try {
    make_cpu_engine(tiny_weights(c, 9), small_options(/*max_input=*/int64_t{1} << 31, /*max_new=*/0));
    FAIL() << "expected an out-of-memory error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory) << e.what();
    EXPECT_NE(std::string(e.what()).find("lower --max-input-length"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_cpu_engine(tiny_weights(c, 9), small_options(int64_t{1} << 40, 0)), Error);
  EXPECT_THROW(make_cpu_engine(tiny_weights(c, 9), small_options(8, int64_t{1} << 62)), Error);
}

// The fp8 KV cache is a GPU engine option: the CPU engine says so instead of storing float.
TEST(CpuEngine, Fp8KvCacheIsRefusedWithTheReason) {
  EngineOptions o = small_options(8, 4);
  o.kv_dtype = KvCacheDType::Fp8E4M3;
  try {
    make_cpu_engine(tiny_weights(tiny_config(), 9), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("fp8"), std::string::npos) << e.what();
  }
}

TEST(CpuEngine, MismatchedShapesAreErrors) {
  auto c = tiny_config();
  auto w = tiny_weights(c, 10);
  w->layers[1].k_proj.out_features = 24;
  try {
    make_cpu_engine(w, small_options());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.k_proj"), std::string::npos) << e.what();
  }
  w = tiny_weights(c, 10);
  w->final_norm.pop_back();
  EXPECT_THROW(make_cpu_engine(w, small_options()), Error);
  w = tiny_weights(c, 10);
  w->config.num_kv_heads = 3;  // 4 heads are not a multiple of 3
  EXPECT_THROW(make_cpu_engine(w, small_options()), Error);
}

}  // namespace
}  // namespace qrt
