// Google Benchmark: one decode step's attention of one layer on the CPU (every head, one job per
// head on the thread pool, as CpuEngine runs it) over a KV cache of `ctx` positions:
//   blocked_f32 / blocked_f16  the single-head kernels (model/cpu_attention.h: keys in blocks of 16
//                              positions, vectorized for the best ISA of this CPU), one job per head
//   grouped_f16                the engine's way: one job per KV head runs its whole GQA group
//                              (attend_partial), so each key / value block is read once per group
//   rowmajor_f32               the row-major reference they replaced (ops::attend_one): the peer
//                              timed in the same run
// next to the memory floor: the layer's K and V bytes at the read bandwidth measured in this process
// (floor_us, x_floor = time / floor). Layers are rotated through copies past twice the last-level
// cache, since a decode step walks every layer's cache.
//   ./bench_cpu_attention --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_memory.h"
#include "model/cpu_attention.h"
#include "model/ops.h"
#include "qrt/dtype.h"

namespace {

using namespace qrt;
namespace ca = qrt::cpu_attention;

struct Shape {
  const char* model;
  int64_t heads, kv_heads, head_dim;
};

enum class Variant { BlockedF32, BlockedF16, GroupedF16, RowMajorF32 };

// One layer's cache in the variant's layout, filled with random values.
struct LayerCache {
  std::vector<float> k32, v32;
  std::vector<uint16_t> k16, v16;
  int64_t head_k = 0, head_v = 0;  // elements per head
};

LayerCache make_cache(const Shape& s, int64_t ctx, Variant v, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  LayerCache c;
  c.head_k = v == Variant::RowMajorF32 ? ctx * s.head_dim : ca::head_key_elems(ctx, s.head_dim);
  c.head_v = ctx * s.head_dim;
  if (v == Variant::BlockedF16 || v == Variant::GroupedF16) {
    c.k16.resize(s.kv_heads * c.head_k);
    c.v16.resize(s.kv_heads * c.head_v);
    for (auto& x : c.k16) x = f32_to_fp16(nd(rng));
    for (auto& x : c.v16) x = f32_to_fp16(nd(rng));
  } else {
    c.k32.resize(s.kv_heads * c.head_k);
    c.v32.resize(s.kv_heads * c.head_v);
    for (auto& x : c.k32) x = nd(rng);
    for (auto& x : c.v32) x = nd(rng);
  }
  return c;
}

void BM_decode_attention(benchmark::State& state, Shape s, int64_t ctx, Variant v) {
  std::mt19937 rng(7);
  const bool f16 = v == Variant::BlockedF16 || v == Variant::GroupedF16;
  const double layer_bytes = 2.0 * s.kv_heads * ctx * s.head_dim * (f16 ? 2 : 4);
  const int64_t copies = std::clamp<int64_t>(static_cast<int64_t>(2 * bench::llc_bytes() / layer_bytes) + 1, 1, 64);
  std::vector<LayerCache> layers;
  for (int64_t i = 0; i < copies; ++i) layers.push_back(make_cache(s, ctx, v, rng));
  std::normal_distribution<float> nd;
  std::vector<float> q(s.heads * s.head_dim), out(s.heads * s.head_dim);
  for (auto& x : q) x = nd(rng);
  ThreadPool& pool = bench::pool();
  const int64_t score_stride = ca::round_up_to_block(ctx);
  const int64_t group = s.heads / s.kv_heads, last = ctx - 1;
  std::vector<float> scores(static_cast<size_t>(pool.size() * score_stride * group));
  std::vector<float> part_max(s.heads), part_sum(s.heads);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  size_t rep = 0;
  for (auto _ : state) {
    const LayerCache& c = layers[rep++ % layers.size()];
    if (v == Variant::GroupedF16) {
      pool.parallel_for(s.kv_heads, [&](int t, int64_t k0, int64_t k1) {
        float* sc = scores.data() + t * score_stride * group;
        for (int64_t kvh = k0; kvh < k1; ++kvh) {
          const int64_t h0 = kvh * group;
          float* o = out.data() + h0 * s.head_dim;
          ca::attend_partial(q.data() + h0 * s.head_dim, s.head_dim, group, c.k16.data() + kvh * c.head_k,
                             c.v16.data() + kvh * c.head_v, 0, last, s.head_dim, scale, sc, o, part_max.data() + h0,
                             part_sum.data() + h0);
          for (int64_t h = 0; h < group; ++h)
            for (int64_t d = 0; d < s.head_dim; ++d) o[h * s.head_dim + d] /= part_sum[h0 + h];
        }
      });
      benchmark::DoNotOptimize(out.data());
      benchmark::ClobberMemory();
      continue;
    }
    pool.parallel_for(s.heads, [&](int t, int64_t h0, int64_t h1) {
      float* sc = scores.data() + t * score_stride;
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t kvh = h / group;
        const float* qh = q.data() + h * s.head_dim;
        float* o = out.data() + h * s.head_dim;
        switch (v) {
          case Variant::BlockedF32:
            ca::attend(qh, c.k32.data() + kvh * c.head_k, c.v32.data() + kvh * c.head_v, 0, last, s.head_dim, scale,
                       sc, o);
            break;
          case Variant::BlockedF16:
            ca::attend(qh, c.k16.data() + kvh * c.head_k, c.v16.data() + kvh * c.head_v, 0, last, s.head_dim, scale,
                       sc, o);
            break;
          case Variant::GroupedF16:
            break;
          case Variant::RowMajorF32:
            ops::attend_one(qh, c.k32.data() + kvh * c.head_k, c.v32.data() + kvh * c.head_v, 0, last, s.head_dim,
                            scale, sc, o);
            break;
        }
      }
    });
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double floor_us = layer_bytes / (bench::read_gbps() * 1e9) * 1e6;
  state.counters["floor_us"] = floor_us;
  state.counters["read_GBps"] = bench::read_gbps();
  state.counters["x_floor"] = benchmark::Counter(floor_us * 1e-6 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetLabel(std::string("isa ") + qrt::cpu_isa_name(qrt::best_cpu_isa()));
}

void register_all() {
  const Shape shapes[] = {{"smollm2-135m", 9, 3, 64}, {"llama3-8b", 32, 8, 128}, {"llama2-7b", 32, 32, 128}};
  const std::pair<Variant, const char*> variants[] = {
      {Variant::BlockedF32, "blocked_f32"},
      {Variant::BlockedF16, "blocked_f16"},
      {Variant::GroupedF16, "grouped_f16"},
      {Variant::RowMajorF32, "rowmajor_f32"}};
  for (const Shape& s : shapes)
    for (int64_t ctx : {512, 4096})
      for (auto [v, vname] : variants)
        benchmark::RegisterBenchmark((std::string(s.model) + "/ctx" + std::to_string(ctx) + "/" + vname).c_str(),
                                     BM_decode_attention, s, ctx, v)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
