// `qrt bench`: batch-size sweep of quantized-linear backends on given shapes or on every distinct
// linear shape of a checkpoint. For each backend and M: median time, GFLOP/s, weight GB/s, the ratio
// to a memory-read floor measured in the same run, and the speed-up over an unquantized fp32 GEMM
// on the same device. Optional JSON rows and an SVG plot of throughput vs batch.
//
// Honesty rules: weights are rotated through copies larger than twice the last-level cache, so
// M = 1 reads them from memory as a real decode step would; "weight bytes" are the checkpoint bytes
// of the quantized layer (codes at `bits`, fp16 scales and zeros), the same for every backend,
// never a backend's own (possibly larger) packing.
#include <algorithm>
#include <chrono>
#include <ctime>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backends/cpu_simd/cpu_simd_kernels.h"
#include "cli/bench_common.h"
#include "cli/command.h"
#include "cli/model_argument.h"
#include "model/fused_projections.h"
#include "quant/higgs_quantize.h"
#include "qrt/backend.h"
#include "qrt/checkpoint.h"
#include "qrt/device.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/plan.h"
#include "qrt/plural.h"
#include "qrt/setup.h"
#include "qrt/thread_pool.h"

namespace qrt::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// --cpu-clock: process CPU seconds / threads instead of wall time, for kernel work on a machine
// shared with other jobs (time spent descheduled is not counted; cache and memory contention are).
bool g_cpu_clock = false;
int g_threads = 1;
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int64_t last_level_cache_bytes() {
  for (int index = 4; index >= 0; --index) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string s;
    if (f >> s && !s.empty()) {
      int64_t v = std::atoll(s.c_str());
      if (s.back() == 'K') v <<= 10;
      else if (s.back() == 'M') v <<= 20;
      if (v > 0) return v;
    }
  }
  return int64_t{32} << 20;
}

// Median of repeated calls of fn(rep): one warm-up (kept as the only sample when it alone is longer
// than max_seconds / 2), then repeats until min_seconds and 5 samples, or max_seconds.
double median_us(const std::function<void(int)>& fn, double min_seconds, double max_seconds, int* reps_out) {
  std::vector<double> samples;
  auto t = Clock::now();
  double c0 = cpu_seconds();
  fn(0);
  const double first = seconds_since(t);
  if (first > max_seconds / 2) samples.push_back(first);
  const auto start = Clock::now();
  for (int rep = 1; samples.empty() || (samples.size() < 5 && seconds_since(start) < max_seconds) ||
                    seconds_since(start) < min_seconds;
       ++rep) {
    t = Clock::now();
    c0 = cpu_seconds();
    fn(rep);
    samples.push_back(g_cpu_clock ? (cpu_seconds() - c0) / g_threads : seconds_since(t));
    if (seconds_since(start) > max_seconds) break;
  }
  std::sort(samples.begin(), samples.end());
  *reps_out = static_cast<int>(samples.size());
  const size_t h = samples.size() / 2;
  const double med = samples.size() % 2 ? samples[h] : 0.5 * (samples[h - 1] + samples[h]);
  return med * 1e6;
}

// Read bandwidth with every thread of the pool: each streams its slice of a buffer far larger than
// the last-level cache; best of several passes.
double measure_read_gbps(ThreadPool& pool, int64_t bytes) {
  // 2 MiB-aligned and marked for transparent huge pages, like cpu_simd's packed weights: the floor
  // is the best streaming rate, not one slowed by a TLB miss every 4 KiB.
  const int64_t words = bytes / 8;
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t rounded = (static_cast<size_t>(words) * 8 + kHuge - 1) / kHuge * kHuge;
  std::unique_ptr<uint64_t, void (*)(void*)> mem(static_cast<uint64_t*>(std::aligned_alloc(kHuge, rounded)), std::free);
  if (!mem) throw Error(ErrorKind::OutOfMemory, "qrt bench: cannot allocate the bandwidth buffer");
#ifdef MADV_HUGEPAGE
  madvise(mem.get(), rounded, MADV_HUGEPAGE);
#endif
  uint64_t* buf = mem.get();
  pool.parallel_for(words, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[i] = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
  });
  std::vector<uint64_t> sink(64 * 8, 0);
  double best = 0;
  for (int pass = 0; pass < 6; ++pass) {
    const auto t = Clock::now();
    const double c0 = cpu_seconds();
    pool.parallel_for(words, [&](int thread, int64_t b, int64_t e) {
      uint64_t acc[8] = {};
      const uint64_t* p = buf;
      int64_t i = b;
      for (; i + 8 <= e; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] ^= p[i + j];
      for (; i < e; ++i) acc[0] ^= p[i];
      for (int j = 0; j < 8; ++j) sink[(thread % 64) * 8 + j] ^= acc[j];
    });
    const double s = g_cpu_clock ? (cpu_seconds() - c0) / pool.size() : seconds_since(t);
    best = std::max(best, static_cast<double>(words * 8) / s / 1e9);
  }
  volatile uint64_t keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace

// Checkpoint bytes of a quantized layer: codes at `bits`, fp16 scales, integer zeros at `bits`
// or fp16 float zeros; fp8: one byte per weight and fp32 block scales.
double logical_weight_bytes(const LayerSpec& s) {
  const double nk = static_cast<double>(s.in_features) * static_cast<double>(s.out_features);
  if (s.encoding == WeightEncoding::Fp8E4M3) {
    const double blocks = std::ceil(static_cast<double>(s.out_features) / std::max(1, s.scale_block_n)) *
                          std::ceil(static_cast<double>(s.in_features) / std::max(1, s.scale_block_k));
    return nk + 4 * blocks;
  }
  const double groups = static_cast<double>(s.out_features) * static_cast<double>(std::max<int64_t>(1, s.num_groups()));
  double b = nk * s.bits / 8.0 + 2 * groups;
  if (s.zero_kind == ZeroKind::Integer) b += groups * s.bits / 8.0;
  if (s.zero_kind == ZeroKind::Float) b += 2 * groups;
  return b;
}

QuantizedWeight random_weight(const LayerSpec& spec, uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedWeight w;
  w.spec = spec;
  const int64_t k = spec.in_features, n = spec.out_features;
  w.codes.resize(static_cast<size_t>(k * n));
  std::uniform_real_distribution<float> scale(0.005f, 0.02f);
  if (spec.encoding == WeightEncoding::RotatedCodebook) {
    // One code per grid vector (its p columns share it), fp16-exact group scales.
    const int p = spec.codebook_dim;
    const uint32_t mask = (1u << (spec.bits * p)) - 1;
    for (int64_t i = 0; i < k * n; i += p) {
      const auto c = static_cast<uint8_t>(rng() & mask);
      for (int j = 0; j < p; ++j) w.codes[static_cast<size_t>(i + j)] = c;
    }
    w.scales.resize(static_cast<size_t>(n * std::max<int64_t>(1, spec.num_groups())));
    for (auto& s : w.scales) s = fp16_to_f32(f32_to_fp16(scale(rng)));
    return w;
  }
  if (spec.encoding == WeightEncoding::Fp8E4M3) {
    for (auto& c : w.codes) c = static_cast<uint8_t>(rng() & 0x7E);
    w.scales.resize(static_cast<size_t>(((n + spec.scale_block_n - 1) / spec.scale_block_n) *
                                        ((k + spec.scale_block_k - 1) / spec.scale_block_k)));
    for (auto& s : w.scales) s = scale(rng);
    return w;
  }
  const uint32_t mask = (1u << spec.bits) - 1;
  for (auto& c : w.codes) c = static_cast<uint8_t>(rng() & mask);
  const int64_t groups = std::max<int64_t>(1, spec.num_groups());
  w.scales.resize(static_cast<size_t>(n * groups));
  // fp16-exact scales, as every GPTQ/AWQ/GGUF checkpoint stores them.
  for (auto& s : w.scales) s = fp16_to_f32(f32_to_fp16(scale(rng)));
  if (spec.zero_kind == ZeroKind::Integer) {
    w.zeros.resize(w.scales.size());
    for (auto& z : w.zeros) z = static_cast<float>(rng() & mask);
  } else if (spec.zero_kind == ZeroKind::Float) {
    w.zeros.resize(w.scales.size());
    for (size_t i = 0; i < w.zeros.size(); ++i) w.zeros[i] = -w.scales[i] * static_cast<float>(mask + 1) / 2;
  }
  return w;
}

LayerSpec shape_spec(const std::string& text, const BenchOptions& o) {
  const auto x = text.find('x');
  LayerSpec s;
  try {
    if (x == std::string::npos) throw std::invalid_argument(text);
    size_t used_k = 0, used_n = 0;
    s.in_features = std::stoll(text.substr(0, x), &used_k);
    s.out_features = std::stoll(text.substr(x + 1), &used_n);
    if (used_k != x || used_n != text.size() - x - 1) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    throw invalid_input("--shape '" + text + "': expected KxN, e.g. 14336x4096 (in_features x out_features)");
  }
  if (s.in_features <= 0 || s.out_features <= 0)
    throw invalid_input("--shape '" + text + "': K and N must be positive");
  s.name = "bench." + text;
  s.bits = o.bits;
  s.group_size = o.group_size;
  if (o.zero == "sym") s.zero_kind = ZeroKind::Symmetric;
  else if (o.zero == "int") s.zero_kind = ZeroKind::Integer;
  else if (o.zero == "float") s.zero_kind = ZeroKind::Float;
  else throw invalid_input("--zero '" + o.zero + "': expected sym, int or float");
  if (o.bits < 1 || o.bits > 8) throw invalid_input("--bits " + std::to_string(o.bits) + ": expected 1..8");
  s.source_format = "bench";
  if (o.format == "higgs") {
    // A HIGGS layer: the Gaussian grid qrt quantize writes, Hadamard blocks of --hadamard-size (or
    // the largest power of 2 up to 512 dividing K), groups of --group-size.
    int h = o.hadamard_size;
    if (h == 0)
      for (int c = 512; c >= 2 && h == 0; c /= 2)
        if (s.in_features % c == 0) h = c;
    if (h == 0 || s.in_features % h != 0 || s.in_features % o.p != 0)
      throw invalid_input("--shape '" + text + "': --format higgs needs K a multiple of the Hadamard block (" +
                          (h ? std::to_string(h) : std::string("an even K")) + ") and of --p");
    if (s.group_size > 0 && s.group_size < s.in_features && s.group_size % o.p != 0)
      throw invalid_input("--group-size " + std::to_string(s.group_size) + ": not a multiple of --p");
    // A group as wide as the row or wider is one scale per row (as qrt quantize writes it).
    if (s.group_size >= s.in_features) s.group_size = -1;
    s.encoding = WeightEncoding::RotatedCodebook;
    s.zero_kind = ZeroKind::Symmetric;
    s.codebook_dim = o.p;
    s.hadamard_size = h;
    s.codebook = quant::higgs_gaussian_grid(o.bits, o.p, DType::F16);
    s.source_format = "bench higgs";
  }
  return s;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Throughput vs batch: per backend, total FLOPs over total time across the benchmarked shapes.
void write_plot(const std::string& path, const std::vector<Row>& rows, const std::string& title) {
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> series;  // backend -> m -> (flop, us)
  std::vector<std::string> order;
  for (const Row& r : rows) {
    if (!series.count(r.backend)) order.push_back(r.backend);
    auto& p = series[r.backend][r.m];
    p.first += 2.0 * r.m * r.k * r.n;
    p.second += r.us;
  }
  double xmin = 1e300, xmax = 0, ymin = 1e300, ymax = 0;
  for (auto& [b, pts] : series)
    for (auto& [m, p] : pts) {
      const double g = p.first / (p.second * 1e3);
      xmin = std::min(xmin, static_cast<double>(m));
      xmax = std::max(xmax, static_cast<double>(m));
      ymin = std::min(ymin, g);
      ymax = std::max(ymax, g);
    }
  if (series.empty()) xmin = 1, xmax = 2, ymin = 1, ymax = 10;
  if (xmax <= xmin) xmax = xmin * 2;
  const double lx0 = std::log10(xmin), lx1 = std::log10(xmax);
  const double ly0 = std::floor(std::log10(std::max(ymin, 1e-6))), ly1 = std::ceil(std::log10(std::max(ymax, 1e-6)) + 1e-9);
  const double W = 760, H = 460, L = 80, R = 200, T = 50, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  auto px = [&](double m) { return L + (std::log10(m) - lx0) / (lx1 - lx0) * pw; };
  auto py = [&](double g) { return T + ph - (std::log10(g) - ly0) / std::max(1e-9, ly1 - ly0) * ph; };
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  std::ostringstream s;
  s << fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
                   "font-family=\"sans-serif\" font-size=\"12\">\n",
                   W, H);
  s << fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n", W, H);
  s << fmt::format("<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n", L + pw / 2,
                   xml_escape(title));
  // Grid and ticks: batch values on x, decades (1-2-5) on y.
  std::set<int64_t> ms;
  for (const Row& r : rows) ms.insert(r.m);
  for (int64_t m : ms) {
    const double x = px(static_cast<double>(m));
    s << fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>\n", x, T, T + ph);
    s << fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, T + ph + 18, m);
  }
  for (double d = ly0; d <= ly1 + 1e-9; d += 1)
    for (double f : {1.0, 2.0, 5.0}) {
      const double g = f * std::pow(10.0, d);
      if (std::log10(g) > ly1 + 1e-9) break;
      const double y = py(g);
      s << fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\"/>\n", L, y, L + pw, y,
                       f == 1.0 ? "#bbb" : "#eee");
      s << fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:g}</text>\n", L - 6, y + 4, g);
    }
  s << fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw, ph);
  s << fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">batch rows M (log scale)</text>\n", L + pw / 2,
                   H - 18);
  s << fmt::format("<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">"
                   "throughput, GFLOP/s (log scale)</text>\n",
                   T + ph / 2);
  for (size_t i = 0; i < order.size(); ++i) {
    const char* color = colors[i % 8];
    std::string pts;
    for (auto& [m, p] : series[order[i]])
      pts += fmt::format("{:.1f},{:.1f} ", px(static_cast<double>(m)), py(p.first / (p.second * 1e3)));
    s << fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", color, pts);
    for (auto& [m, p] : series[order[i]])
      s << fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"/>\n", px(static_cast<double>(m)),
                       py(p.first / (p.second * 1e3)), color);
    const double ly = T + 14 + 20 * static_cast<double>(i);
    s << fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                     L + pw + 14, ly, L + pw + 38, ly, color);
    s << fmt::format("<text x=\"{}\" y=\"{:.1f}\">{}</text>\n", L + pw + 44, ly + 4, xml_escape(order[i]));
  }
  s << "</svg>\n";
  std::ofstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for writing the plot");
  f << s.str();
  if (!f) throw io_error(path + ": write failed");
}

std::vector<Shape> collect_shapes(const BenchOptions& o, std::unique_ptr<Checkpoint>* ckpt_out) {
  std::vector<Shape> shapes;
  if (!o.model.empty()) {
    *ckpt_out = open_checkpoint(o.model);
    Checkpoint& ckpt = **ckpt_out;
    // One row per distinct shape and format, counting the layers that share it.
    std::map<std::string, size_t> seen;
    auto add = [&](const LayerSpec& sp) {
      const std::string key = fmt::format("{}x{} {}", sp.in_features, sp.out_features, sp.describe());
      auto [it, fresh] = seen.emplace(key, shapes.size());
      if (!fresh) {
        ++shapes[it->second].count;
        return;
      }
      shapes.push_back({sp, fmt::format("{}x{}", sp.in_features, sp.out_features), 1, sp.name});
    };
    // The layers `qrt run` plans on this device (resolve_setup): every quantized linear, the
    // quantized tied head, and on a GPU the fused q/k/v and gate/up groups the engine runs.
    SetupRequest request;
    request.device = o.device;
    request.cli.use_tuning_cache = false;
    const ResolvedSetup setup = resolve_setup(ckpt, request);
    for (const auto& p : setup.plan->layers) add(p.layer);
    if (shapes.empty()) throw invalid_input(o.model + ": no quantized linear layers to benchmark");
    for (const auto& p : setup.plan->fused) add(p.layer);
  }
  for (const auto& text : o.shapes) shapes.push_back({shape_spec(text, o), text, 1, "random"});
  return shapes;
}

QuantizedWeight shape_weight(const Shape& shape, Checkpoint* ckpt, double floor_us) {
  const LayerSpec& spec = shape.spec;
  std::printf("\n%s (K x N), %s, %s weights, %.2f MB%s; memory floor %.1f us\n", shape.label.c_str(),
              spec.describe().c_str(), shape.source == "random" ? "random" : ("from " + shape.source).c_str(),
              logical_weight_bytes(spec) / 1e6, shape.count > 1 ? fmt::format(", {} layers", shape.count).c_str() : "",
              floor_us);
  if (shape.source == "random") return random_weight(spec, 1234);
  return load_layer_or_fused(shape.source, [&](const std::string& name) { return load_quantized_linear(*ckpt, name); });
}

KernelParams bench_params(const Backend& be, const LayerSpec& spec, int64_t m, const DeviceInfo& device,
                          const std::string& params_json, std::string* why) {
  KernelParams params = be.default_params(spec, m, device);
  if (params_json.empty()) return params;
  const KernelParams merged = params.merged(KernelParams::from_json(params_json));
  const Verdict v = be.validate_params(spec, merged);
  if (v.ok) return merged;
  if (why) *why = v.reason;
  return params;
}

void check_params_accepted(const BenchOptions& o, const std::vector<std::string>& backends, const LayerSpec& spec,
                           const DeviceInfo& device) {
  if (o.params_json.empty()) return;
  KernelParams::from_json(o.params_json);  // malformed JSON: its own error
  std::string reasons;
  for (const auto& name : backends) {
    const Backend* be = BackendRegistry::global().find(name);
    if (!be || !be->built()) continue;
    const Verdict v = be->validate_params(spec, be->default_params(spec, 1, device).merged(KernelParams::from_json(o.params_json)));
    if (v.ok) return;
    reasons += fmt::format("{}{}: {}", reasons.empty() ? "" : "; ", name, v.reason);
  }
  throw invalid_input("--params " + o.params_json + ": no backend of --backends accepts them (" + reasons + ")");
}

void write_rows_json(const std::string& path, const std::vector<Row>& rows, double gbps, const std::string& device,
                     int threads) {
  nlohmann::json j;
  j["memory_read_gbps"] = gbps;
  j["device"] = device;
  j["threads"] = threads;
  j["rows"] = nlohmann::json::array();
  for (const Row& r : rows) {
    nlohmann::json row = {{"backend", r.backend}, {"m", r.m}, {"k", r.k}, {"n", r.n}, {"bits", r.bits},
                          {"group_size", r.group_size}, {"us", r.us}, {"gflops", r.gflops},
                          {"weight_gbps", r.weight_gbps}, {"floor_us", r.floor_us},
                          {"ratio_to_floor", r.us / r.floor_us},
                          {"speedup_vs_fp32", r.dense_us > 0 ? r.dense_us / r.us : 0.0}, {"reps", r.reps}};
    if (!r.params.empty()) row["params"] = r.params;
    if (r.max_rel_err >= 0) row["max_rel_err"] = r.max_rel_err;
    j["rows"].push_back(row);
  }
  if (path == "-") {
    restore_stdout_for_json();
    std::printf("%s\n", j.dump(2).c_str());
    std::fflush(stdout);
    return;
  }
  std::ofstream f(path);
  if (!f) throw io_error(path + ": cannot open for writing");
  f << j.dump(2) << "\n";
  if (!f) throw io_error(path + ": write failed");
}

namespace {

int run_bench(const BenchOptions& given) {
  const BenchOptions o = checked_bench_options(given);
  if (o.device != "cpu") return run_bench_gpu(o);
  const DeviceInfo device = probe_cpu();
  ThreadPool pool(o.threads);
  g_threads = pool.size();
  g_cpu_clock = o.cpu_clock;
  if (g_cpu_clock) std::printf("timing with process CPU time / threads (--cpu-clock), not wall time\n");
  const int64_t llc = last_level_cache_bytes();

  std::unique_ptr<Checkpoint> ckpt;
  const std::vector<Shape> shapes = collect_shapes(o, &ckpt);
  check_bench_memory(o, shapes);
  check_params_accepted(o, o.backends, shapes.front().spec, device);

  std::printf("qrt bench on %s, %s\n", device.describe().c_str(), count_of(pool.size(), "thread").c_str());
  const double gbps = measure_read_gbps(pool, std::max<int64_t>(4 * llc, int64_t{256} << 20));
  std::printf("memory read bandwidth (all threads, %lld MiB buffer): %.1f GB/s\n",
              static_cast<long long>(std::max<int64_t>(4 * llc, int64_t{256} << 20) >> 20), gbps);

  std::vector<Row> rows;
  const cpu_simd::Isa isa = best_cpu_isa();
  for (const Shape& shape : shapes) {
    const LayerSpec& spec = shape.spec;
    const int64_t K = spec.in_features, N = spec.out_features;
    const double wbytes = logical_weight_bytes(spec);
    const double floor_us = wbytes / (gbps * 1e9) * 1e6;
    QuantizedWeight weight = shape_weight(shape, ckpt.get(), floor_us);
    const int64_t max_m = *std::max_element(o.batch.begin(), o.batch.end());
    std::vector<float> x(static_cast<size_t>(max_m * K)), y(static_cast<size_t>(max_m * N));
    {
      std::mt19937 rng(7);
      std::normal_distribution<float> nd(0.f, 1.f);
      for (auto& v : x) v = nd(rng);
    }
    // Dense fp32 baseline (the dequantized weights, packed for the blocked sgemm).
    std::map<int64_t, double> dense_us;
    if (o.dense) {
      const std::vector<float> dq = dequantize_reference(weight);
      const int64_t tiles = (N + cpu_simd::kTileRows - 1) / cpu_simd::kTileRows;
      const int64_t per_copy = tiles * cpu_simd::kTileRows * K;
      const int copies = static_cast<int>(std::clamp<int64_t>(2 * llc / (per_copy * 4) + 1, 1, 8));
      std::vector<float> packed(static_cast<size_t>(per_copy * copies));
      for (int c = 0; c < copies; ++c) cpu_simd::pack_dense(dq.data(), N, K, packed.data() + c * per_copy);
      for (int64_t m : o.batch) {
        int reps = 0;
        const double us = median_us(
            [&](int rep) {
              cpu_simd::dense_sgemm(isa, &pool, packed.data() + (rep % copies) * per_copy, N, K, x.data(), m, y.data());
            },
            o.min_seconds, o.max_seconds, &reps);
        dense_us[m] = us;
        Row r{"fp32_dense", shape.label, m, K, N, 32, 0, us, 2.0 * m * K * N / (us * 1e3),
              4.0 * K * N / (us * 1e3), static_cast<double>(K * N * 4) / (gbps * 1e9) * 1e6, us, reps, "", -1};
        rows.push_back(r);
      }
    }
    std::printf("%-12s %6s %12s %10s %12s %9s %9s %5s\n", "backend", "M", "median us", "GFLOP/s", "weight GB/s",
                "x floor", "vs fp32", "reps");
    auto print_row = [&](const Row& r) {
      std::printf("%-12s %6lld %12.1f %10.2f %12.2f %9.2f %8.2fx %5d\n", r.backend.c_str(), static_cast<long long>(r.m),
                  r.us, r.gflops, r.weight_gbps, r.us / r.floor_us, r.dense_us > 0 ? r.dense_us / r.us : 0.0, r.reps);
    };
    for (const Row& r : rows)
      if (r.shape == shape.label && r.backend == "fp32_dense" && r.k == K && r.n == N) print_row(r);
    for (const std::string& name : o.backends) {
      const Backend* be = BackendRegistry::global().find(name);
      if (!be) {
        std::string all;
        for (const auto& n : BackendRegistry::global().names()) all += (all.empty() ? "" : ", ") + n;
        throw invalid_input("--backends: unknown backend '" + name + "' (known: " + all + ")");
      }
      const Verdict v = be->check(spec, device);
      if (!v.ok) {
        std::printf("%-12s skipped: %s\n", name.c_str(), v.reason.c_str());
        continue;
      }
      // One prepared copy per distinct parameter set; enough copies to exceed 2x the LLC.
      std::map<std::string, std::vector<std::unique_ptr<PreparedLinear>>> prepared;
      bool told = false;
      for (int64_t m : o.batch) {
        std::string why;
        KernelParams params = bench_params(*be, spec, m, device, o.params_json, &why);
        if (!why.empty() && !told) {
          std::printf("%-12s --params do not apply (%s): its defaults are timed\n", name.c_str(), why.c_str());
          told = true;
        }
        auto& copies = prepared[params.to_json()];
        if (copies.empty()) {
          copies.push_back(be->prepare(weight, params, device));
          const int64_t bytes = std::max<int64_t>(1, copies[0]->weight_bytes());
          const int64_t want = std::clamp<int64_t>(2 * llc / bytes + 1, 1, 8);
          while (static_cast<int64_t>(copies.size()) < want) copies.push_back(be->prepare(weight, params, device));
        }
        ActTensor xt{x.data(), DType::F32, m, K};
        ActTensor yt{y.data(), DType::F32, m, N};
        ExecContext ctx;
        ctx.pool = &pool;
        int reps = 0;
        const double us = median_us(
            [&](int rep) { copies[static_cast<size_t>(rep) % copies.size()]->forward(xt, yt, ctx); }, o.min_seconds,
            o.max_seconds, &reps);
        Row r{name, shape.label, m, K, N, spec.bits, spec.group_size, us, 2.0 * m * K * N / (us * 1e3),
              wbytes / (us * 1e3), floor_us, dense_us.count(m) ? dense_us[m] : 0.0, reps, "", -1};
        rows.push_back(r);
        print_row(r);
        std::fflush(stdout);
      }
    }
  }

  if (!o.json_path.empty()) {
    write_rows_json(o.json_path, rows, gbps, device.describe(), pool.size());
    if (o.json_path != "-") std::printf("\nwrote %s\n", o.json_path.c_str());
  }
  if (!o.plot_path.empty()) {
    std::string shapes_text;
    for (const auto& s : shapes) shapes_text += (shapes_text.empty() ? "" : ", ") + s.label;
    if (shapes_text.size() > 60) shapes_text = fmt::format("{} shapes", shapes.size());
    write_plot(o.plot_path, rows, fmt::format("qrt bench: {} ({})", shapes_text, count_of(pool.size(), "thread")));
    std::printf("wrote %s\n", o.plot_path.c_str());
  }
  return 0;
}

const CommandRegistrar registrar(
    "bench", "Time backends on layer shapes or a model's linears across batch sizes (table, JSON, SVG plot)",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<BenchOptions>();
      add_model_argument(app, o->model, "benchmarks each distinct linear shape");
      app.add_option("--shape", o->shapes, "layer shape KxN (in_features x out_features), repeatable or comma list")
          ->delimiter(',');
      app.add_option("--backends,--backend", o->backends,
                     "comma list of backends, qrt names or the transformers / GPTQModel / vLLM ones (marlin, "
                     "exllama_v2, gemm, ...; docs/CONFIG.md) (default cpu_simd,cpu_ref; on a GPU every CUDA backend "
                     "that runs the layer, and 'plan' = the layers' plan)")
          ->delimiter(',')
          ->each([o](const std::string&) { o->backends_given = true; });
      app.add_option("--device", o->device, "cpu or cuda[:N] (GPU: fp16 activations, CUDA events, L2 flushed)");
      app.add_option("--tuning-cache", o->tuning_cache,
                     "GPU: also time the plan that reads this tuning cache next to the default plan");
      app.add_option("--batch", o->batch, "comma list of row counts M (default 1,16,512)")->delimiter(',');
      app.add_option("--bits", o->bits, "bits of random --shape weights (default 4)");
      app.add_option("--group-size", o->group_size, "group size of random --shape weights, -1 = per row (default 128)");
      app.add_option("--zero", o->zero, "zero kind of random --shape weights: sym, int, float (default sym)");
      app.add_option("--format", o->format,
                     "random --shape weights: int (integer codes) or higgs (rotated codebooks); default higgs when "
                     "every --backends entry runs only HIGGS weights (cpu_higgs, cuda_higgs), else int");
      app.add_option("--p", o->p, "--format higgs: values per grid vector, 1 or 2 (default 2)");
      app.add_option("--hadamard-size", o->hadamard_size,
                     "--format higgs: Hadamard block (default: the largest power of 2 up to 512 dividing K)");
      app.add_option("-t,--threads", o->threads, "threads (default: the CPUs this process may use, from its affinity mask)")
          ->check(CLI::Range(0, ThreadPool::kMaxThreads));
      app.add_option("--min-time", o->min_seconds, "seconds of repeats per point at least (default 0.3)");
      app.add_option("--max-time", o->max_seconds, "seconds per point at most (default 8)");
      app.add_flag("--cpu-clock", o->cpu_clock, "time with process CPU time / threads (for a shared machine)");
      app.add_flag("!--no-dense", o->dense, "skip the fp32 dense baseline");
      app.add_option("--params", o->params_json, "kernel parameters as JSON, merged over each backend's defaults");
      app.add_option("--json", o->json_path,
                     "write the rows as JSON to FILE ('-': standard output, the table then goes to standard error)");
      app.add_option("--plot", o->plot_path, "write an SVG plot (throughput vs batch) to FILE");
      return [o] { return run_bench(*o); };
    });

}  // namespace
}  // namespace qrt::cli
