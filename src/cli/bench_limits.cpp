// `qrt bench` limits checked before anything is allocated or timed: the timing bounds must be
// finite numbers of seconds, every size a user gives is multiplied with checked arithmetic, and the
// buffers of the largest shape must fit in the memory the machine has.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "cli/bench_common.h"
#include "core/host_memory.h"
#include "qrt/error.h"

namespace qrt::cli {

namespace {
constexpr double kMaxSecondsPerPoint = 3600;   // --min-time / --max-time: one hour per point at most
constexpr int64_t kMaxDimension = int64_t{1} << 31;
}  // namespace

void check_bench_options(const BenchOptions& o) {
  auto seconds = [](const char* flag, double v, bool zero_ok) {
    if (!std::isfinite(v) || v < 0 || (!zero_ok && v == 0) || v > kMaxSecondsPerPoint)
      throw invalid_input(fmt::format("{} {}: expected a number of seconds in {}{}, {}]", flag, v, zero_ok ? "[" : "(",
                                      0, kMaxSecondsPerPoint));
  };
  seconds("--min-time", o.min_seconds, true);
  seconds("--max-time", o.max_seconds, false);
  for (int64_t m : o.batch)
    if (m <= 0 || m > kMaxDimension)
      throw invalid_input(fmt::format("--batch {}: expected a row count in [1, 2^31]", m));
  if (o.group_size == 0 || o.group_size < -1)
    throw invalid_input(fmt::format("--group-size {}: expected -1 (per row) or a positive size", o.group_size));
}

void check_bench_memory(const BenchOptions& o, const std::vector<Shape>& shapes) {
  const int64_t max_m = o.batch.empty() ? 1 : *std::max_element(o.batch.begin(), o.batch.end());
  for (const Shape& s : shapes) {
    const int64_t k = s.spec.in_features, n = s.spec.out_features;
    const std::string what = fmt::format("--shape {} at M = {}", s.label, max_m);
    if (k > kMaxDimension || n > kMaxDimension)
      throw invalid_input(fmt::format("--shape {}: K and N must each be at most 2^31", s.label));
    // What one shape holds at once: the canonical weight (one byte per code, float scales and
    // zeros), the backend's packed copy (at most the canonical size), the dense baseline (float
    // dequantized weight and its packed copy), and the activations x [M, K] and y [M, N].
    const int64_t codes = checked_product({k, n}, what);
    const int64_t groups = checked_product({n, std::max<int64_t>(1, s.spec.num_groups())}, what);
    const int64_t weight = checked_sum(codes, checked_product({groups, 8}, what), what);
    const int64_t dense = o.dense ? checked_product({codes, 8}, what) : 0;
    const int64_t activations = checked_product({max_m, checked_sum(k, n, what), 4}, what);
    const int64_t total = checked_sum(checked_sum(checked_product({weight, 2}, what), dense, what), activations, what);
    check_host_memory(total, fmt::format("qrt bench: {} (weights, activations{})", what,
                                         o.dense ? ", fp32 dense baseline" : ""));
  }
}

}  // namespace qrt::cli
