// libFuzzer target: the two JSON files qrt reads besides checkpoints. The first byte picks which:
//   'r'  a runtime config file (--config, docs/CONFIG.md)
//   't'  a tuning cache file (docs/CONFIG.md "Tuning cache")
// Any input must parse or throw qrt::Error. A tuning cache that loads must save and load back to
// the same file (a fixed point) with the same number of entries; loading with ignore_errors never
// throws. Seeds: tests/data/fuzz_seeds/fuzz_runtime_files/.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_util.h"
#include "qrt/backend.h"
#include "qrt/device.h"
#include "qrt/error.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"
#include "qrt/tuning_cache.h"

namespace {

// A private folder whose name has the same length on every run: file paths reach messages the
// target formats, and a path whose length varied with the process id would change how often
// those loops run, so the coverage libFuzzer sees, so which inputs a fixed-seed run executes.
// Removed when the fuzzer exits normally.
struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "qrt_fuzz_runtime_files_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::perror("fuzz_runtime_files: mkdtemp");
      std::abort();
    }
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string scratch_path(const char* name) {
  static const ScratchDir dir;
  return (dir.path / name).string();
}

const char* const kLayerNames[] = {"model.layers.0.self_attn.q_proj", "model.layers.31.mlp.down_proj", "lm_head", ""};

// A config file; then the same text read as a HIGGS tune_metadata object (module -> parameters),
// which must never throw for the checkpoint's content; then every override matched against names.
void fuzz_runtime_config(const std::string& text) {
  qrt::RuntimeConfig c;
  try {
    c = qrt::RuntimeConfig::from_json_text(text, "fuzz/config.json", qrt::RuntimeConfig{});
  } catch (const qrt::Error&) {
  }
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_object()) {
    std::map<std::string, std::string> metadata;
    for (const auto& [k, v] : j.items()) metadata[k] = v.dump();
    (void)c.apply_checkpoint_tune_metadata(metadata);
  }
  for (const char* name : kLayerNames) {
    (void)c.override_for(name);
    (void)c.checkpoint_params_for(name);
  }
  for (const auto& o : c.overrides) (void)qrt::glob_match(o.pattern, text);
}

void fuzz_tuning_cache(const std::string& text) {
  static const qrt::DeviceInfo device = qrt::probe_cpu();
  const qrt::BackendRegistry& registry = qrt::BackendRegistry::global();
  const std::string in = scratch_path("in.json");
  std::ofstream(in, std::ios::binary) << text;
  // ignore_errors: a corrupt file is an empty cache with a warning, never an exception.
  const qrt::TuningCache lenient = qrt::TuningCache::load(in, device, /*ignore_errors=*/true, &registry);
  const qrt::TuningCache cache = qrt::TuningCache::load(in, device, false, &registry);
  if (cache.size() != lenient.size()) std::abort();
  // From here on nothing may throw: what qrt loaded, qrt must save and load back unchanged.
  try {
    const std::string once = scratch_path("once.json");
    cache.save(once);
    const qrt::TuningCache back = qrt::TuningCache::load(once, device, false, &registry);
    if (back.size() != cache.size()) std::abort();
    const std::string twice = scratch_path("twice.json");
    back.save(twice);
    if (qrt::fuzz::read_text(once) != qrt::fuzz::read_text(twice)) std::abort();
  } catch (const qrt::Error& e) {
    std::fprintf(stderr, "a loaded tuning cache did not save and load back: %s\n", e.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (1 << 16)) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0]) {
      case 'r':
        fuzz_runtime_config(rest);
        break;
      case 't':
        fuzz_tuning_cache(rest);
        break;
      default:
        break;
    }
  } catch (const qrt::Error& e) {
    qrt::fuzz::note_rejected(e);
  }
  return 0;
}
