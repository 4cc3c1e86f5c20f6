// `qrt bench --device cuda[:N]`: the batch-size sweep on a GPU. Activations are fp16 on the device;
// every timed call runs alone between two CUDA events after an L2 flush (gpu/timing.h), so M = 1
// reads its weights from memory as a decode step does. Next to each figure: the memory floor
// (checkpoint bytes / read bandwidth measured in the same run) and dense fp16 cuBLAS on the same
// inputs. `plan` times the layer as the runtime would run it (plan_layers + QuantLinear); with
// --tuning-cache, `plan+tuned` times the plan that reads the cache, next to the default plan.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/bench_common.h"
#include "core/text_escape.h"
#include "qrt/error.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"
#include "qrt/tuning_cache.h"

#ifdef QRT_WITH_CUDA
#include "gpu/runtime.h"
#include "gpu/timing.h"
#endif

namespace qrt::cli {

#ifndef QRT_WITH_CUDA
int run_bench_gpu(const BenchOptions& o) {
  resolve_device(o.device);  // a malformed id, or "not available: built without CUDA"
  throw Error(ErrorKind::Unsupported, "qrt bench --device " + o.device + ": this binary was built without CUDA");
}
#else
namespace {

constexpr int kWarmup = 3;
int repeats_for(int64_t m) { return m <= 256 ? 25 : 11; }

// The kernel of the plan for M rows, e.g. "cuda_gemv {"wt":4}"; with_source adds where the
// parameters came from (for the table and JSON).
std::string plan_text(const LinearPlan& plan, int64_t m, bool with_source = true) {
  for (const auto& c : plan.choices)
    if (m >= c.m_min && m <= c.m_max)
      return c.backend + " " + c.params.to_json() + (with_source ? std::string(" (") + param_source_name(c.source) + ")" : "");
  return "?";
}

}  // namespace

int run_bench_gpu(const BenchOptions& o) {
  const DeviceInfo device = resolve_device(o.device);
  if (device.kind != DeviceKind::Cuda)
    throw invalid_input("--device " + o.device + ": expected cpu or cuda[:N]");
  if (device.simulated())
    throw invalid_input("--device " + o.device + ": a target profile cannot be timed; benchmarks need the real GPU");
  for (int64_t m : o.batch)
    if (m <= 0) throw invalid_input("--batch: every value must be positive, got " + std::to_string(m));
  const int gpu = device.gpu.index;
  std::unique_ptr<Checkpoint> ckpt;
  const std::vector<Shape> shapes = collect_shapes(o, &ckpt);
  check_bench_memory(o, shapes);
  const int64_t max_m = *std::max_element(o.batch.begin(), o.batch.end());
  // Kernels are prepared for the largest M of the sweep (workspaces that grow with M).
  const PrepareContext prepare_ctx(device, max_m, [](const std::string& s) { std::fprintf(stderr, "qrt: %s\n", s.c_str()); });

  std::vector<std::string> names;
  if (o.backends_given) {
    names = o.backends;
  } else {
    for (const Backend* b : BackendRegistry::global().all())
      if (b->built() && b->capability().device == DeviceKind::Cuda) names.push_back(b->name());
    names.push_back("plan");
  }
  std::unique_ptr<TuningCache> cache;
  if (!o.tuning_cache.empty()) {
    cache = std::make_unique<TuningCache>(TuningCache::load(o.tuning_cache, device));
    for (const auto& w : cache->warnings())
      std::fprintf(stderr, "warning: tuning cache: %s\n", escape_message(w).c_str());
    if (std::find(names.begin(), names.end(), "plan") == names.end()) names.push_back("plan");
  }

  check_params_accepted(o, names, shapes.front().spec, device);
  std::printf("qrt bench on %s\n", device.describe().c_str());
  const double gbps = gpu_timing::read_bandwidth_gbps(gpu);
  std::printf("device memory read bandwidth (read-only kernel, best of 7 passes): %.0f GB/s\n", gbps);
  std::printf("timing: fp16 activations, median of %d (M <= 256) or %d repeats, each after an L2 flush\n",
              repeats_for(1), repeats_for(4096));

  std::vector<Row> rows;
  const auto cpu_ref = BackendRegistry::global().find("cpu_ref");
  const DeviceInfo cpu = probe_cpu();
  for (const Shape& shape : shapes) {
    const LayerSpec& spec = shape.spec;
    const int64_t K = spec.in_features, N = spec.out_features;
    const double wbytes = logical_weight_bytes(spec);
    const double floor_us = wbytes / (gbps * 1e9) * 1e6;
    const QuantizedWeight weight = shape_weight(shape, ckpt.get(), floor_us);
    gpu_timing::LayerBench bench(gpu, max_m, K, N, DType::F16, 4, 20261128);
    ExecContext ctx;
    ctx.cuda_stream = bench.stream();
    // The reference: cpu_ref on the first rows of input 0 (the same fp16-rounded values), once per
    // shape. Rows are independent, so every M is checked on its first min(M, 16) rows.
    const int64_t ref_rows = std::min<int64_t>(max_m, 16);
    std::vector<float> ref(static_cast<size_t>(ref_rows * N));
    {
      auto kernel = cpu_ref->prepare(weight, {}, cpu);
      std::vector<float> x0 = bench.input(ref_rows);
      kernel->forward(ActTensor{x0.data(), DType::F32, ref_rows, K, DeviceKind::Cpu},
                      ActTensor{ref.data(), DType::F32, ref_rows, N, DeviceKind::Cpu}, ExecContext{});
    }
    auto check = [&](const std::function<void(const ActTensor&, const ActTensor&)>& fwd, int64_t m) -> double {
      const int64_t rows = std::min(m, ref_rows);
      bench.poison_output();
      fwd(bench.x(0, m), bench.y(m));
      return relative_l2_error(bench.output(rows), std::vector<float>(ref.begin(), ref.begin() + rows * N));
    };

    std::map<int64_t, double> dense;
    std::printf("%-12s %6s %11s %9s %12s %8s %8s %9s  %s\n", "backend", "M", "median us", "TFLOP/s", "weight GB/s",
                "x floor", "vs fp16", "rel.err", "params");
    auto emit = [&](Row r) {
      r.gflops = 2.0 * r.m * K * N / (r.us * 1e3);
      r.weight_gbps = (r.backend == "fp16_cublas" ? 2.0 * K * N : wbytes) / (r.us * 1e3);
      r.floor_us = floor_us;
      r.dense_us = dense.count(r.m) ? dense[r.m] : 0.0;
      r.k = K;
      r.n = N;
      r.bits = r.backend == "fp16_cublas" ? 16 : spec.bits;
      r.group_size = spec.group_size;
      r.shape = shape.label;
      std::printf("%-12s %6lld %11.1f %9.2f %12.1f %8.2f %7.2fx %9s  %s\n", r.backend.c_str(),
                  static_cast<long long>(r.m), r.us, r.gflops / 1e3, r.weight_gbps, r.us / r.floor_us,
                  r.dense_us > 0 ? r.dense_us / r.us : 0.0,
                  r.max_rel_err >= 0 ? fmt::format("{:.1e}", r.max_rel_err).c_str() : "-", r.params.c_str());
      std::fflush(stdout);
      rows.push_back(r);
    };
    if (o.dense)
      for (int64_t m : o.batch) {
        Row r;
        r.backend = "fp16_cublas";
        r.m = m;
        r.us = bench.dense_us(m, kWarmup, repeats_for(m));
        r.reps = repeats_for(m);
        dense[m] = r.us;
        emit(r);
      }

    for (const std::string& name : names) {
      if (name == "plan") {
        // The runtime's own decision for this layer: default plan, then (with a cache) the tuned one.
        std::vector<std::pair<std::string, const TuningCache*>> variants = {{"plan", nullptr}};
        if (cache) variants.push_back({"plan+tuned", cache.get()});
        std::vector<std::pair<std::unique_ptr<QuantLinear>, LinearPlan>> built;
        RuntimeConfig config;
        config.max_input_length = max_m;
        config.use_tuning_cache = false;
        for (const auto& [label, c] : variants) {
          std::vector<LinearPlan> plans = plan_layers({spec}, config, device, c);
          if (!plans[0].ok()) {
            std::printf("%-12s skipped: %s\n", label.c_str(), plans[0].error.c_str());
            built.clear();  // the variants differ only in parameters: none can run
            break;
          }
          built.emplace_back(QuantLinear::build(weight, plans[0], prepare_ctx), plans[0]);
        }
        // Per M: where the tuned plan runs the very kernel and parameters of the default one (the
        // tuner kept the default) it is not timed again, a second timing of one kernel measuring
        // only noise. Where they differ, both are timed in alternating rounds (drift and bursts hit
        // both alike) and each keeps its median round.
        constexpr int kRounds = 3;
        for (int64_t m : o.batch) {
          const bool differ =
              built.size() > 1 && plan_text(built[1].second, m, false) != plan_text(built[0].second, m, false);
          std::vector<std::vector<double>> times(built.size());
          std::vector<double> errs(built.size(), -1);
          for (int round = 0; round < (differ ? kRounds : 1); ++round)
            for (size_t v = 0; v < built.size(); ++v) {
              if (v > 0 && !differ) continue;
              QuantLinear& lin = *built[v].first;
              auto fwd = [&](const ActTensor& x, const ActTensor& y) { lin.forward(x, y, ctx); };
              if (round == 0) errs[v] = check(fwd, m);
              times[v].push_back(
                  bench.median_us([&](int rep) { fwd(bench.x(rep, m), bench.y(m)); }, kWarmup, repeats_for(m)));
            }
          for (size_t v = 0; v < built.size(); ++v) {
            Row r;
            r.backend = variants[v].first;
            r.m = m;
            const size_t src = (v > 0 && !differ) ? 0 : v;
            auto t = times[src];
            std::sort(t.begin(), t.end());
            r.us = t[t.size() / 2];
            r.max_rel_err = errs[src];
            r.reps = repeats_for(m) * static_cast<int>(t.size());
            r.params = plan_text(built[v].second, m) + (src != v ? " = the default plan" : "");
            emit(r);
          }
        }
        continue;
      }
      const Backend* be = BackendRegistry::global().find(name);
      if (!be) {
        std::string all;
        for (const auto& n : BackendRegistry::global().names()) all += (all.empty() ? "" : ", ") + n;
        throw invalid_input("--backends: unknown backend '" + name + "' (known: " + all + ", plan)");
      }
      if (be->capability().device != DeviceKind::Cuda) {
        std::printf("%-12s skipped: a CPU backend (time it with --device cpu)\n", name.c_str());
        continue;
      }
      const Verdict v = be->check(spec, device);
      if (!v.ok) {
        std::printf("%-12s skipped: %s\n", name.c_str(), v.reason.c_str());
        continue;
      }
      std::map<std::string, std::unique_ptr<PreparedLinear>> prepared;  // by parameter JSON
      bool told = false;
      for (int64_t m : o.batch) {
        if (m > be->capability().max_m) continue;
        std::string why;
        KernelParams params = bench_params(*be, spec, m, device, o.params_json, &why);
        if (!why.empty() && !told) {
          std::printf("%-12s --params do not apply (%s): its defaults are timed\n", name.c_str(), why.c_str());
          told = true;
        }
        auto& kernel = prepared[params.to_json()];
        if (!kernel) kernel = be->prepare(weight, params, prepare_ctx);
        auto fwd = [&](const ActTensor& x, const ActTensor& y) { kernel->forward(x, y, ctx); };
        Row r;
        r.backend = name;
        r.m = m;
        r.max_rel_err = check(fwd, m);
        r.us = bench.median_us([&](int rep) { fwd(bench.x(rep, m), bench.y(m)); }, kWarmup, repeats_for(m));
        r.reps = repeats_for(m);
        r.params = params.to_json();
        emit(r);
      }
    }
  }

  // Tuned vs default plan, per shape and M (the figure `qrt tune` is for).
  if (cache) {
    std::printf("\ntuned plan vs default plan (default us / tuned us; > 1 = the tuned plan is faster)\n");
    std::map<std::pair<std::string, int64_t>, double> def;
    for (const Row& r : rows)
      if (r.backend == "plan") def[{r.shape, r.m}] = r.us;
    double worst = INFINITY;
    for (const Row& r : rows)
      if (r.backend == "plan+tuned" && def.count({r.shape, r.m})) {
        const double g = def[{r.shape, r.m}] / r.us;
        worst = std::min(worst, g);
        std::printf("  %-12s M=%-5lld %8.1f -> %8.1f us  %.3fx\n", r.shape.c_str(), static_cast<long long>(r.m),
                    def[{r.shape, r.m}], r.us, g);
      }
    if (std::isfinite(worst)) std::printf("worst tuned/default ratio: %.3fx\n", worst);
  }
  if (!o.json_path.empty()) {
    write_rows_json(o.json_path, rows, gbps, device.describe(), 0);
    if (o.json_path != "-") std::printf("\nwrote %s\n", o.json_path.c_str());
  }
  if (!o.plot_path.empty()) {
    write_plot(o.plot_path, rows, fmt::format("qrt bench on {}: {} shapes", device.gpu.name, shapes.size()));
    std::printf("wrote %s\n", o.plot_path.c_str());
  }
  return 0;
}
#endif

}  // namespace qrt::cli
