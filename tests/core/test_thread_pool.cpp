// Thread pool: every index visited exactly once, repeated jobs, more threads than work or CPUs,
// the default size from the affinity mask.
#include <gtest/gtest.h>

#include <sched.h>

#include <algorithm>
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

// More threads than CPUs (no spinning) and slots taken from a counter: every slot still runs
// exactly once per job, with distinct slots never running at the same time twice.
TEST(ThreadPool, OversubscribedPoolRunsEverySlotOncePerJob) {
  const int threads = 4 * qrt::ThreadPool::available_cpus() + 1;
  qrt::ThreadPool pool(std::min(threads, qrt::ThreadPool::kMaxThreads));
  const int n = pool.size();
  std::vector<std::atomic<int>> hits(n), busy(n);
  for (int rep = 0; rep < 2000; ++rep)
    pool.run_on_all([&](int slot, int slots) {
      EXPECT_EQ(slots, n);
      EXPECT_EQ(busy[slot].fetch_add(1), 0) << "slot " << slot << " ran twice at once";
      hits[slot]++;
      volatile int64_t work = 0;  // a few microseconds, so workers take part
      for (int i = 0; i < 2000; ++i) work = work + i;
      busy[slot].fetch_sub(1);
    });
  for (int i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 2000) << "slot " << i;
  EXPECT_EQ(pool.jobs_run(), 2000u);
}

#if defined(__linux__)
// The default thread count follows the affinity mask (taskset, containers), not the machine.
TEST(ThreadPool, DefaultThreadsFollowTheAffinityMask) {
  cpu_set_t old_set;
  ASSERT_EQ(sched_getaffinity(0, sizeof old_set, &old_set), 0);
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; ++c)
    if (CPU_ISSET(c, &old_set)) first = c;
  ASSERT_GE(first, 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int cpus = qrt::ThreadPool::available_cpus();
  const int pool_size = qrt::ThreadPool().size();
  ASSERT_EQ(sched_setaffinity(0, sizeof old_set, &old_set), 0);
  EXPECT_EQ(cpus, 1);
  EXPECT_EQ(pool_size, 1);
  EXPECT_EQ(qrt::ThreadPool::available_cpus(), CPU_COUNT(&old_set));
}
#endif
