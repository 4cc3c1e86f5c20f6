// The tuning cache: the fastest kernel parameters found by `qrt tune`, persisted as JSON and read
// by plans (ParamSource::Tuned). An entry is keyed by the device identity (DeviceInfo::cache_key:
// name, compute capability or CPU ISA, SM or core count, driver/runtime), the backend and its
// kernel_version, the layer shape and weight kind (K, N, bits, group size, zero kind, act-order)
// and the M bucket (the row count it was timed at). An entry for another device or for an older
// kernel version is kept in the file but never used; loading reports each kind once.
//
// File format (docs/CONFIG.md): {"format": "qrt-tuning-cache", "version": 1, "entries": [
//   {"device": "...", "backend": "cpu_simd", "kernel_version": 1, "k": 576, "n": 1536,
//    "bits": 4, "group_size": 32, "weight": "int asym", "m": 16, "params": {...}, "time_us": 41.5}]}
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qrt/backend.h"

namespace qrt {

class BackendRegistry;
class ThreadPool;

struct TuningKey {
  std::string device;        // DeviceInfo::cache_key()
  std::string backend;
  int kernel_version = 1;
  int64_t k = 0, n = 0;
  int bits = 0;
  int group_size = -1;
  std::string weight;        // tuning_weight_kind(layer): "int sym", "int asym act-order", "fp8 block 128x128"
  int64_t m = 1;             // M bucket: the row count the entry was timed at
  std::string to_string() const;
  bool operator<(const TuningKey& o) const { return to_string() < o.to_string(); }
};

struct TuningEntry {
  TuningKey key;
  KernelParams params;
  double time_us = 0;        // median time of the winner (informational)
};

// The part of a layer's description that is in the key besides K, N, bits, group size.
std::string tuning_weight_kind(const LayerSpec& layer);
TuningKey make_tuning_key(const DeviceInfo& device, const Backend& backend, const LayerSpec& layer, int64_t m);

class TuningCache {
 public:
  TuningCache() = default;
  // Reads `path` for use on `device`. A missing file is an empty cache. A corrupt file (bad JSON,
  // wrong format tag, a malformed entry) throws qrt::Error(InvalidInput) naming the file and the
  // entry, unless ignore_errors: then the cache is empty and warnings() says why. Entries for
  // other devices or older kernel versions (per `registry`) are kept for saving, never returned,
  // and counted in one warning each.
  static TuningCache load(const std::string& path, const DeviceInfo& device, bool ignore_errors = false,
                          const BackendRegistry* registry = nullptr);
  // Writes every entry (also the foreign ones) to `path`, through a temporary file and a rename.
  void save(const std::string& path) const;
  // Why `path` must not be replaced by a tuning cache, or "" when it may: it is absent, or a regular
  // file that is (or, corrupt, still carries the marker of) a qrt tuning cache. A folder, a FIFO or
  // device, or any other file (a config, a model, a text) is never overwritten, even when
  // --ignore-bad-tuning-cache asks to start from an empty cache.
  static std::string why_not_replaceable(const std::string& path);

  void put(const TuningEntry& entry);                 // replaces an entry with the same key
  const TuningEntry* find(const TuningKey& key) const; // exact key; nullptr if absent
  // Usable entries of (device, backend + kernel version, layer) at every M bucket, sorted by m.
  std::vector<const TuningEntry*> entries_for(const DeviceInfo& device, const Backend& backend,
                                              const LayerSpec& layer) const;
  size_t size() const { return entries_.size(); }
  const std::vector<std::string>& warnings() const { return warnings_; }
  const std::string& path() const { return path_; }

 private:
  std::map<std::string, TuningEntry> entries_;   // by key string (stable order in the file)
  std::vector<std::string> warnings_;
  std::string path_;
};

// ---- the tuner (backends/tuner.cpp) ----
// ||y - ref|| / ||ref|| over ref.size() elements; infinite when y has a NaN or Inf (a poisoned,
// unwritten output). The tuner's and `qrt bench`'s check of a kernel against cpu_ref.
double relative_l2_error(const std::vector<float>& y, const std::vector<float>& ref);

struct TuneProgress {
  size_t done = 0, total = 0;   // candidates timed (or skipped) so far / planned
  std::string current;          // "cpu_simd K=576 N=1536 int4 g32 M=16"
  double elapsed_s = 0, eta_s = 0;
};

struct TuneOptions {
  std::vector<int64_t> batches = {1, 4, 16, 64};   // the M buckets to tune
  double budget_seconds = 0;     // 0 = no limit; when spent, no new candidate starts
  int warmup = 2;                // untimed runs per candidate
  int repeats = 7;               // timed runs; the median is kept
  std::vector<std::string> backends;  // empty = every built backend that passes check and has a tuning_space
  bool retune = false;           // time again what the cache already holds
  double max_relative_error = 2e-2;   // a candidate whose output is further from cpu_ref is rejected
  ThreadPool* pool = nullptr;
  // Seconds one run takes; default: the steady clock around run(). Tests inject fake timings.
  std::function<double(const std::string& backend, const KernelParams& params, int64_t m,
                       const std::function<void()>& run)> timer;
  std::function<void(const TuneProgress&)> progress;
};

struct TunedRow {
  std::string backend;
  LayerSpec layer;              // the first layer of this shape
  int64_t m = 1;
  KernelParams best;
  double best_us = 0;
  double default_us = 0;        // the backend's default_params, timed the same way (0 = not timed)
};

struct TuneResult {
  std::vector<TunedRow> rows;   // one per (shape, backend, M) tuned
  size_t shapes = 0;             // distinct (K, N, weight kind)
  size_t timed = 0;              // candidates timed
  size_t rejected = 0;           // candidates that failed to prepare or gave wrong output
  size_t written = 0;            // cache entries written
  size_t skipped_cached = 0;     // (shape, backend, M) already in the cache
  bool budget_exhausted = false;
  std::vector<std::string> notes;
};

// For each distinct layer shape and M bucket, times every candidate of each eligible backend's
// tuning_space on `device` (warm-up, median of repeats, inputs rotated through several buffers),
// checks each candidate's output against cpu_ref once, and writes the winners into `cache`.
// `load` returns the weight of a layer (called once per distinct shape). CPU devices only for
// now (CUDA backends need device buffers: noted in the result, not tuned).
TuneResult tune_layers(const std::vector<LayerSpec>& layers,
                       const std::function<QuantizedWeight(const LayerSpec&)>& load, const DeviceInfo& device,
                       TuningCache& cache, const TuneOptions& options, const BackendRegistry* registry = nullptr);

}  // namespace qrt
