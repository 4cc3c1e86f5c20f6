// Google Benchmark: cpu_simd vs cpu_ref on int4 g128 weight-only GEMM (y = x W^T), with the memory
// read floor measured in the same process reported as counters: floor_us is the time the layer's
// checkpoint bytes take at the measured read bandwidth, x_floor = measured time / floor_us.
// Weights are rotated through copies larger than twice the last-level cache (decode reads memory).
//   ./bench_cpu_gemm --benchmark_filter=14336x4096 --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_memory.h"
#include "qrt/backend.h"
#include "qrt/device.h"
#include "qrt/dtype.h"
#include "qrt/plan.h"
#include "qrt/thread_pool.h"

namespace {

using namespace qrt;
using qrt::bench::llc_bytes;
using qrt::bench::pool;
using qrt::bench::read_gbps;

QuantizedWeight random_int4(int64_t k, int64_t n) {
  std::mt19937 rng(11);
  QuantizedWeight w;
  w.spec.name = "bench";
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.bits = 4;
  w.spec.group_size = 128;
  w.codes.resize(static_cast<size_t>(k * n));
  for (auto& c : w.codes) c = static_cast<uint8_t>(rng() & 15);
  w.scales.resize(static_cast<size_t>(n * ((k + 127) / 128)));
  for (auto& s : w.scales) s = fp16_to_f32(f32_to_fp16(0.01f + 0.001f * static_cast<float>(rng() % 10)));
  return w;
}

struct Layer {
  std::vector<std::unique_ptr<PreparedLinear>> copies;
  int64_t k, n;
};

// One prepared set per (backend, shape, M-dependent params), kept for the whole run.
Layer& layer(const std::string& backend, int64_t k, int64_t n, int64_t m) {
  static std::map<std::string, Layer> cache;
  const Backend* be = BackendRegistry::global().find(backend);
  const DeviceInfo dev = probe_cpu();
  const QuantizedWeight w = random_int4(k, n);
  const KernelParams params = be->default_params(w.spec, m, dev);
  const std::string key = backend + std::to_string(k) + "x" + std::to_string(n) + params.to_json();
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Layer l{{}, k, n};
  l.copies.push_back(be->prepare(w, params, dev));
  const int64_t want = std::clamp<int64_t>(2 * llc_bytes() / std::max<int64_t>(1, l.copies[0]->weight_bytes()) + 1, 1, 6);
  while (static_cast<int64_t>(l.copies.size()) < want) l.copies.push_back(be->prepare(w, params, dev));
  return cache.emplace(key, std::move(l)).first->second;
}

void BM_int4_gemm(benchmark::State& state, const std::string& backend, int64_t k, int64_t n) {
  const int64_t m = state.range(0);
  Layer& l = layer(backend, k, n, m);
  std::vector<float> x(static_cast<size_t>(m * k)), y(static_cast<size_t>(m * n));
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  ActTensor xt{x.data(), DType::F32, m, k};
  ActTensor yt{y.data(), DType::F32, m, n};
  ExecContext ctx;
  ctx.pool = &pool();
  size_t rep = 0;
  for (auto _ : state) {
    l.copies[rep++ % l.copies.size()]->forward(xt, yt, ctx);
    benchmark::ClobberMemory();
  }
  const double bytes = static_cast<double>(k) * n / 2 + 2.0 * n * ((k + 127) / 128);  // codes + fp16 scales
  const double floor_us = bytes / (read_gbps() * 1e9) * 1e6;
  state.counters["floor_us"] = floor_us;
  state.counters["read_GBps"] = read_gbps();
  state.counters["x_floor"] = benchmark::Counter(floor_us * 1e-6 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * m * k * n * 1e-9 * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.counters["weight_GBps"] =
      benchmark::Counter(bytes * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void register_all() {
  struct Shape {
    int64_t k, n;
  };
  for (Shape s : {Shape{14336, 4096}, Shape{4096, 4096}, Shape{576, 1536}, Shape{1536, 576}}) {
    const std::string tag = std::to_string(s.k) + "x" + std::to_string(s.n);
    benchmark::RegisterBenchmark(("cpu_simd/" + tag).c_str(), BM_int4_gemm, std::string("cpu_simd"), s.k, s.n)
        ->Arg(1)->Arg(8)->Arg(16)->Arg(512)->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark(("cpu_ref/" + tag).c_str(), BM_int4_gemm, std::string("cpu_ref"), s.k, s.n)
        ->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
