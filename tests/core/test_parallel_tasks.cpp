// run_parallel_tasks: every task once, on however many threads; with several failing tasks the
// error of the lowest index, every time (what a checkpoint with several bad tensors reports).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/parallel_tasks.h"

using qrt::run_parallel_tasks;

TEST(ParallelTasks, EveryTaskRunsOnceForAnyThreadCount) {
  for (int threads : {0, 1, 2, 3, 64})
    for (int64_t n : {0, 1, 2, 5, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      run_parallel_tasks(n, threads, [&](int64_t i) { hits[static_cast<size_t>(i)]++; });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "task " << i << ", threads " << threads;
    }
}

TEST(ParallelTasks, UsesMoreThanOneThreadWhenAsked) {
  std::mutex m;
  std::vector<std::thread::id> seen;
  // Tasks that wait for a second thread to show up (up to 5 s: a machine that never starts a
  // second thread fails the check below instead of hanging).
  std::atomic<int> running{0};
  run_parallel_tasks(4, 4, [&](int64_t) {
    running++;
    for (int spin = 0; spin < 50000 && running.load() < 2; ++spin) std::this_thread::sleep_for(std::chrono::microseconds(100));
    std::lock_guard<std::mutex> lock(m);
    seen.push_back(std::this_thread::get_id());
  });
  ASSERT_EQ(seen.size(), 4u);
  bool several = false;
  for (const auto& id : seen) several |= id != seen[0];
  EXPECT_TRUE(several) << "four tasks on four threads all ran on one thread";
}

// Tasks 3, 7 and 40 throw; whichever thread meets which first, the error is task 3's. Tasks below
// the lowest failure all run; tasks above it may be skipped.
TEST(ParallelTasks, TheLowestFailingIndexIsReportedEveryTime) {
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<std::atomic<int>> hits(64);
    try {
      run_parallel_tasks(64, 4, [&](int64_t i) {
        hits[static_cast<size_t>(i)]++;
        if (i == 40 || i == 7 || i == 3) throw std::runtime_error("task " + std::to_string(i));
      });
      FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "task 3");
    }
    for (int i = 0; i <= 3; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "task " << i;
    for (auto& h : hits) EXPECT_LE(h.load(), 1);
  }
}

// Ranges: [0, n) covered once, in runs of `chunk` (the last one shorter), for n below, at and
// above a multiple of the chunk.
TEST(ParallelTasks, RangesCoverEveryIndexOnceInRunsOfTheChunk) {
  for (int64_t n : {0, 1, 15, 16, 17, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> bad_runs{0};
    qrt::run_parallel_ranges(n, 16, [&](int64_t b, int64_t e) {
      if (b % 16 != 0 || e <= b || (e - b != 16 && e != n)) bad_runs++;
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    EXPECT_EQ(bad_runs.load(), 0) << "n " << n;
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n " << n << ", index " << i;
  }
}
