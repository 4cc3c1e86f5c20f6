// `qrt bench`: every option checked before anything is timed (a typo found after minutes of
// timing is minutes lost), and `--json -`.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "cli/bench_common.h"
#include "qrt/error.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"

namespace qrt::cli {
namespace {

int g_saved_stdout = -1;  // the real standard output while the table goes to stderr (--json -)

// The file must be creatable (or writable) where it is asked to be; nothing is created here.
void check_output_path(const std::string& path, const std::string& flag) {
  if (path.empty() || path == "-") return;
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw invalid_input(flag + " " + path + ": is a folder; give a file name");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) throw invalid_input(flag + " " + path + ": no folder " + dir.string());
  const bool exists = fs::exists(path, ec);
  if (access(exists ? path.c_str() : dir.c_str(), W_OK) != 0)
    throw invalid_input(flag + " " + path + ": cannot write there (" + std::strerror(errno) + ")");
}

}  // namespace

BenchOptions checked_bench_options(const BenchOptions& given) {
  BenchOptions o = given;
  if (o.model.empty() && o.shapes.empty()) throw invalid_input("qrt bench: give a MODEL or at least one --shape KxN");
  check_bench_options(o);   // finite, bounded times; sizes in range (bench_limits.cpp)
  if (o.max_seconds < o.min_seconds)
    throw invalid_input("--max-time " + std::to_string(o.max_seconds) + ": expected seconds >= --min-time " +
                        std::to_string(o.min_seconds));
  const bool cpu = o.device == "cpu";
  // Backend names as transformers / GPTQModel / vLLM spell them map onto qrt's (docs/CONFIG.md).
  for (std::string& name : o.backends) {
    if (name == "plan") {
      if (cpu)
        throw invalid_input("--backends plan: the CPU sweep times backends one by one; the layers' plan is timed "
                            "with --device cuda (qrt plan shows the CPU plan)");
      continue;
    }
    std::string why;
    const std::string mapped = backend_alias(name, &why);
    if (mapped.empty()) throw invalid_input("--backends: " + why);
    if (mapped == "auto") throw invalid_input("--backends: 'auto' is not a backend; name them (qrt plan lists them)");
    name = mapped;
  }
  // The weights of random --shape layers: HIGGS when asked, or when every named backend runs only
  // rotated codebooks (`--backends cuda_higgs` times HIGGS weights without another flag).
  if (o.format.empty()) {
    bool higgs_only = o.backends_given;
    int named = 0;
    for (const std::string& name : o.backends) {
      if (name == "plan") continue;  // the plan of whatever weight the shape has
      ++named;
      const Backend* b = BackendRegistry::global().find(name);
      const auto& enc = b ? b->capability().encodings : std::vector<WeightEncoding>{};
      higgs_only = higgs_only && enc.size() == 1 && enc[0] == WeightEncoding::RotatedCodebook;
    }
    o.format = higgs_only && named > 0 ? "higgs" : "int";
  }
  if (o.format != "int" && o.format != "higgs")
    throw invalid_input("--format '" + o.format + "': expected int or higgs");
  if (o.format == "higgs") {
    if (o.bits < 1 || o.bits > 4 || (o.p != 1 && o.p != 2))
      throw invalid_input(fmt::format("--format higgs: --bits {} --p {}: the HIGGS grids are 1..4 bits, p 1 or 2",
                                      o.bits, o.p));
    if (o.zero != "sym") throw invalid_input("--zero " + o.zero + ": HIGGS weights have no zero points");
    const int h = o.hadamard_size;
    if (h != 0 && (h < 2 || (h & (h - 1)) != 0))
      throw invalid_input(fmt::format("--hadamard-size {}: expected a power of 2 (at least 2)", h));
    if (o.group_size > 0 && o.group_size % o.p != 0)
      throw invalid_input(fmt::format("--group-size {}: not a multiple of --p {}", o.group_size, o.p));
  } else if (o.p != 2 || o.hadamard_size != 0) {
    throw invalid_input("--p and --hadamard-size apply to --format higgs");
  }
  if (cpu && !o.tuning_cache.empty())
    throw invalid_input("--tuning-cache: the CPU sweep times backends, not plans; it applies with --device cuda");
  check_output_path(o.json_path, "--json");
  check_output_path(o.plot_path, "--plot");
  if (o.json_path == "-" && g_saved_stdout < 0) {
    std::fflush(stdout);
    g_saved_stdout = dup(1);
    if (g_saved_stdout < 0 || dup2(2, 1) < 0) throw io_error(std::string("--json -: ") + std::strerror(errno));
  }
  return o;
}

void restore_stdout_for_json() {
  if (g_saved_stdout < 0) return;
  std::fflush(stdout);
  dup2(g_saved_stdout, 1);
  close(g_saved_stdout);
  g_saved_stdout = -1;
}

}  // namespace qrt::cli
