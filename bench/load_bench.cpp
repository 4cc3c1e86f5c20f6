// How long a model takes from its checkpoint to the first token's readiness, in the three steps
// `qrt run` takes: reading the checkpoint's metadata and planning (resolve_setup), load_model
// (tensors decoded into the model's weights), make_engine (every planned kernel prepared: repacks,
// uploads on a GPU). The floor, timed in the same run: reading the checkpoint's tensor files
// once into memory (the page cache warmed by one read before, so that it is the copy, not the
// disk, that is timed).
//   ./load_bench MODEL [DEVICE] [--reps N] [--json FILE]
//   DEVICE: cpu (default), cuda:0 or auto. Prints one line per step and repetition, then the
//   medians and load / floor; --json writes the medians (seconds) for scripts/gpu-check.sh.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qrt/checkpoint.h"
#include "qrt/model.h"
#include "qrt/setup.h"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// The tensor files of a checkpoint: a GGUF file itself, or a folder's *.safetensors.
std::vector<std::filesystem::path> tensor_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path());
  } else {
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Reads every file once into a reused 64 MiB buffer; returns the bytes read.
uint64_t read_all(const std::vector<std::filesystem::path>& files) {
  std::vector<char> buf(64u << 20);
  uint64_t total = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      total += static_cast<uint64_t>(in.gcount());
    }
  }
  return total;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qrt;
  std::string model, device = "cpu", json_path;
  int reps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (model.empty()) {
      model = a;
    } else {
      device = a;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: load_bench MODEL [cpu|cuda:N|auto] [--reps N] [--json FILE]\n");
    return 2;
  }
  try {
    const std::string path = resolve_model_path(model);
    const auto files = tensor_files(path);
    read_all(files);  // warm the page cache
    std::vector<double> floor_s, setup_s, load_s, build_s;
    uint64_t bytes = 0;
    for (int r = 0; r < reps; ++r) {
      auto t = clock_type::now();
      bytes = read_all(files);
      floor_s.push_back(seconds_since(t));

      t = clock_type::now();
      auto ck = open_checkpoint(path);
      SetupRequest req;
      req.device = device;
      req.cli.max_input_length = 512;
      req.cli.max_new_tokens = 128;
      const ResolvedSetup setup = resolve_setup(*ck, req);
      setup_s.push_back(seconds_since(t));

      t = clock_type::now();
      auto weights = load_model(*ck);
      load_s.push_back(seconds_since(t));

      t = clock_type::now();
      EngineOptions eo = setup.engine_options();
      eo.log = [](const std::string& m) { std::fprintf(stderr, "qrt: %s\n", m.c_str()); };  // where the build went
      auto engine = make_engine(weights, eo);
      build_s.push_back(seconds_since(t));
      std::printf("rep %d: read %.2f s, setup %.2f s, load_model %.2f s, make_engine (%s) %.2f s\n", r + 1,
                  floor_s.back(), setup_s.back(), load_s.back(), engine->device_name().c_str(), build_s.back());
      std::fflush(stdout);
    }
    const double fl = median(floor_s), ld = median(load_s), bd = median(build_s), st = median(setup_s);
    std::printf("%s on %s: %.2f GB of tensor files\n", path.c_str(), device.c_str(), bytes / 1e9);
    std::printf("median: read (floor) %.2f s (%.1f GB/s), setup %.2f s, load_model %.2f s (%.1f x the floor), "
                "make_engine %.2f s; from checkpoint to engine %.2f s\n",
                fl, bytes / 1e9 / fl, st, ld, ld / fl, bd, st + ld + bd);
    if (!json_path.empty()) {
      nlohmann::json j = {{"model", path},          {"device", device},  {"tensor_bytes", bytes},
                          {"reps", reps},           {"read_floor_s", fl}, {"setup_s", st},
                          {"load_model_s", ld},     {"make_engine_s", bd}, {"checkpoint_to_engine_s", st + ld + bd}};
      std::ofstream(json_path) << j.dump(1) << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "load_bench: %s\n", e.what());
    return 1;
  }
}
