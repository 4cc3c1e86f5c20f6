// Thread pool. A decode step runs a few hundred short parallel jobs (one per linear layer), so
// waking a sleeping worker for each (futex wake + context switch, tens of microseconds) was a
// visible share of CPU decode time. Workers and the caller therefore spin on atomics for a short
// while before blocking on a condition variable; an idle pool still ends up asleep. Spinning is
// off when the pool has more threads than the machine has cores (a spinner would steal a core).
//
// No lost wake-ups: a sleeper registers (sleepers_ / caller_sleeping_) and re-checks its
// condition under the mutex; the other side changes the condition (seq_cst), then reads the
// registration (seq_cst) and, if set, notifies under the mutex.
#include "qrt/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "qrt/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QRT_CPU_RELAX() _mm_pause()
#else
#define QRT_CPU_RELAX() std::this_thread::yield()
#endif

namespace qrt {
namespace {
// How long a waiter spins before sleeping: a little more than the gap between two jobs of a
// decode step (norms, RoPE and sampling run on the caller between them).
constexpr auto kSpin = std::chrono::microseconds(200);

template <typename Ready>
bool spin_until(Ready&& ready, bool enabled) {
  if (!enabled) return ready();
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    QRT_CPU_RELAX();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) return ready();
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads > kMaxThreads)
    throw invalid_input("thread pool: " + std::to_string(threads) + " threads requested, at most " +
                        std::to_string(kMaxThreads));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads <= 0) threads = cores;
  spin_ = threads <= cores;
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    auto started = [&] { return stop_.load() || generation_.load() != seen; };
    if (!spin_until(started, spin_)) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      start_cv_.wait(lock, started);
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    seen = generation_.load();
    (*job_)(index, size());
    if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::run_on_all(const std::function<void(int, int)>& fn) {
  if (workers_.empty()) {
    fn(0, 1);
    return;
  }
  job_ = &fn;  // published by the generation increment below (seq_cst)
  pending_.store(static_cast<int>(workers_.size()));
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    start_cv_.notify_all();
  }
  fn(0, size());
  auto done = [&] { return pending_.load() == 0; };
  if (!spin_until(done, spin_)) {
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeping_.store(true);
    done_cv_.wait(lock, done);
    caller_sleeping_.store(false);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int, int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(size(), n));
  if (threads == 1) {
    fn(0, 0, n);
    return;
  }
  run_on_all([&](int t, int) {
    if (t >= threads) return;
    const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) fn(t, begin, end);
  });
}

}  // namespace qrt
