// A fixed pool of worker threads for CPU kernels and the model. parallel_for splits [0, n) into
// contiguous chunks, one per thread, and blocks until all are done; no allocation per call.
// Waiters spin for up to ~200 us before sleeping (thread_pool.cpp says why). One caller at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qrt {

class ThreadPool {
 public:
  // More threads than this is a mistake, not a configuration (creating 100000 threads stalls the
  // machine); the CLI and the config file check it first, with their own names.
  static constexpr int kMaxThreads = 256;
  // threads <= 0: one per logical core. Throws qrt::Error(InvalidInput) above kMaxThreads.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }  // workers + caller
  // fn(thread_index, begin, end) over chunks of [0, n); the caller runs chunk 0.
  void parallel_for(int64_t n, const std::function<void(int, int64_t, int64_t)>& fn);
  // fn(thread_index, thread_count) once per thread.
  void run_on_all(const std::function<void(int, int)>& fn);

 private:
  void worker_loop(int index);
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};           // workers blocked on start_cv_
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
  bool spin_ = true;                       // waiters spin briefly before sleeping (threads <= cores)
};

}  // namespace qrt
