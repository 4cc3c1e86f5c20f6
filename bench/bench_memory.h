// Shared by the CPU benchmarks: the thread pool they run on, the last-level cache size (for sizing
// rotated working sets past it) and the all-thread memory read bandwidth measured in this process
// (the floor each benchmark prints next to its own figure).
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "qrt/thread_pool.h"

namespace qrt::bench {

inline ThreadPool& pool() {
  static ThreadPool p(0);
  return p;
}

inline int64_t llc_bytes() {
  std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index3/size");
  std::string s;
  if (f >> s && !s.empty()) {
    int64_t v = std::atoll(s.c_str());
    if (s.back() == 'K') v <<= 10;
    if (s.back() == 'M') v <<= 20;
    if (v > 0) return v;
  }
  return int64_t{32} << 20;
}

// Best-of-5 all-thread streaming read over a buffer of 4 x LLC (at least 256 MiB), in GB/s.
inline double read_gbps() {
  static const double gbps = [] {
    // Huge pages, like cpu_simd's packed weights: the floor is the best streaming rate.
    const int64_t words = std::max<int64_t>(4 * llc_bytes(), int64_t{256} << 20) / 8;
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t rounded = (static_cast<size_t>(words) * 8 + kHuge - 1) / kHuge * kHuge;
    std::unique_ptr<uint64_t, void (*)(void*)> mem(static_cast<uint64_t*>(std::aligned_alloc(kHuge, rounded)), std::free);
#ifdef MADV_HUGEPAGE
    madvise(mem.get(), rounded, MADV_HUGEPAGE);
#endif
    uint64_t* buf = mem.get();
    for (int64_t i = 0; i < words; ++i) buf[i] = static_cast<uint64_t>(i);
    double best = 0;
    std::vector<uint64_t> sink(64, 0);
    for (int pass = 0; pass < 5; ++pass) {
      const auto t = std::chrono::steady_clock::now();
      pool().parallel_for(words, [&](int th, int64_t b, int64_t e) {
        uint64_t acc[8] = {};
        int64_t i = b;
        for (; i + 8 <= e; i += 8)
          for (int j = 0; j < 8; ++j) acc[j] ^= buf[i + j];
        for (int j = 0; j < 8; ++j) sink[th % 64] ^= acc[j];
      });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      best = std::max(best, static_cast<double>(words) * 8 / s / 1e9);
    }
    benchmark::DoNotOptimize(sink.data());
    return best;
  }();
  return gbps;
}

}  // namespace qrt::bench
