// The GPU model engine against the naive double-precision forward (tests/model/tiny_model.h) on a
// small random model, dense and 4-bit quantized: prefill logits, graph-replayed decode steps,
// on-device greedy generation, and a clean error for an absurd max_input_length; the CPU engine vs
// the CUDA engine on the Phi-3 and Gemma-2 fixtures, and with QRT_DEFAULT_MODEL set on SmolLM2. The
// batched GPU engine (paged KV pool) against the CPU batch engine and against the single-sequence
// GPU engine. Skipped without a GPU.
#include <gtest/gtest.h>

#include <array>
#include <map>
#include <optional>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/batch_runner.h"
#include "model/tiny_model.h"
#include "qrt/batch_engine.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/model.h"
#include "qrt/sampler.h"

#ifdef QRT_WITH_CUDA
#include "support/cuda_test_support.h"
#include "model/cuda/cuda_engine.h"
#include "quant/rtn.h"

namespace qrt {
namespace {

#define QRT_SKIP_WITHOUT_GPU()                                   \
  do {                                                           \
    std::string why_;                                            \
    if (!cuda_test::gpu_available(&why_)) GTEST_SKIP() << why_;  \
  } while (0)

ModelConfig gpu_tiny_config() {
  ModelConfig c = testing::tiny_config();
  c.vocab_size = 300;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  return c;
}

void quantize_all(ModelWeights& w) {
  for (auto& l : w.layers)
    for (LinearWeight* lw : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      auto q = std::make_shared<QuantizedWeight>(
          quant::rtn_quantize(lw->name, lw->dense.data(), lw->out_features, lw->in_features, 4, 32, true));
      lw->quantized = q;
      lw->dense.clear();
    }
}

EngineOptions gpu_options(int64_t max_input, int64_t max_new) {
  EngineOptions o;
  o.runtime.max_input_length = max_input;
  o.runtime.max_new_tokens = max_new;
  o.runtime.use_tuning_cache = false;
  o.device = cuda_test::gpu0();
  o.prefill_batch = 8;  // several prefill chunks in the tests below
  return o;
}

double rel_err_row(const float* y, const double* ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(y[i])) return INFINITY;
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Sets an environment variable for a scope (the engine reads QRT_CUDA_FUSED_* when built).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// The decode ops an engine is built with: every fused op (the split fused attention included,
// which is on by default only from position 1536), the default set below that (the short-context
// attention kernel), the norms as kernels with SiLU x up and the residual adds still in the
// projections (QRT_CUDA_FUSED_PROJECTIONS=no_norm) and RoPE + KV store and the attention as two
// kernels (QRT_CUDA_SHORT_ATTENTION=0), or none (QRT_CUDA_FUSED_DECODE=0).
enum class DecodeOps { AllFused, Default, WideModel, SumSq, Unfused };
const char* decode_ops_name(DecodeOps d) {
  switch (d) {
    case DecodeOps::AllFused: return "all fused decode ops";
    case DecodeOps::Default: return "default decode ops";
    case DecodeOps::WideModel: return "norm kernels, the rest in the projections";
    case DecodeOps::SumSq: return "norms from the projections' partial sums of squares";
    case DecodeOps::Unfused: break;
  }
  return "unfused decode ops";
}
class ScopedDecodeOps {
 public:
  explicit ScopedDecodeOps(DecodeOps d)
      : decode_("QRT_CUDA_FUSED_DECODE", d == DecodeOps::Unfused ? "0" : "1"),
        attention_("QRT_CUDA_FUSED_ATTENTION", d == DecodeOps::AllFused ? "1" : "0"),
        projections_("QRT_CUDA_FUSED_PROJECTIONS",
                     d == DecodeOps::WideModel ? "no_norm" : d == DecodeOps::SumSq ? "sumsq" : ""),
        short_("QRT_CUDA_SHORT_ATTENTION", d == DecodeOps::WideModel ? "0" : "") {}

 private:
  ScopedEnv decode_, attention_, projections_, short_;
};
constexpr DecodeOps kEveryDecodeOps[] = {DecodeOps::AllFused, DecodeOps::Default, DecodeOps::WideModel,
                                         DecodeOps::SumSq, DecodeOps::Unfused};

// The naive forward's logits of `n` random tokens (seeded).
std::vector<int32_t> random_tokens(const ModelConfig& c, int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(c.vocab_size - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (auto& t : tokens) t = tok(rng);
  return tokens;
}

// ops: the GPU's fused decode ops (embedding + norm, final norm + head + greedy choice, norms
// (but with WideModel), SiLU x up and residual adds inside cuda_gemv's projections; with AllFused
// also RoPE + KV store + attention), or the unfused kernels.
void check_engine_against_naive(std::shared_ptr<ModelWeights> w, bool fuse = true, DecodeOps ops = DecodeOps::AllFused) {
  SCOPED_TRACE(decode_ops_name(ops));
  ScopedDecodeOps env(ops);
  const bool fused_decode = ops != DecodeOps::Unfused;
  const ModelConfig& c = w->config;
  const std::vector<int32_t> tokens = random_tokens(c, 20, 11);
  const std::vector<double> ref = testing::naive_forward(*w, tokens, testing::plain_inv_freq(c));
  EngineOptions options = gpu_options(24, 16);
  options.runtime.fuse_projections = fuse;
  std::vector<std::string> log;
  options.log = [&](const std::string& m) { log.push_back(m); };
  auto engine = make_cuda_engine(w, options);
  // Quantized blocks of one format fuse q/k/v and gate/up (and say so); dense ones never do.
  bool said_fused = false;
  for (const auto& m : log) said_fused = said_fused || m.find("fused projections: 4 of 4") != std::string::npos;
  EXPECT_EQ(said_fused, fuse && w->layers[0].q_proj.is_quantized());
  const int64_t V = c.vocab_size, T = static_cast<int64_t>(tokens.size());
  // Prefill, all logits (chunks of 8 rows).
  std::vector<float> logits(static_cast<size_t>(T * V));
  engine->forward(tokens.data(), T, 0, logits.data(), true);
  for (int64_t t = 0; t < T; ++t)
    EXPECT_LT(rel_err_row(logits.data() + t * V, ref.data() + t * V, V), 2e-2) << "prefill row " << t;
  // Prefix, then decode steps one token at a time (the captured graph).
  const int64_t prefix = T - 4;
  std::vector<float> last(static_cast<size_t>(V));
  engine->forward(tokens.data(), prefix, 0, last.data(), false);
  EXPECT_LT(rel_err_row(last.data(), ref.data() + (prefix - 1) * V, V), 2e-2);
  for (int64_t t = prefix; t < T; ++t) {
    engine->forward(tokens.data() + t, 1, t, last.data(), false);
    EXPECT_LT(rel_err_row(last.data(), ref.data() + t * V, V), 2e-2) << "decode position " << t;
  }
  // On-device greedy generation from the prefix: the first token is the naive model's argmax.
  auto* ce = dynamic_cast<CudaForwardEngine*>(engine.get());
  ASSERT_NE(ce, nullptr);
  engine->forward(tokens.data(), prefix - 1, 0, last.data(), false);
  std::vector<int32_t> gen = ce->generate_on_device(tokens[prefix - 1], prefix - 1, 4, DeviceSampling{});
  ASSERT_EQ(gen.size(), 4u);
  const double* row = ref.data() + (prefix - 1) * V;
  const int64_t arg = std::max_element(row, row + V) - row;
  std::vector<double> sorted(row, row + V);
  std::sort(sorted.rbegin(), sorted.rend());
  if (sorted[0] - sorted[1] > 1e-2) {
    EXPECT_EQ(gen[0], arg);
  }
  for (int32_t g : gen) EXPECT_TRUE(g >= 0 && g < V);
  // Sampled generation stays in the vocabulary and respects top-k = 1 (= greedy).
  DeviceSampling s;
  s.temperature = 0.8f;
  s.top_k = 1;
  s.seed = 5;
  std::vector<int32_t> g1 = ce->generate_on_device(tokens[prefix - 1], prefix - 1, 4, s);
  EXPECT_EQ(g1, gen);
  s.top_k = 0;
  s.top_p = 0.9f;
  for (int32_t g : ce->generate_on_device(tokens[prefix - 1], prefix - 1, 4, s)) EXPECT_TRUE(g >= 0 && g < V);
  EXPECT_GT(ce->last_generate_seconds(), 0.0);
  // The per-op profile of a decode step covers every op of every block, and leaves the engine usable.
  const auto prof = ce->profile_decode_step(tokens[prefix], prefix);
  std::map<std::string, int> launches;
  for (const auto& t : prof) {
    EXPECT_GE(t.us, 0.0) << t.op;
    launches[t.op] = t.launches;
    if (t.op == "attention" || t.op == "residual + rmsnorm") {
      EXPECT_GT(t.graph_us_each, 0.0) << t.op;
    }
  }
  EXPECT_EQ(launches["attention"], c.num_layers);
  EXPECT_EQ(launches["down_proj"], c.num_layers);
  EXPECT_EQ(launches[said_fused ? "q/k/v (fused)" : "q_proj"], c.num_layers);
  EXPECT_EQ(launches[said_fused ? "gate/up (fused)" : "up_proj"], c.num_layers);
  if (fused_decode) {
    EXPECT_EQ(launches["embedding + rmsnorm"], 1);
    // Quantized projections (cuda_gemv at M = 1) build the norms and SiLU x up in their prologues
    // and add into the residual stream in their epilogues; dense ones (cuBLAS) cannot.
    const bool in_projections = w->layers[0].q_proj.is_quantized();
    const bool norm_prologue = in_projections && ops != DecodeOps::WideModel;
    EXPECT_EQ(launches[norm_prologue ? "rmsnorm (in the projections)" : "residual + rmsnorm"], 2 * c.num_layers - 1);
    EXPECT_EQ(launches[in_projections ? "silu * up (in the down projection)" : "silu * up"], c.num_layers);
    EXPECT_EQ(launches["residual add (in the projection)"], in_projections ? 2 * c.num_layers : 0);
    if (in_projections) {
      EXPECT_EQ(launches.count(norm_prologue ? "residual + rmsnorm" : "rmsnorm (in the projections)"), 0u);
      EXPECT_EQ(launches.count("silu * up"), 0u);
    }
    EXPECT_EQ(launches["final rmsnorm + lm_head + greedy choice"], 1);
    if (ops != DecodeOps::WideModel) EXPECT_EQ(launches.count("rope + kv store"), 0u);
    else EXPECT_EQ(launches["rope + kv store"], c.num_layers);
  } else {
    EXPECT_EQ(launches["embedding"], 1);
    EXPECT_EQ(launches["residual + rmsnorm"], 2 * c.num_layers + 1);
    EXPECT_EQ(launches["rope + kv store"], c.num_layers);
    EXPECT_EQ(launches["lm_head"], 1);
    EXPECT_EQ(launches["greedy choice"], 1);
  }
  engine->forward(tokens.data() + prefix, 1, prefix, last.data(), false);
  EXPECT_LT(rel_err_row(last.data(), ref.data() + prefix * V, V), 2e-2) << "decode after the profile";
}

TEST(CudaEngine, DenseModelMatchesNaiveForward) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 3, /*untied_head=*/true);
  check_engine_against_naive(w);
  check_engine_against_naive(w, true, DecodeOps::Default);
  check_engine_against_naive(w, true, DecodeOps::WideModel);
  check_engine_against_naive(w, true, DecodeOps::Unfused);
}

TEST(CudaEngine, QuantizedModelMatchesNaiveForward) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 4);
  quantize_all(*w);
  check_engine_against_naive(w);         // q/k/v and gate/up fused
  check_engine_against_naive(w, false);  // every projection on its own
  check_engine_against_naive(w, true, DecodeOps::Default);
  check_engine_against_naive(w, true, DecodeOps::WideModel);
  check_engine_against_naive(w, true, DecodeOps::SumSq);
  check_engine_against_naive(w, true, DecodeOps::Unfused);
}

// QRT_CUDA_FUSED_PROJECTIONS=sumsq: o_proj and down_proj leave each row's sums of squares over 16
// columns for the norm that q/k/v and gate/up build; the logits differ from the default fused
// ops (each block summing the residual row itself) by float summation order only, far inside
// what a wrong or stale partial would move them.
TEST(CudaEngine, NormFromProjectionSumsOfSquaresMatchesTheDefault) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 4);
  quantize_all(*w);
  const ModelConfig& c = w->config;
  const int64_t V = c.vocab_size, prompt = 9, steps = 6;
  const std::vector<int32_t> tokens = random_tokens(c, prompt + steps, 21);
  std::map<bool, std::vector<std::vector<float>>> logits;
  for (bool sumsq : {false, true}) {
    ScopedDecodeOps env(sumsq ? DecodeOps::SumSq : DecodeOps::Default);
    auto engine = make_cuda_engine(w, gpu_options(prompt, steps + 1));
    std::vector<float> row(static_cast<size_t>(V));
    engine->forward(tokens.data(), prompt, 0, row.data(), false);
    for (int64_t t = prompt; t < prompt + steps; ++t) {
      engine->forward(tokens.data() + t, 1, t, row.data(), false);  // one row: the fused decode ops
      logits[sumsq].push_back(row);
    }
  }
  for (int64_t t = 0; t < steps; ++t) {
    std::vector<double> ref(logits[false][t].begin(), logits[false][t].end());
    EXPECT_LT(rel_err_row(logits[true][t].data(), ref.data(), V), 1e-3) << "decode step " << t;
  }
}

// Decode steps past 300 positions: the fused attention then spreads a row's keys over several
// blocks and merges them (the 20-position test above fits one tile of keys).
TEST(CudaEngine, LongContextDecodeMatchesNaiveForward) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 6, /*untied_head=*/true);
  const ModelConfig& c = w->config;
  const int64_t T = 310, V = c.vocab_size, prefix = T - 5;
  const std::vector<int32_t> tokens = random_tokens(c, T, 12);
  const std::vector<double> ref = testing::naive_forward(*w, tokens, testing::plain_inv_freq(c));
  for (DecodeOps ops : kEveryDecodeOps) {
    SCOPED_TRACE(decode_ops_name(ops));
    ScopedDecodeOps env(ops);
    EngineOptions options = gpu_options(T, 8);
    options.prefill_batch = 64;
    auto engine = make_cuda_engine(w, options);
    std::vector<float> last(static_cast<size_t>(V));
    engine->forward(tokens.data(), prefix, 0, last.data(), false);
    EXPECT_LT(rel_err_row(last.data(), ref.data() + (prefix - 1) * V, V), 2e-2);
    for (int64_t t = prefix; t < T; ++t) {
      engine->forward(tokens.data() + t, 1, t, last.data(), false);
      EXPECT_LT(rel_err_row(last.data(), ref.data() + t * V, V), 2e-2) << "decode position " << t;
    }
  }
}

// The greedy tokens of decode steps replayed from the captured graph equal those of the same
// steps launched one kernel at a time, and equal the host's greedy choice over the logits.
TEST(CudaEngine, GraphAndEagerDecodeGiveTheSameGreedyTokens) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 7);
  quantize_all(*w);
  const ModelConfig& c = w->config;
  const int64_t V = c.vocab_size, prompt = 12, steps = 10;
  const std::vector<int32_t> tokens = random_tokens(c, prompt, 13);
  for (DecodeOps ops : kEveryDecodeOps) {
    SCOPED_TRACE(decode_ops_name(ops));
    ScopedDecodeOps env(ops);
    auto engine = make_cuda_engine(w, gpu_options(prompt, steps + 1));
    auto* ce = dynamic_cast<CudaForwardEngine*>(engine.get());
    ASSERT_NE(ce, nullptr);
    std::vector<std::vector<int32_t>> runs;
    std::vector<std::vector<float>> last_logits;
    for (bool graphs : {true, false}) {
      ce->use_graphs(graphs);
      std::vector<int32_t> out = {engine->forward_greedy(tokens.data(), prompt, 0)};
      std::vector<float> logits(static_cast<size_t>(V));
      for (int64_t i = 0; i < steps; ++i) {
        // The logits of the same step (forward rewrites the same position), then its greedy token.
        engine->forward(&out.back(), 1, prompt + i, logits.data());
        const int32_t next = engine->forward_greedy(&out.back(), 1, prompt + i);
        EXPECT_EQ(next, greedy_token(logits.data(), V)) << "step " << i;
        out.push_back(next);
      }
      runs.push_back(out);
      last_logits.push_back(logits);
    }
    EXPECT_EQ(runs[0], runs[1]);
    std::vector<double> ref(last_logits[1].begin(), last_logits[1].end());
    EXPECT_LT(rel_err_row(last_logits[0].data(), ref.data(), V), 1e-5);
    // On-device generation (one graph replay per token) continues the same way.
    ce->use_graphs(true);
    engine->forward(tokens.data(), prompt, 0, last_logits[0].data());
    EXPECT_EQ(ce->generate_on_device(runs[0][0], prompt, steps, DeviceSampling{}),
              std::vector<int32_t>(runs[0].begin() + 1, runs[0].end()));
  }
}

// QRT_CUDA_FUSED_ATTENTION_FROM: steps before the position run the short-context kernel (or, with
// QRT_CUDA_SHORT_ATTENTION=0, RoPE + KV store and the attention as two kernels), steps from it the
// split fused kernel (a graph per variant). Decode across the switch: the host loop's logits match
// the naive forward, and on-device generation (which changes graphs between two replays) gives the
// host loop's greedy tokens.
TEST(CudaEngine, AttentionKernelSwitchesByPositionWithinOneGeneration) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 9);
  quantize_all(*w);
  const ModelConfig& c = w->config;
  const int64_t V = c.vocab_size, prompt = 12, steps = 10, from = 16;
  for (const char* short_kernel : {"", "0"}) {
    const std::string before = *short_kernel ? " (two kernels)" : " (short-context kernel)";
    SCOPED_TRACE(std::string("before the switch:") + before);
    ScopedEnv decode("QRT_CUDA_FUSED_DECODE", "1");
    ScopedEnv attention("QRT_CUDA_FUSED_ATTENTION", "");
    ScopedEnv short_attention("QRT_CUDA_SHORT_ATTENTION", short_kernel);
    ScopedEnv switch_at("QRT_CUDA_FUSED_ATTENTION_FROM", "16");
    std::vector<int32_t> tokens = random_tokens(c, prompt, 15);
    auto engine = make_cuda_engine(w, gpu_options(prompt, steps + 1));
    auto* ce = dynamic_cast<CudaForwardEngine*>(engine.get());
    ASSERT_NE(ce, nullptr);
    // Host loop: greedy tokens through the step graphs, logits of every step checked.
    std::vector<int32_t> host = {engine->forward_greedy(tokens.data(), prompt, 0)};
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<int32_t> all = tokens;
    for (int64_t i = 0; i < steps - 1; ++i) {
      all.push_back(host.back());
      engine->forward(&host.back(), 1, prompt + i, logits.data());
      const std::vector<double> ref = testing::naive_forward(*w, all, testing::plain_inv_freq(c));
      EXPECT_LT(rel_err_row(logits.data(), ref.data() + (prompt + i) * V, V), 2e-2)
          << "position " << prompt + i << (prompt + i >= from ? " (fused attention)" : before);
      host.push_back(greedy_token(logits.data(), V));
    }
    // On-device generation from the same prompt crosses the switch between two graph replays.
    engine->forward(tokens.data(), prompt, 0, logits.data());
    EXPECT_EQ(ce->generate_on_device(host[0], prompt, steps - 1, DeviceSampling{}),
              std::vector<int32_t>(host.begin() + 1, host.end()));
  }
}

// The load log says which decode attention runs at which positions, and why the switch is where
// it is (the measured crossover, or the environment).
TEST(CudaEngine, LoadLogNamesTheDecodeAttention) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 10);
  auto line_of = [&](const char* short_attention, const char* from) {
    ScopedEnv decode("QRT_CUDA_FUSED_DECODE", "1");
    ScopedEnv attention("QRT_CUDA_FUSED_ATTENTION", "");
    ScopedEnv short_env("QRT_CUDA_SHORT_ATTENTION", short_attention);
    ScopedEnv from_env("QRT_CUDA_FUSED_ATTENTION_FROM", from);
    EngineOptions o = gpu_options(8, 4);
    std::string found;
    o.log = [&](const std::string& m) {
      if (m.rfind("decode attention:", 0) == 0) found = m;
    };
    auto engine = make_cuda_engine(w, o);
    return found;
  };
  EXPECT_EQ(line_of("", ""),
            "decode attention: the short-context kernel (one block per query head) before position 1536, the split "
            "fused kernel (keys spread over blocks, merged) from it (the measured crossover)");
  EXPECT_EQ(line_of("0", "64"),
            "decode attention: rope_store + attention (two kernels) before position 64, the split fused kernel (keys "
            "spread over blocks, merged) from it (environment)");
}

// The decode step's launches with every fused decode op (true) and without (false).
std::map<bool, CudaForwardEngine::StepLaunches> step_launches_fused_and_unfused(std::shared_ptr<ModelWeights> w) {
  std::map<bool, CudaForwardEngine::StepLaunches> counts;
  for (bool fused : {true, false}) {
    ScopedDecodeOps env(fused ? DecodeOps::AllFused : DecodeOps::Unfused);
    auto engine = make_cuda_engine(w, gpu_options(16, 8));
    counts[fused] = dynamic_cast<CudaForwardEngine&>(*engine).decode_step_launches();
  }
  return counts;
}

// What a decode step launches, counted from the graph forward() replays (the nodes each op adds
// while the step is captured). The model's own kernels: 4 per block + 1 fused, against 5 per
// block + 3 unfused (embedding, final norm, greedy choice) + the cuBLAS head's nodes.
TEST(CudaEngine, DecodeStepLaunchesFusedAgainstUnfused) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 8, /*untied_head=*/true);
  const int L = static_cast<int>(w->config.num_layers);
  std::map<bool, CudaForwardEngine::StepLaunches> counts = step_launches_fused_and_unfused(w);
  auto by_op = [](const CudaForwardEngine::StepLaunches& s) {
    std::map<std::string, int> m(s.nodes_by_op.begin(), s.nodes_by_op.end());
    int total = 0;
    for (const auto& [op, n] : s.nodes_by_op) {
      std::printf("    %-42s %d\n", op.c_str(), n);
      total += n;
    }
    EXPECT_EQ(total, s.nodes);
    return m;
  };
  std::printf("  fused decode ops: %d nodes, %d kernels\n", counts[true].nodes, counts[true].kernels);
  auto f = by_op(counts[true]);
  std::printf("  unfused: %d nodes, %d kernels\n", counts[false].nodes, counts[false].kernels);
  auto u = by_op(counts[false]);
  EXPECT_EQ(f["embedding + rmsnorm"], 1);
  EXPECT_EQ(f["residual + rmsnorm"], 2 * L - 1);
  EXPECT_EQ(f["attention"], L);
  EXPECT_EQ(f["silu * up"], L);
  EXPECT_EQ(f["final rmsnorm + lm_head + greedy choice"], 1);
  EXPECT_EQ(f.count("rope + kv store"), 0u);
  EXPECT_EQ(u["embedding"], 1);
  EXPECT_EQ(u["residual + rmsnorm"], 2 * L + 1);
  EXPECT_EQ(u["rope + kv store"], L);
  EXPECT_EQ(u["attention"], L);
  EXPECT_GE(u["lm_head"], 1);
  EXPECT_EQ(u["greedy choice"], 1);
  // The linears are the same launches either way.
  for (const char* op : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
    EXPECT_EQ(f[op], u[op]) << op;
  EXPECT_EQ(counts[false].nodes - counts[true].nodes, L + 2 + u["lm_head"]);
}

// A quantized model's decode step with the fused decode ops: the projections (cuda_gemv) build the
// norms and SiLU x up in their prologues and add into the residual stream in their epilogues, so a
// block is 5 kernels (q/k/v, attention, o, gate/up, down) and the step 5 per block + 2 (embedding
// with the first norm; final norm + head + greedy choice), against 8 per block + 2 unfused; a
// set with the norms as kernels (and the two attention kernels) is 8 per block + 1.
TEST(CudaEngine, QuantizedDecodeStepFusesNormsIntoProjections) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 8);
  quantize_all(*w);
  const int L = static_cast<int>(w->config.num_layers);
  std::map<bool, CudaForwardEngine::StepLaunches> counts = step_launches_fused_and_unfused(w);
  for (bool fused : {true, false}) {
    std::printf("  %s: %d nodes, %d kernels\n", fused ? "fused" : "unfused", counts[fused].nodes, counts[fused].kernels);
    for (const auto& [op, n] : counts[fused].nodes_by_op) std::printf("    %-42s %d\n", op.c_str(), n);
  }
  std::map<std::string, int> f(counts[true].nodes_by_op.begin(), counts[true].nodes_by_op.end());
  EXPECT_EQ(counts[true].kernels, 5 * L + 2);
  EXPECT_EQ(f["residual + rmsnorm"], 0);
  EXPECT_EQ(f["silu * up"], 0);
  EXPECT_EQ(f["q/k/v (fused)"], L);
  EXPECT_EQ(f["down_proj"], L);
  EXPECT_GT(counts[false].kernels, counts[true].kernels + 3 * L - 1);
  // The default set below position 1536: RoPE + KV store and the attention in the short-context
  // kernel, the rest as above.
  {
    ScopedDecodeOps env(DecodeOps::Default);
    auto engine = make_cuda_engine(w, gpu_options(16, 8));
    const CudaForwardEngine::StepLaunches d = dynamic_cast<CudaForwardEngine&>(*engine).decode_step_launches();
    std::map<std::string, int> dm(d.nodes_by_op.begin(), d.nodes_by_op.end());
    EXPECT_EQ(d.kernels, 5 * L + 2);
    EXPECT_EQ(dm.count("rope + kv store"), 0u);
    EXPECT_EQ(dm["attention"], L);
  }
  // The norms (after the first, built with the embedding) as kernels of their own, SiLU x up and
  // the residual adds still in the projections, and the two attention kernels.
  ScopedDecodeOps env(DecodeOps::WideModel);
  auto engine = make_cuda_engine(w, gpu_options(16, 8));
  const CudaForwardEngine::StepLaunches d = dynamic_cast<CudaForwardEngine&>(*engine).decode_step_launches();
  std::map<std::string, int> dm(d.nodes_by_op.begin(), d.nodes_by_op.end());
  EXPECT_EQ(d.kernels, 8 * L + 1);
  EXPECT_EQ(dm["residual + rmsnorm"], 2 * L - 1);
  EXPECT_EQ(dm["silu * up"], 0);
  EXPECT_EQ(dm["rope + kv store"], L);
  EXPECT_EQ(dm["attention"], L);
}

// ---- the batched engine (paged KV pool) ----

// Sequences of the batched tests: (prompt, generated, joins at step) each, random tokens.
std::vector<testing::Sequence> batch_sequences(const ModelConfig& c, const std::vector<std::array<int64_t, 3>>& shapes,
                                               unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<testing::Sequence> seqs;
  for (const auto& sh : shapes) {
    testing::Sequence s;
    s.prompt = sh[0];
    s.start_step = sh[2];
    for (int64_t i = 0; i < sh[0] + sh[1]; ++i) s.tokens.push_back(static_cast<int32_t>(rng() % c.vocab_size));
    seqs.push_back(std::move(s));
  }
  return seqs;
}

EngineOptions batch_options(const DeviceInfo& device, int64_t max_input, int64_t max_new, int64_t prefill,
                            int64_t kv_blocks, KvCacheDType kv) {
  EngineOptions o;
  o.runtime.max_input_length = max_input;
  o.runtime.max_new_tokens = max_new;
  o.runtime.threads = 2;
  o.runtime.use_tuning_cache = false;
  o.device = device;
  o.prefill_batch = prefill;
  o.kv_dtype = kv;
  o.kv_blocks = kv_blocks;
  o.max_step_rows = prefill + 8;
  return o;
}

// Compares two runs of the same sequences row by row: relative error of the logits below `tol`,
// and the same greedy token wherever the reference's best logit leads the next by more than
// `margin` (a near tie may go either way in fp16). Returns the rows whose greedy tokens were compared.
int64_t expect_rows_close(const std::vector<testing::Sequence>& got, const std::vector<testing::Sequence>& want,
                          int64_t V, double tol, float margin, const char* what) {
  int64_t compared = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].logits.size(), want[i].logits.size()) << what << ", sequence " << i;
    for (size_t r = 0; r < std::min(got[i].logits.size(), want[i].logits.size()); ++r) {
      const std::vector<float>& g = got[i].logits[r];
      const std::vector<double> ref(want[i].logits[r].begin(), want[i].logits[r].end());
      EXPECT_LT(rel_err_row(g.data(), ref.data(), V), tol) << what << ": sequence " << i << ", logits row " << r;
      std::vector<float> sorted(want[i].logits[r]);
      std::sort(sorted.rbegin(), sorted.rend());
      if (sorted[0] - sorted[1] > margin) {
        ++compared;
        EXPECT_EQ(greedy_token(g.data(), V), greedy_token(want[i].logits[r].data(), V))
            << what << ": sequence " << i << ", logits row " << r;
      }
    }
  }
  return compared;
}

// The batched GPU engine against the CPU batch engine (float32 KV pool, the reference) on the same
// tiny model: 8 sequences of different prompt lengths that join and leave over the steps, prompt
// chunks (rows of one sequence that attend to each other) next to decode rows, one long enough
// that its decode rows split their attention, block tables drawn from different shuffled free
// lists on the two engines, and blocks freed by the first sequences to end reused by later ones.
// fp16 activations and KV pool: the logits within 2 % (the CPU-vs-GPU tolerance of the tests
// above), greedy tokens equal where the CPU's best logit leads by more than 0.05 (the dense
// model's logits have an rms of about 1; 64 of its 71 rows lead by more); an fp8 KV pool within
// 10 %, greedy tokens equal where the lead is over 0.3.
void check_batched_against_cpu(std::shared_ptr<ModelWeights> w, KvCacheDType gpu_kv, double tol, float margin,
                               int64_t min_compared, const char* what) {
  SCOPED_TRACE(what);
  const ModelConfig& c = w->config;
  const int64_t V = c.vocab_size, max_input = 340, max_new = 16, prefill = 16, blocks = 40;
  const std::vector<std::array<int64_t, 3>> shapes = {{330, 10, 0}, {5, 14, 0}, {13, 6, 1}, {1, 9, 2},
                                                      {37, 4, 3},   {9, 12, 8}, {20, 3, 14}, {16, 5, 20}};
  auto cpu = make_batch_engine(w, batch_options(probe_cpu(), max_input, max_new, prefill, blocks, KvCacheDType::F32));
  auto gpu = make_batch_engine(w, batch_options(cuda_test::gpu0(), max_input, max_new, prefill, blocks, gpu_kv));
  EXPECT_EQ(gpu->kv_blocks(), blocks);
  EXPECT_EQ(gpu->max_rows(), prefill + 8);
  EXPECT_EQ(gpu->prefill_chunk(), prefill);
  EXPECT_NE(gpu->device_name().find("cuda"), std::string::npos) << gpu->device_name();
  std::vector<testing::Sequence> on_cpu = batch_sequences(c, shapes, 21), on_gpu = on_cpu;
  testing::run_batched(*cpu, on_cpu, 11, V);
  testing::run_batched(*gpu, on_gpu, 12, V);
  const int64_t compared = expect_rows_close(on_gpu, on_cpu, V, tol, margin, what);
  std::printf("  %s: greedy tokens compared on %lld of 71 rows\n", what, static_cast<long long>(compared));
  EXPECT_GE(compared, min_compared);
}

TEST(CudaEngine, BatchedEngineMatchesCpuBatchEngine) {
  QRT_SKIP_WITHOUT_GPU();
  auto dense = testing::tiny_weights(gpu_tiny_config(), 41, /*untied_head=*/true);
  check_batched_against_cpu(dense, KvCacheDType::F16, 2e-2, 5e-2f, 50, "dense, f16 KV pool");
  check_batched_against_cpu(dense, KvCacheDType::Fp8E4M3, 0.1, 0.3f, 20, "dense, fp8 KV pool");
  // Quantized: steps of up to 8 rows run the fused decode ops (norms and SiLU x up in cuda_gemv's
  // prologues, residual adds in its epilogues) between the paged kernels.
  auto quantized = testing::tiny_weights(gpu_tiny_config(), 42);
  quantize_all(*quantized);
  check_batched_against_cpu(quantized, KvCacheDType::F16, 2e-2, 5e-2f, 50, "quantized, f16 KV pool");
}

// One sequence through the batched GPU engine (prompt chunks, then decode rows over a shuffled
// block table) against the single-sequence GPU engine (contiguous cache, captured decode graph):
// both fp16, only the attention kernels differ, so within 1 % and the same greedy tokens.
TEST(CudaEngine, BatchedEngineOneSequenceMatchesSingleSequenceEngine) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 43);
  quantize_all(*w);
  const ModelConfig& c = w->config;
  const int64_t V = c.vocab_size;
  std::vector<testing::Sequence> batched = batch_sequences(c, {std::array<int64_t, 3>{45, 12, 0}}, 22);
  auto gpu = make_batch_engine(w, batch_options(cuda_test::gpu0(), 60, 8, 16, 8, KvCacheDType::F16));
  testing::run_batched(*gpu, batched, 13, V);
  EngineOptions so = gpu_options(60, 8);
  so.prefill_batch = 16;
  auto single = make_cuda_engine(w, so);
  std::vector<testing::Sequence> ref = batched;
  ref[0].logits = testing::reference_logits(*single, ref[0], V);
  EXPECT_EQ(ref[0].logits.size(), 13u);
  EXPECT_GT(expect_rows_close(batched, ref, V, 1e-2, 2e-2f, "batched vs single-sequence"), 8);
}

// Bad rows are errors before any work, and the engine keeps serving: a block table entry outside
// the pool (one the row's attention reads, below its own position's block), a position past the
// table.
TEST(CudaEngine, BatchedEngineRefusesBadBlockTables) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 44);
  auto gpu = make_batch_engine(w, batch_options(cuda_test::gpu0(), 40, 8, 8, 6, KvCacheDType::F16));
  std::vector<int32_t> blocks = {5, 2};
  KvBlockTable table{blocks.data(), 2};
  std::vector<int32_t> tokens = {7}, sequences = {0};
  std::vector<int64_t> positions = {20}, logit_rows = {0};
  std::vector<float> logits(static_cast<size_t>(w->config.vocab_size));
  auto step = [&] {
    BatchStep b;
    b.rows = 1;
    b.tokens = tokens.data();
    b.positions = positions.data();
    b.sequences = sequences.data();
    b.tables = &table;
    b.table_count = 1;
    b.logit_rows = logit_rows.data();
    b.logit_count = 1;
    gpu->step(b, logits.data());
  };
  EXPECT_NO_THROW(step());
  blocks[0] = 6;  // read by position 20's attention (positions 0..15), outside the pool of 6
  EXPECT_THROW(step(), Error);
  blocks[0] = 5;
  positions[0] = 32;  // block 2 of a 2-block table
  EXPECT_THROW(step(), Error);
  positions[0] = 21;
  EXPECT_NO_THROW(step());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

// Two limits, each a clear error before anything is uploaded: past 2^31 positions the lengths
// themselves are refused (every engine, EngineOptions::validate_lengths: invalid input naming
// max_input_length); below it, a KV cache larger than the GPU is out of memory naming the cache
// and the flag to lower (2^31 positions of this tiny model's cache are 1 TiB).
TEST(CudaEngine, AbsurdMaxInputLengthIsACleanError) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 5);
  try {
    make_cuda_engine(w, gpu_options(int64_t(1) << 40, 16));
    FAIL() << "expected a qrt::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << e.what();
    EXPECT_NE(std::string(e.what()).find("max_input_length"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("2^31"), std::string::npos) << e.what();
  }
  try {
    make_cuda_engine(w, gpu_options(int64_t(1) << 31, 16));
    FAIL() << "expected a qrt::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory) << e.what();
    EXPECT_NE(std::string(e.what()).find("KV cache"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("lower --max-input-length"), std::string::npos) << e.what();
  }
  auto engine = make_cuda_engine(w, gpu_options(8, 8));  // the device is still usable
  int32_t t = 1;
  std::vector<float> logits(static_cast<size_t>(w->config.vocab_size));
  EXPECT_THROW(engine->forward(&t, 1, 16, logits.data()), Error);  // beyond the cache
  engine->forward(&t, 1, 0, logits.data());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

// The fp8 (e4m3) KV cache against the naive forward in double on the tiny model: prefill (the
// unfused kernels) and decode steps (the fused attention) within 10 % relative error of the logits
// (the cache keeps 3 mantissa bits: about 3 % per key and value element; fp16 is held to 2 %).
TEST(CudaEngine, Fp8KvCacheMatchesNaiveForwardLoosely) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = testing::tiny_weights(gpu_tiny_config(), 9, /*untied_head=*/true);
  const ModelConfig& c = w->config;
  const int64_t T = 150, V = c.vocab_size, prefix = T - 6;
  const std::vector<int32_t> tokens = random_tokens(c, T, 14);
  const std::vector<double> ref = testing::naive_forward(*w, tokens, testing::plain_inv_freq(c));
  for (DecodeOps ops : kEveryDecodeOps) {
    SCOPED_TRACE(decode_ops_name(ops));
    ScopedDecodeOps env(ops);
    EngineOptions options = gpu_options(T, 8);
    options.prefill_batch = 32;
    options.kv_dtype = KvCacheDType::Fp8E4M3;
    auto engine = make_cuda_engine(w, options);
    std::vector<float> logits(static_cast<size_t>(prefix * V));
    engine->forward(tokens.data(), prefix, 0, logits.data(), true);
    double worst = 0;
    for (int64_t t = 0; t < prefix; ++t) worst = std::max(worst, rel_err_row(logits.data() + t * V, ref.data() + t * V, V));
    std::vector<float> last(static_cast<size_t>(V));
    for (int64_t t = prefix; t < T; ++t) {
      engine->forward(tokens.data() + t, 1, t, last.data(), false);
      worst = std::max(worst, rel_err_row(last.data(), ref.data() + t * V, V));
    }
    std::printf("  fp8 KV cache, %s: worst relative error of the logits %.4f\n", decode_ops_name(ops), worst);
    EXPECT_LT(worst, 0.1);
  }
}

// Perplexity of the default model (QRT_DEFAULT_MODEL: on the GPU machine its first 8 blocks) on the
// committed KJV text, windows of 256 tokens with the second half scored (qrt perplexity's method),
// by the CPU engine and by the GPU engine with an fp16 and an fp8 KV cache: GPU fp16 within 0.5 % of
// the CPU, fp8 within 3 % of fp16. All three are printed.
TEST(CudaEngine, PerplexityCpuAgainstGpuAndFp8KvCache) {
  QRT_SKIP_WITHOUT_GPU();
  const char* path = std::getenv("QRT_DEFAULT_MODEL");
  if (!path || !std::filesystem::exists(path)) GTEST_SKIP() << "QRT_DEFAULT_MODEL unset or missing";
  auto w = load_model(path);
  const Tokenizer tokenizer = load_tokenizer(path);
  std::ifstream in(std::string(QRT_TEST_DATA) + "/text/kjv_ruth_jonah.txt");
  std::stringstream text;
  text << in.rdbuf();
  const std::vector<int32_t> tokens = tokenizer.encode(text.str(), /*add_special=*/true);
  const int64_t ctx = 256, windows = std::min<int64_t>(8, static_cast<int64_t>(tokens.size()) / ctx);
  ASSERT_GE(windows, 1);
  const int64_t V = w->config.vocab_size;
  // kv: the GPU engine with that KV cache; nullopt: the CPU engine (float32, the reference).
  auto perplexity = [&](std::optional<KvCacheDType> kv) {
    std::unique_ptr<ForwardEngine> engine;
    if (kv) {
      EngineOptions options = gpu_options(ctx, 0);
      options.prefill_batch = ctx;
      options.kv_dtype = *kv;
      engine = make_cuda_engine(w, options);
    } else {
      EngineOptions options;
      options.runtime.max_input_length = ctx;
      options.runtime.max_new_tokens = 1;
      options.runtime.use_tuning_cache = false;
      options.device = probe_cpu();
      options.prefill_batch = ctx;
      engine = make_cpu_engine(w, options);
    }
    std::vector<float> logits(static_cast<size_t>(ctx * V));
    double nll = 0;
    int64_t count = 0;
    for (int64_t c = 0; c < windows; ++c) {
      engine->forward(tokens.data() + c * ctx, ctx, 0, logits.data(), true);
      for (int64_t j = ctx / 2; j < ctx - 1; ++j) {
        const float* row = logits.data() + j * V;
        const double mx = *std::max_element(row, row + V);
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - mx);
        nll -= row[tokens[c * ctx + j + 1]] - mx - std::log(sum);
        ++count;
      }
    }
    return std::exp(nll / count);
  };
  const double f16 = perplexity(KvCacheDType::F16), fp8 = perplexity(KvCacheDType::Fp8E4M3);
  const double cpu = perplexity(std::nullopt);
  std::printf("  perplexity (%lld windows of %lld, %s): f16 KV cache %.4f, fp8 e4m3 %.4f (%+.2f %%); "
              "CPU engine %.4f (GPU f16 %+.3f %%)\n",
              static_cast<long long>(windows), static_cast<long long>(ctx), path, f16, fp8, 100 * (fp8 / f16 - 1), cpu,
              100 * (f16 / cpu - 1));
  EXPECT_LT(std::abs(fp8 / f16 - 1), 0.03);
  // The GPU engine (fp16 activations and KV cache) against the CPU engine on the same text and
  // windows: within 0.5 % (the GPU engine issue's bar).
  EXPECT_LT(std::abs(f16 / cpu - 1), 0.005);
}

// Phi-3 with longrope (its q/k/v and gate/up stored fused): the long factors live in the RoPE
// tables, which the GPU reads as the CPU does. The context held (24 positions) is past the
// fixture's original 8, so the long factors are the ones in use.
TEST(CudaEngine, Phi3LongropeMatchesCpuEngine) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = load_model(std::string(QRT_TEST_DATA) + "/fixtures/phi3_longrope_tiny");
  ASSERT_EQ(w->config.rope_scaling.type, "longrope");
  EngineOptions cpu_opt = gpu_options(16, 8);
  cpu_opt.device = probe_cpu();
  auto cpu = make_cpu_engine(w, cpu_opt);
  auto gpu = make_cuda_engine(w, gpu_options(16, 8));
  const std::vector<int32_t> tokens = {1, 7, 33, 12, 5, 60, 21, 9, 44, 3, 17, 28};
  const int64_t V = w->config.vocab_size, T = static_cast<int64_t>(tokens.size());
  std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
  cpu->forward(tokens.data(), T, 0, a.data());
  gpu->forward(tokens.data(), T, 0, b.data());
  std::vector<double> ad(a.begin(), a.end());
  // fp16 activations and KV cache against the float32 CPU engine.
  EXPECT_LT(rel_err_row(b.data(), ad.data(), V), 2e-2);
  for (int32_t next : {11, 40}) {  // decode steps at positions 12 and 13 (the graph path)
    const int64_t pos = T + (next == 40);
    cpu->forward(&next, 1, pos, a.data());
    gpu->forward(&next, 1, pos, b.data());
    ad.assign(a.begin(), a.end());
    EXPECT_LT(rel_err_row(b.data(), ad.data(), V), 2e-2) << "decode at " << pos;
  }
}

// The weights with every quantized linear replaced by its dequantized float matrix: what the
// CPU engine compares a quantized GPU engine against.
std::shared_ptr<ModelWeights> dequantized_copy(const ModelWeights& w) {
  auto d = std::make_shared<ModelWeights>(w);
  for (auto& layer : d->layers)
    for (LinearWeight* lw : layer.linears())
      if (lw->is_quantized()) {
        lw->dense = dequantize_reference(*lw->quantized);
        lw->quantized.reset();
      }
  return d;
}

// Gemma-2 (gemma2_tiny: a window of 4 on layer 0 only, attention and final soft-caps, the score
// scale of query_pre_attn_scalar, GeGLU, sandwich norms, the scaled embedding, a tied head)
// against the CPU engine, with every set of decode ops (the fused attention has no soft-cap and
// is not used; the norms, activation and residual adds held for cuda_gemv's projections are not
// used with Gemma-2's block): the logits of every row of a 12-token prompt (two chunks of 8, the
// window crossed), then decode steps replayed from the captured graph. Dense weights (cuBLAS),
// and 4-bit ones (cuda_gemv at decode) against the CPU engine on their dequantized values.
TEST(CudaEngine, Gemma2MatchesCpuEngine) {
  QRT_SKIP_WITHOUT_GPU();
  auto dense = load_model(std::string(QRT_TEST_DATA) + "/fixtures/gemma2_tiny");
  const ModelConfig& c = dense->config;
  ASSERT_EQ(c.architecture, "Gemma2ForCausalLM");
  ASSERT_EQ(attention_window(c, 0), 4);
  ASSERT_EQ(attention_window(c, 1), 0);
  ASSERT_GT(c.attn_logit_softcapping, 0);
  const float final_cap = static_cast<float>(c.final_logit_softcapping);
  ASSERT_GT(final_cap, 0);
  auto quantized = std::make_shared<ModelWeights>(*dense);
  quantize_all(*quantized);
  const std::vector<int32_t> tokens = {2, 7, 33, 12, 5, 60, 21, 9, 44, 3, 17, 28};
  const int64_t V = c.vocab_size, T = static_cast<int64_t>(tokens.size());
  for (bool quantize : {false, true}) {
    SCOPED_TRACE(quantize ? "4-bit linears" : "dense linears");
    const auto gpu_weights = quantize ? quantized : dense;
    EngineOptions cpu_opt = gpu_options(16, 8);
    cpu_opt.device = probe_cpu();
    auto cpu = make_cpu_engine(quantize ? dequantized_copy(*quantized) : dense, cpu_opt);
    std::vector<float> a(static_cast<size_t>(T * V)), b(a.size());
    cpu->forward(tokens.data(), T, 0, a.data(), true);
    for (DecodeOps ops : kEveryDecodeOps) {
      SCOPED_TRACE(decode_ops_name(ops));
      ScopedDecodeOps env(ops);
      auto gpu = make_cuda_engine(gpu_weights, gpu_options(16, 8));
      // Every prompt row (fp16 activations and KV cache against the float32 CPU engine).
      gpu->forward(tokens.data(), T, 0, b.data(), true);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> ad(a.begin() + t * V, a.begin() + (t + 1) * V);
        EXPECT_LT(rel_err_row(b.data() + t * V, ad.data(), V), 2e-2) << "prompt row " << t;
      }
      // Decode steps at positions 12 ... 15 (the graph path), each after the CPU's step.
      std::vector<float> ca(static_cast<size_t>(V)), gb(ca.size());
      for (int64_t i = 0; i < 4; ++i) {
        const int32_t next = static_cast<int32_t>((11 * i + 5) % V);
        const int64_t pos = T + i;
        cpu->forward(&next, 1, pos, ca.data());
        gpu->forward(&next, 1, pos, gb.data());
        std::vector<double> ad(ca.begin(), ca.end());
        EXPECT_LT(rel_err_row(gb.data(), ad.data(), V), 2e-2) << "decode at " << pos;
        // The logits that leave the device are capped (the fused head's included).
        for (float v : gb) ASSERT_LE(std::abs(v), final_cap) << "decode at " << pos;
        // The device's greedy choice is the CPU's where the top two are apart.
        std::vector<float> sorted = ca;
        std::sort(sorted.rbegin(), sorted.rend());
        const int32_t token = gpu->forward_greedy(&next, 1, pos);
        if (sorted[0] - sorted[1] > 1e-2f) {
          EXPECT_EQ(token, greedy_token(ca.data(), V)) << "decode at " << pos;
        }
      }
    }
  }
}

// Partial rotary (Phi-4-mini's shape) is the rule the GPU still lacks: refused at load, naming it.
TEST(CudaEngine, PartialRotaryIsRefusedNamingIt) {
  QRT_SKIP_WITHOUT_GPU();
  auto w = load_model(std::string(QRT_TEST_DATA) + "/fixtures/phi3_partial_tiny");
  ASSERT_GT(w->config.rotary_dim, 0);
  try {
    make_cuda_engine(w, gpu_options(16, 8));
    FAIL() << "expected a qrt::Error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("partial rotary"), std::string::npos) << what;
    EXPECT_EQ(what.find("longrope"), std::string::npos) << what;
  }
}

TEST(CudaEngine, DefaultModelLogitsMatchCpuEngine) {
  QRT_SKIP_WITHOUT_GPU();
  const char* path = std::getenv("QRT_DEFAULT_MODEL");
  if (!path || !std::filesystem::exists(path)) GTEST_SKIP() << "QRT_DEFAULT_MODEL unset or missing";
  auto w = load_model(path);
  EngineOptions cpu_opt;
  cpu_opt.runtime.max_input_length = 32;
  cpu_opt.runtime.max_new_tokens = 8;
  cpu_opt.runtime.use_tuning_cache = false;
  cpu_opt.device = probe_cpu();
  auto cpu = make_cpu_engine(w, cpu_opt);
  auto gpu = make_cuda_engine(w, gpu_options(32, 8));
  std::vector<int32_t> tokens = {1, 504, 3458, 282, 260, 5248, 30, 198, 1812, 314, 3527, 28, 1247, 17, 2, 45};
  const int64_t V = w->config.vocab_size;
  std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
  cpu->forward(tokens.data(), static_cast<int64_t>(tokens.size()), 0, a.data());
  gpu->forward(tokens.data(), static_cast<int64_t>(tokens.size()), 0, b.data());
  std::vector<double> ad(a.begin(), a.end());
  // Stated tolerance: fp16 activations + fp16 KV cache vs the float32 CPU engine, 30 layers.
  EXPECT_LT(rel_err_row(b.data(), ad.data(), V), 5e-2);
  EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(), std::max_element(b.begin(), b.end()) - b.begin());
  // One decode step (M = 1: the Q4_1 layers on cuda_gemv's float-zero kernel, the 16 rows above on
  // cuda_marlin's), same tolerance.
  const int32_t next = 1280;
  cpu->forward(&next, 1, static_cast<int64_t>(tokens.size()), a.data());
  gpu->forward(&next, 1, static_cast<int64_t>(tokens.size()), b.data());
  ad.assign(a.begin(), a.end());
  EXPECT_LT(rel_err_row(b.data(), ad.data(), V), 5e-2);
}

}  // namespace
}  // namespace qrt

#else

TEST(CudaEngine, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA: the GPU engine tests do not apply"; }

#endif
