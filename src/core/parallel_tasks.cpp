#include "core/parallel_tasks.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "qrt/thread_pool.h"

namespace qrt {

void run_parallel_tasks(int64_t count, int threads, const std::function<void(int64_t)>& task) {
  if (count <= 0) return;
  // Past 16 threads a load is bound by memory (page faults, copies), not by decoding.
  if (threads <= 0) threads = std::min(ThreadPool::available_cpus(), 16);
  threads = static_cast<int>(std::min<int64_t>(threads, count));
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> first_failed{count};  // lowest index that threw so far
  std::mutex mutex;
  std::exception_ptr error;
  auto take = [&] {
    for (;;) {
      const int64_t i = next.fetch_add(1);
      if (i >= count || i > first_failed.load()) return;
      try {
        task(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (i < first_failed.load()) {
          first_failed.store(i);
          error = std::current_exception();
        }
      }
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads - 1));
  for (int t = 1; t < threads; ++t) {
    try {
      workers.emplace_back(take);
    } catch (const std::system_error&) {
      break;  // no more threads to be had: those started and the caller take every task
    }
  }
  take();
  for (auto& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

void run_parallel_ranges(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  run_parallel_tasks((n + chunk - 1) / chunk, 0, [&](int64_t t) { fn(t * chunk, std::min(n, (t + 1) * chunk)); });
}

}  // namespace qrt
