// Decode throughput of the GPU engine on a checkpoint (scripts/gpu-check.sh runs it on a random
// Llama-2-7B-shaped GPTQ model from tools/make_random_model.py and on the default SmolLM2 GGUF):
// load, prefill a random prompt, then greedy tokens several ways:
//   host_loop: one ForwardEngine::forward_greedy() per token, the token chosen on the device and
//              copied back alone (what `qrt run` does through the Generator for greedy decoding);
//   host_loop_logits: forward() with the logits copied back and the argmax taken on the host;
//   eager: host_loop with the decode step launched kernel by kernel instead of replayed from the
//              captured graph (its tokens must equal the graph's);
//   device_loop: CudaForwardEngine::generate_on_device(), one graph replay per token, sampling on
//              the device, no host synchronisation until the end.
// Also the launches of one decode step (graph nodes by op) and where its time goes. With
// UNFUSED=1 the same again on an engine without the fused decode ops (QRT_CUDA_FUSED_DECODE=0);
// with GEMV_BULK=1 (or 0) the same again with cuda_gemv's bulk-copy parameter forced to 1 (or 0)
// on every layer; GEMV_BULK_ALL=1 (or 0) forces it in the main engine.
// Prefill is timed on a PREFILL-token random prompt (default PROMPT), the median of three.
// PROFILE_STEPS=N: N graph decode steps of the main engine between cudaProfilerStart() and
// cudaProfilerStop(), for `ncu --profile-from-start off` to see exactly those kernels (no prefill,
// no warm-up, no capture).
// Usage: gpu_decode_bench MODEL [OUT.json]
//   (env PROMPT=128 PREFILL=PROMPT NEW=128 UNFUSED=0 GEMV_BULK= GEMV_BULK_ALL= PROFILE_STEPS=0)
#include <cuda_profiler_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "model/cuda/cuda_engine.h"
#include "qrt/device.h"
#include "qrt/model.h"
#include "qrt/sampler.h"

using namespace qrt;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: gpu_decode_bench MODEL [OUT.json]\n");
    return 2;
  }
  try {
    auto devs = probe_cuda_devices();
    if (devs.empty()) {
      std::fprintf(stderr, "gpu_decode_bench: no CUDA device (%s)\n", cuda_unavailable_reason().c_str());
      return 2;
    }
    const int64_t prompt_len = std::getenv("PROMPT") ? std::atoll(std::getenv("PROMPT")) : 128;
    const int64_t n_new = std::getenv("NEW") ? std::atoll(std::getenv("NEW")) : 128;
    const int64_t prefill_len = std::getenv("PREFILL") ? std::atoll(std::getenv("PREFILL")) : prompt_len;
    if (prompt_len < 1 || n_new < 1 || prefill_len < 1) throw std::runtime_error("PROMPT, PREFILL and NEW must be >= 1");
    const bool unfused_too = std::getenv("UNFUSED") && std::string(std::getenv("UNFUSED")) == "1";
    // GEMV_BULK=1 / =0: a second engine with cuda_gemv's bulk parameter forced to that value on
    // every layer (the default takes it for small layers only); GEMV_BULK_ALL=1 / =0 forces it in
    // the main engine (A/B across alternating processes).
    const char* bulk_env = std::getenv("GEMV_BULK");
    const bool bulk_too = bulk_env && (std::string(bulk_env) == "1" || std::string(bulk_env) == "0");
    const int64_t bulk_forced = bulk_too && std::string(bulk_env) == "0" ? 0 : 1;
    const char* bulk_all = std::getenv("GEMV_BULK_ALL");
    const int64_t bulk_main = bulk_all && *bulk_all ? (std::string(bulk_all) == "0" ? 0 : 1) : -1;
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
    const auto t0 = clock::now();
    auto weights = load_model(argv[1]);
    const auto t1 = clock::now();
    EngineOptions opt;
    opt.runtime.max_input_length = std::max(prompt_len, prefill_len);
    opt.runtime.max_new_tokens = n_new + 8;
    // TUNED=1: the tuning cache (qrt tune's) as qrt run reads it; by default the plan's defaults.
    opt.runtime.use_tuning_cache = std::getenv("TUNED") && std::string(std::getenv("TUNED")) == "1";
    opt.device = devs[0];
    opt.prefill_batch = std::max(prompt_len, prefill_len);
    opt.log = [](const std::string& m) { std::fprintf(stderr, "qrt: %s\n", m.c_str()); };

    const int64_t V = weights->config.vocab_size;
    std::mt19937 rng(0);
    std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(V - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(prompt_len)), prefill(static_cast<size_t>(prefill_len));
    for (auto& t : prompt) t = tok(rng);
    for (auto& t : prefill) t = tok(rng);

    const int64_t profile_steps = std::getenv("PROFILE_STEPS") ? std::atoll(std::getenv("PROFILE_STEPS")) : 0;
    if (profile_steps < 0 || profile_steps > n_new) throw std::runtime_error("PROFILE_STEPS must be 0 .. NEW");
    bool profiled = false;
    // One engine's figures; `fused` says which decode ops it was built with.
    // gemv_bulk: cuda_gemv's bulk parameter forced on every layer (-1: the plan's default).
    auto measure = [&](bool fused, std::vector<int32_t>* graph_tokens, int64_t gemv_bulk = -1) {
      if (!fused) setenv("QRT_CUDA_FUSED_DECODE", "0", 1);
      EngineOptions o = opt;
      if (gemv_bulk >= 0) o.runtime.backend_params["cuda_gemv"].values["bulk"] = gemv_bulk;
      const auto b0 = clock::now();
      auto engine = make_engine(weights, o);
      const auto b1 = clock::now();
      if (!fused) unsetenv("QRT_CUDA_FUSED_DECODE");
      auto* ce = dynamic_cast<CudaForwardEngine*>(engine.get());
      if (!ce) throw std::runtime_error("make_engine did not return the CUDA engine");
      nlohmann::json r;
      r["engine_build_s"] = secs(b0, b1);
      std::printf("%s decode ops%s: engine build %.1f s on %s\n", fused ? "fused" : "unfused",
                  gemv_bulk < 0 ? "" : gemv_bulk ? ", cuda_gemv bulk = 1" : ", cuda_gemv bulk = 0", secs(b0, b1),
                  engine->device_name().c_str());
      for (const auto& [b, n] : engine->backend_counts()) std::printf("  %s: %d linears\n", b.c_str(), n);
      // Warm-up (graph capture, cuBLAS heuristics), then the timed runs.
      engine->forward_greedy(prefill.data(), prefill_len, 0);
      std::vector<double> prefill_s;
      for (int rep = 0; rep < 3; ++rep) {
        const auto p0 = clock::now();
        engine->forward_greedy(prefill.data(), prefill_len, 0);
        prefill_s.push_back(secs(p0, clock::now()));
      }
      std::sort(prefill_s.begin(), prefill_s.end());
      r["prefill_tok_s"] = prefill_len / prefill_s[1];
      int32_t first = engine->forward_greedy(prompt.data(), prompt_len, 0);
      engine->forward_greedy(&first, 1, prompt_len);
      first = engine->forward_greedy(prompt.data(), prompt_len, 0);
      auto host_loop = [&](std::vector<int32_t>& tokens) {
        int32_t next = first;
        const auto h0 = clock::now();
        for (int64_t i = 0; i < n_new; ++i) tokens.push_back(next = engine->forward_greedy(&next, 1, prompt_len + i));
        return n_new / secs(h0, clock::now());
      };
      std::vector<int32_t> host_tokens, eager_tokens, logit_tokens;
      r["decode_tok_s"] = host_loop(host_tokens);
      if (profile_steps > 0 && !profiled) {  // the main engine only
        profiled = true;
        int32_t next = first;
        cudaProfilerStart();
        for (int64_t i = 0; i < profile_steps; ++i) next = engine->forward_greedy(&next, 1, prompt_len + i);
        cudaProfilerStop();
      }
      {
        std::vector<float> logits(static_cast<size_t>(V));
        int32_t next = first;
        const auto h0 = clock::now();
        for (int64_t i = 0; i < n_new; ++i) {
          engine->forward(&next, 1, prompt_len + i, logits.data());
          logit_tokens.push_back(next = greedy_token(logits.data(), V));
        }
        r["decode_tok_s_logits_to_host"] = n_new / secs(h0, clock::now());
      }
      ce->use_graphs(false);
      r["decode_tok_s_eager"] = host_loop(eager_tokens);
      ce->use_graphs(true);
      ce->generate_on_device(first, prompt_len, 8, DeviceSampling{});  // warm-up of the decode graph
      const std::vector<int32_t> dev_tokens = ce->generate_on_device(first, prompt_len, n_new, DeviceSampling{});
      const double dev_s = ce->last_generate_seconds();
      r["decode_tok_s_device_loop"] = n_new / dev_s;
      auto agree = [&](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
        int64_t n = 0;
        for (size_t i = 0; i < a.size() && i < b.size(); ++i) n += a[i] == b[i];
        return n;
      };
      r["greedy_tokens_agree"] = agree(host_tokens, dev_tokens);
      r["graph_eager_tokens_agree"] = agree(host_tokens, eager_tokens);
      r["logits_host_tokens_agree"] = agree(host_tokens, logit_tokens);
      if (graph_tokens) *graph_tokens = host_tokens;
      std::printf("  tokens/s: host loop %.1f (logits to host %.1f, eager %.1f), device loop %.1f; prefill %.1f\n",
                  r["decode_tok_s"].get<double>(), r["decode_tok_s_logits_to_host"].get<double>(),
                  r["decode_tok_s_eager"].get<double>(), r["decode_tok_s_device_loop"].get<double>(),
                  r["prefill_tok_s"].get<double>());
      std::printf("  greedy tokens equal to the host loop's: device loop %lld, eager %lld, logits %lld of %lld\n",
                  static_cast<long long>(r["greedy_tokens_agree"].get<int64_t>()),
                  static_cast<long long>(r["graph_eager_tokens_agree"].get<int64_t>()),
                  static_cast<long long>(r["logits_host_tokens_agree"].get<int64_t>()), static_cast<long long>(n_new));
      // The launches of a decode step, as the graph holds them.
      const CudaForwardEngine::StepLaunches launches = ce->decode_step_launches();
      nlohmann::json by_op = nlohmann::json::array();
      std::printf("  decode step launches: %d graph nodes, %d kernels\n", launches.nodes, launches.kernels);
      for (const auto& [op, n] : launches.nodes_by_op) {
        std::printf("    %-42s %4d\n", op.c_str(), n);
        by_op.push_back({{"op", op}, {"nodes", n}});
      }
      r["decode_step_launches"] = {{"nodes", launches.nodes}, {"kernels", launches.kernels}, {"by_op", by_op}};
      // Where one decode step's time goes (ops back to back behind a held stream, an event after each).
      const auto profile = ce->profile_decode_step(first, prompt_len);
      double profile_total = 0;
      for (const auto& t : profile) profile_total += t.us;
      std::printf("decode step by op (position %lld, events between ops; graph step %.1f us):\n",
                  static_cast<long long>(prompt_len), dev_s / static_cast<double>(n_new) * 1e6);
      nlohmann::json prof = nlohmann::json::array();
      for (const auto& t : profile) {
        std::printf("  %-42s %9.1f us  %5.1f %%  %4d launches  %7.2f us each", t.op.c_str(), t.us,
                    100 * t.us / profile_total, t.launches, t.us / t.launches);
        if (t.graph_us_each > 0) std::printf("  (%.2f us alone in a graph)", t.graph_us_each);
        std::printf("\n");
        prof.push_back({{"op", t.op}, {"us", t.us}, {"launches", t.launches}, {"graph_us_each", t.graph_us_each}});
      }
      std::printf("  %-42s %9.1f us\n", "total", profile_total);
      r["decode_step_profile"] = prof;
      r["backends"] = engine->backend_counts();
      r["device"] = engine->device_name();
      return r;
    };

    std::vector<int32_t> fused_tokens, unfused_tokens;
    nlohmann::json fused = measure(true, &fused_tokens, bulk_main);
    nlohmann::json unfused;
    if (unfused_too) {
      unfused = measure(false, &unfused_tokens);
      int64_t same = 0;
      for (int64_t i = 0; i < n_new; ++i) same += fused_tokens[i] == unfused_tokens[i];
      unfused["tokens_agree_with_fused"] = same;
    }

    nlohmann::json bulk;
    if (bulk_too) {
      std::vector<int32_t> bulk_tokens;
      bulk = measure(true, &bulk_tokens, bulk_forced);
      bulk["bulk"] = bulk_forced;
      int64_t same = 0;
      for (int64_t i = 0; i < n_new; ++i) same += fused_tokens[i] == bulk_tokens[i];
      bulk["tokens_agree_with_default"] = same;
    }

    nlohmann::json out = fused;
    out["model"] = argv[1];
    out["prompt_tokens"] = prompt_len;
    out["prefill_tokens"] = prefill_len;
    out["new_tokens"] = n_new;
    out["load_s"] = secs(t0, t1);
    if (unfused_too) out["unfused"] = unfused;
    if (bulk_too) out["gemv_bulk"] = bulk;
    std::printf("%s\n", out.dump(1).c_str());
    if (argc > 2) std::ofstream(argv[2]) << out.dump(1) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_decode_bench: %s\n", e.what());
    return 1;
  }
}
