// Decode throughput of the GPU engine on a checkpoint (scripts/gpu-check.sh runs it on a random
// Llama-2-7B-shaped GPTQ model from tools/make_random_model.py): load, prefill a 128-token random
// prompt, then 128 greedy tokens two ways:
//   host_loop: one ForwardEngine::forward() per token with the logits copied back and the argmax
//              taken on the host (what `qrt run` does through the Generator);
//   device_loop: CudaForwardEngine::generate_on_device(), one graph replay per token, sampling on
//              the device, no host synchronisation until the end.
// Usage: gpu_decode_bench MODEL [OUT.json]   (env PROMPT=128 NEW=128)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "model/cuda/cuda_engine.h"
#include "qrt/device.h"
#include "qrt/model.h"

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
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
    const auto t0 = clock::now();
    auto weights = load_model(argv[1]);
    const auto t1 = clock::now();
    EngineOptions opt;
    opt.runtime.max_input_length = prompt_len;
    opt.runtime.max_new_tokens = n_new + 8;
    opt.runtime.use_tuning_cache = false;
    opt.device = devs[0];
    opt.prefill_batch = prompt_len;
    opt.log = [](const std::string& m) { std::fprintf(stderr, "qrt: %s\n", m.c_str()); };
    auto engine = make_engine(weights, opt);
    auto* ce = dynamic_cast<CudaForwardEngine*>(engine.get());
    if (!ce) throw std::runtime_error("make_engine did not return the CUDA engine");
    const auto t2 = clock::now();
    std::printf("load %.1f s, engine build %.1f s on %s\n", secs(t0, t1), secs(t1, t2), engine->device_name().c_str());
    for (const auto& [b, n] : engine->backend_counts()) std::printf("  %s: %d linears\n", b.c_str(), n);

    const int64_t V = weights->config.vocab_size;
    std::mt19937 rng(0);
    std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(V - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
    for (auto& t : prompt) t = tok(rng);
    std::vector<float> logits(static_cast<size_t>(V));
    auto argmax = [&] { return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()); };
    // Warm-up (graph capture, cuBLAS heuristics), then the timed runs from the same prefix.
    engine->forward(prompt.data(), prompt_len, 0, logits.data());
    int32_t next = argmax();
    engine->forward(&next, 1, prompt_len, logits.data());
    const auto p0 = clock::now();
    engine->forward(prompt.data(), prompt_len, 0, logits.data());
    const auto p1 = clock::now();
    const int32_t first = argmax();
    next = first;
    std::vector<int32_t> host_tokens;
    const auto h0 = clock::now();
    for (int64_t i = 0; i < n_new; ++i) {
      engine->forward(&next, 1, prompt_len + i, logits.data());
      next = argmax();
      host_tokens.push_back(next);
    }
    const auto h1 = clock::now();
    ce->generate_on_device(first, prompt_len, 8, DeviceSampling{});  // warm-up of the decode graph
    std::vector<int32_t> dev_tokens = ce->generate_on_device(first, prompt_len, n_new, DeviceSampling{});
    const double dev_s = ce->last_generate_seconds();
    // Where one decode step's time goes (ops back to back behind a held stream, an event after each).
    const auto profile = ce->profile_decode_step(first, prompt_len);
    double profile_total = 0;
    for (const auto& t : profile) profile_total += t.us;
    std::printf("decode step by op (position %lld, events between ops; graph step %.1f us):\n",
                static_cast<long long>(prompt_len), dev_s / static_cast<double>(n_new) * 1e6);
    nlohmann::json prof = nlohmann::json::array();
    for (const auto& t : profile) {
      std::printf("  %-20s %9.1f us  %5.1f %%  %4d launches  %7.2f us each", t.op.c_str(), t.us,
                  100 * t.us / profile_total, t.launches, t.us / t.launches);
      if (t.graph_us_each > 0) std::printf("  (%.2f us alone in a graph)", t.graph_us_each);
      std::printf("\n");
      prof.push_back({{"op", t.op}, {"us", t.us}, {"launches", t.launches}, {"graph_us_each", t.graph_us_each}});
    }
    std::printf("  %-20s %9.1f us\n", "total", profile_total);
    int64_t agree = 0;
    for (int64_t i = 0; i < n_new; ++i) agree += host_tokens[i] == dev_tokens[i];

    nlohmann::json out;
    out["model"] = argv[1];
    out["device"] = engine->device_name();
    out["prompt_tokens"] = prompt_len;
    out["new_tokens"] = n_new;
    out["load_s"] = secs(t0, t1);
    out["engine_build_s"] = secs(t1, t2);
    out["prefill_tok_s"] = prompt_len / secs(p0, p1);
    out["decode_tok_s"] = n_new / secs(h0, h1);
    out["decode_tok_s_device_loop"] = n_new / dev_s;
    out["greedy_tokens_agree"] = agree;
    out["backends"] = engine->backend_counts();
    out["decode_step_profile"] = prof;
    std::printf("%s\n", out.dump(1).c_str());
    if (argc > 2) std::ofstream(argv[2]) << out.dump(1) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_decode_bench: %s\n", e.what());
    return 1;
  }
}
