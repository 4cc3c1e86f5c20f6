// `qrt tune MODEL`: find the fastest kernel parameters of every eligible backend for each distinct
// quantized layer shape and row count M on this machine, and remember them in the tuning cache
// (docs/CONFIG.md). `qrt plan` and `qrt run` then show/use them as "tuned".
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/model_argument.h"
#include "core/text_escape.h"
#include "model/fused_projections.h"
#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/plan.h"
#include "qrt/plural.h"
#include "qrt/runtime_config.h"
#include "qrt/setup.h"
#include "qrt/thread_pool.h"
#include "qrt/tuning_cache.h"

namespace qrt::cli {
namespace {

struct TuneCliOptions {
  std::string model, device = "cpu", cache_path;
  std::vector<int64_t> batch = {1, 4, 16, 64};
  std::vector<std::string> backends;
  double budget = 0;
  int threads = 0, repeats = 7, warmup = 2;
  bool retune = false, ignore_bad = false, quiet = false, verbose = false;
};

std::string clock_text(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  const int t = static_cast<int>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

// A one-line progress bar with ETA on a terminal; on a pipe, one line per 10 %.
class ProgressBar {
 public:
  explicit ProgressBar(bool quiet) : quiet_(quiet), tty_(isatty(fileno(stderr)) != 0) {}
  void update(const TuneProgress& p) {
    if (quiet_ || p.total == 0) return;
    const double frac = static_cast<double>(p.done) / static_cast<double>(p.total);
    if (tty_) {
      const int width = 30, filled = static_cast<int>(frac * width);
      std::string what = p.current.size() > 60 ? p.current.substr(0, 57) + "..." : p.current;
      std::fprintf(stderr, "\r[%s%s] %zu/%zu  %s elapsed, ETA %s  %-60s", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), p.done, p.total, clock_text(p.elapsed_s).c_str(),
                   clock_text(p.eta_s).c_str(), what.c_str());
      std::fflush(stderr);
    } else {
      const int decile = static_cast<int>(frac * 10);
      if (decile > last_decile_) {
        last_decile_ = decile;
        std::fprintf(stderr, "tune: %3d%% (%zu/%zu candidates), %s elapsed, ETA %s\n", decile * 10, p.done, p.total,
                     clock_text(p.elapsed_s).c_str(), clock_text(p.eta_s).c_str());
      }
    }
  }
  void finish() {
    if (!quiet_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  bool quiet_, tty_;
  int last_decile_ = 0;
};

// Fails before any timing when the cache cannot be written where it is asked to be (the save at
// the end goes through PATH.tmp and a rename in the same folder).
void check_writable(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path probe = fs::path(path).string() + ".probe-" + std::to_string(getpid());
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f)
    throw io_error(path + ": cannot write the tuning cache there (" + std::strerror(errno) +
                   "); nothing was tuned. Pass --cache with a writable file");
  std::fclose(f);
  fs::remove(probe, ec);
}

int run_tune(const TuneCliOptions& o) {
  if (o.model.empty()) throw invalid_input("qrt tune: give the MODEL to tune (a Hugging Face folder or a .gguf file)");
  const auto ck = open_checkpoint(o.model);
  // The layers `qrt run` plans on this device (resolve_setup): every quantized linear, the
  // quantized tied head, and on a GPU the fused q/k/v and gate/up groups the engine runs.
  SetupRequest request;
  request.device = o.device;
  if (!o.cache_path.empty()) request.cli.tuning_cache_path = o.cache_path;
  request.cli.use_tuning_cache = false;  // read below for writing, corrupt-file handling included
  const ResolvedSetup setup = resolve_setup(*ck, request);
  const DeviceInfo& device = setup.device;
  std::vector<LayerSpec> layers;
  for (const auto& p : setup.plan->layers) layers.push_back(p.layer);
  if (layers.empty()) {
    std::printf("%s has no quantized linear layers: nothing to tune\n", o.model.c_str());
    return 0;
  }
  for (const auto& p : setup.plan->fused) layers.push_back(p.layer);
  for (auto m : o.batch)
    if (m < 1) throw invalid_input(fmt::format("--batch: {} is not a row count >= 1", m));
  for (const auto& b : o.backends) {
    std::string why;
    const std::string name = backend_alias(b, &why);
    if (name.empty() || name == "auto") throw invalid_input("--backends: " + (why.empty() ? "'auto' is not a backend" : why));
  }
  std::vector<std::string> backends;
  for (const auto& b : o.backends) backends.push_back(backend_alias(b, nullptr));

  const std::string path = tuning_cache_file(setup.runtime);
  if (const std::string why = TuningCache::why_not_replaceable(path); !why.empty())
    throw invalid_input(why + "; nothing was tuned. Pass --cache with a tuning cache or a new file");
  check_writable(path);
  TuningCache cache = TuningCache::load(path, device, o.ignore_bad);
  for (const auto& w : cache.warnings()) std::fprintf(stderr, "warning: tuning cache: %s\n", escape_message(w).c_str());

  ThreadPool pool(o.threads);
  TuneOptions opt;
  opt.batches = o.batch;
  opt.budget_seconds = o.budget;
  opt.repeats = o.repeats;
  opt.warmup = o.warmup;
  opt.backends = backends;
  opt.retune = o.retune;
  opt.pool = &pool;
  ProgressBar bar(o.quiet);
  opt.progress = [&](const TuneProgress& p) { bar.update(p); };

  std::printf("tuning %s on %s (%s), M in {", o.model.c_str(), device.describe().c_str(),
              count_of(pool.size(), "thread").c_str());
  for (size_t i = 0; i < o.batch.size(); ++i) std::printf("%s%lld", i ? "," : "", static_cast<long long>(o.batch[i]));
  std::printf("}\n");
  std::fflush(stdout);
  const TuneResult r = tune_layers(
      layers,
      [&](const LayerSpec& s) {
        return load_layer_or_fused(s.name, [&](const std::string& n) { return load_quantized_linear(*ck, n); });
      },
      device, cache, opt);
  bar.finish();
  cache.save(path);

  if (!r.rows.empty()) {
    std::printf("\n%-12s %-12s %-22s %6s  %10s  %10s  %7s  %s\n", "backend", "K x N", "weight", "M", "default us",
                "tuned us", "gain", "tuned params");
    for (const auto& row : r.rows) {
      const std::string gain = row.default_us > 0 ? fmt::format("{:.2f}x", row.default_us / row.best_us) : "-";
      std::printf("%-12s %-12s %-22s %6lld  %10.1f  %10.1f  %7s  %s\n", row.backend.c_str(),
                  fmt::format("{}x{}", row.layer.in_features, row.layer.out_features).c_str(),
                  row.layer.describe().c_str(), static_cast<long long>(row.m), row.default_us, row.best_us,
                  gain.c_str(), row.best.to_json().c_str());
    }
  }
  // Rejected candidates can be many (a tile whose split-K partials exceed the workspace at large M,
  // say): the first few, then a count, unless --verbose.
  const size_t shown = o.verbose ? r.notes.size() : std::min<size_t>(r.notes.size(), 8);
  for (size_t i = 0; i < shown; ++i) std::printf("note: %s\n", r.notes[i].c_str());
  if (shown < r.notes.size()) std::printf("note: ... and %zu more (--verbose lists them)\n", r.notes.size() - shown);
  std::printf("\n%zu distinct shapes, %zu candidates timed, %zu rejected, %zu entries written, %zu already cached%s\n",
              r.shapes, r.timed, r.rejected, r.written, r.skipped_cached,
              r.budget_exhausted ? " (time budget spent)" : "");
  std::printf("tuning cache: %s (%zu entries)\n", path.c_str(), cache.size());
  return 0;
}

const CommandRegistrar registrar(
    "tune", "Time the kernel parameters of each backend per layer shape and M, and remember the fastest",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<TuneCliOptions>();
      add_model_argument(app, o->model, "");
      app.add_option("--device", o->device, "cpu or cuda[:N] (the device whose backends are timed)")->capture_default_str();
      app.add_option("--batch", o->batch, "row counts M to tune, comma separated")->delimiter(',')->capture_default_str();
      app.add_option("--cache", o->cache_path, "tuning cache file (default: ~/.cache/qrt/tuning.json)");
      app.add_option("--budget", o->budget, "stop starting new candidates after this many seconds (0 = no limit)")
          ->check(CLI::Validator(
              [](const std::string& v) {
                return std::strtod(v.c_str(), nullptr) >= 0 ? std::string() : "expected seconds >= 0, got " + v;
              },
              "SECONDS"));
      app.add_option("--backends", o->backends, "only these backends, comma separated")->delimiter(',');
      app.add_option("-t,--threads", o->threads, "CPU threads (default: the CPUs this process may use, from its affinity mask)")
          ->check(CLI::Range(0, ThreadPool::kMaxThreads));
      app.add_option("--repeats", o->repeats, "timed runs per candidate (the median is kept)")
          ->check(CLI::Range(1, 1000))
          ->capture_default_str();
      app.add_option("--warmup", o->warmup, "untimed runs per candidate")->check(CLI::Range(0, 1000))->capture_default_str();
      app.add_flag("--retune", o->retune, "time again what the cache already holds");
      app.add_flag("--ignore-bad-tuning-cache", o->ignore_bad, "start from an empty cache when the file is corrupt");
      app.add_flag("-q,--quiet", o->quiet, "no progress bar");
      app.add_flag("-v,--verbose", o->verbose, "list every rejected candidate");
      return [o] { return run_tune(*o); };
    });

}  // namespace
}  // namespace qrt::cli
