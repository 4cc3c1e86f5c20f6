// Pieces of `qrt bench` shared by the CPU sweep (cmd_bench.cpp) and the GPU sweep (bench_gpu.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qrt/backend.h"
#include "qrt/checkpoint.h"
#include "qrt/device.h"
#include "qrt/quantized_weight.h"

namespace qrt::cli {

struct BenchOptions {
  std::string model;
  std::vector<std::string> shapes;
  std::vector<std::string> backends = {"cpu_simd", "cpu_ref"};
  std::vector<int64_t> batch = {1, 16, 512};
  int bits = 4;
  int group_size = 128;
  std::string zero = "sym";
  // Weights of random --shape layers: "int" (integer codes, --zero), "higgs" (rotated codebooks:
  // the Gaussian grid of --bits and --p, Hadamard blocks of --hadamard-size); "" = higgs when every
  // backend of --backends runs only HIGGS weights (cpu_higgs, cuda_higgs), else int.
  std::string format;
  int p = 2;                  // --format higgs: values per grid vector (1 or 2)
  int hadamard_size = 0;      // --format higgs: 0 = the largest power of 2 up to 512 dividing K
  int threads = 0;
  double min_seconds = 0.3;
  double max_seconds = 8.0;
  bool dense = true;
  bool cpu_clock = false;
  std::string json_path, plot_path;
  std::string params_json;  // merged over each backend's defaults (A/B of kernel parameters)
  bool backends_given = false;  // --backends on the command line (else the device's default list)
  std::string device = "cpu";   // cpu or cuda[:N]
  std::string tuning_cache;     // GPU sweep: also time the plan with this cache against the default plan
};

struct Row {
  std::string backend, shape;
  int64_t m = 0, k = 0, n = 0;
  int bits = 0, group_size = 0;
  double us = 0, gflops = 0, weight_gbps = 0, floor_us = 0, dense_us = 0;
  int reps = 0;
  std::string params;     // kernel parameters used (JSON), or the plan's backends per M
  double max_rel_err = -1;  // output vs cpu_ref where it was checked (-1: not checked)
};

struct Shape {
  LayerSpec spec;
  std::string label;     // "14336x4096"
  int count = 1;         // layers of the model with this shape
  std::string source;    // layer name the weights came from, or "random"
};

// Checkpoint bytes of a quantized layer (the same for every backend; the floor is bytes / bandwidth).
double logical_weight_bytes(const LayerSpec& s);
// Seeded random weights of a --shape layer (fp16-exact scales, as checkpoints store them).
QuantizedWeight random_weight(const LayerSpec& spec, uint32_t seed);
// "KxN" of --shape with --bits/--group-size/--zero (or, --format higgs, --p/--hadamard-size) of the
// options.
LayerSpec shape_spec(const std::string& text, const BenchOptions& o);
// Throughput vs batch (log-log), one line per backend.
void write_plot(const std::string& path, const std::vector<Row>& rows, const std::string& title);

// The distinct quantized linear shapes of o.model (opened into *ckpt) and the --shape ones.
std::vector<Shape> collect_shapes(const BenchOptions& o, std::unique_ptr<Checkpoint>* ckpt);
// {"memory_read_gbps", "device", "threads", "rows": [...]} to `path` ("-": standard output).
void write_rows_json(const std::string& path, const std::vector<Row>& rows, double gbps, const std::string& device,
                     int threads);

// Prints the shape's header line (label, weight kind, bytes, memory floor) and returns its weights:
// seeded random ones for --shape, else the checkpoint's.
QuantizedWeight shape_weight(const Shape& shape, Checkpoint* ckpt, double floor_us);
// --params merged over a backend's defaults for M rows. A backend that rejects them runs on its
// defaults and *why says so (one --params can A/B one backend next to cpu_ref, which has none).
KernelParams bench_params(const Backend& be, const LayerSpec& spec, int64_t m, const DeviceInfo& device,
                          const std::string& params_json, std::string* why);
// Before any timing: --params that no listed backend accepts are an error (a typo is never ignored).
void check_params_accepted(const BenchOptions& o, const std::vector<std::string>& backends, const LayerSpec& spec,
                           const DeviceInfo& device);

// Before anything is allocated or timed: --min-time / --max-time finite and bounded, --batch and
// --group-size in range (bench_limits.cpp).
void check_bench_options(const BenchOptions& o);
// Every size multiplied with overflow checks, and the largest buffers of each shape compared with
// the host memory available; throws naming the shape and how much it needs.
void check_bench_memory(const BenchOptions& o, const std::vector<Shape>& shapes);
// Every option checked before anything is timed; backend aliases mapped to qrt names. With
// `--json -` the table goes to standard error from here on, so that standard output carries the
// JSON alone (write_rows_json("-") puts standard output back first).
BenchOptions checked_bench_options(const BenchOptions& o);
void restore_stdout_for_json();

// The GPU sweep (`--device cuda[:N]`); throws qrt::Error in a build without CUDA.
int run_bench_gpu(const BenchOptions& o);

}  // namespace qrt::cli
