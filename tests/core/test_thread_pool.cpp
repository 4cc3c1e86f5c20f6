// Thread pool: every index visited exactly once, repeated jobs, more threads than work.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

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
