// Thread pool: every index visited exactly once, repeated jobs, more threads than work.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "qrt/error.h"
#include "qrt/thread_pool.h"

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  qrt::ThreadPool pool(3);
  for (int64_t n : {1, 2, 3, 7, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    for (int rep = 0; rep < 20; ++rep)
      pool.parallel_for(n, [&](int, int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 20);
  }
}

// Many tiny jobs back to back (the spinning path: no job may be lost or run twice), then jobs with
// pauses longer than the spin window between them (workers and caller fall asleep and must wake).
TEST(ThreadPool, BackToBackAndAfterSleepingEveryJobRunsOnce) {
  for (int threads : {2, 4}) {
    qrt::ThreadPool pool(threads);
    std::atomic<int64_t> sum{0};
    for (int rep = 0; rep < 5000; ++rep)
      pool.parallel_for(threads, [&](int, int64_t b, int64_t e) { sum += e - b; });
    EXPECT_EQ(sum.load(), int64_t(5000) * threads);
    sum = 0;
    for (int rep = 0; rep < 20; ++rep) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      pool.run_on_all([&](int, int n) { sum += n; });
    }
    EXPECT_EQ(sum.load(), int64_t(20) * threads * threads);
  }
}

// More threads than kMaxThreads is refused before any is created (-t 100000 would stall the machine).
TEST(ThreadPool, TooManyThreadsIsAnError) {
  EXPECT_THROW(qrt::ThreadPool(qrt::ThreadPool::kMaxThreads + 1), qrt::Error);
  EXPECT_THROW(qrt::ThreadPool(100000), qrt::Error);
}
