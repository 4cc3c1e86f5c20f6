// A fixed pool of worker threads for CPU kernels and the model. A job is split into size() slots
// (parallel_for: contiguous chunks of [0, n); run_on_all: one call per slot index); the caller and
// the workers take slots from an atomic counter, so a worker the OS has not scheduled yet does not
// hold the job back: whoever runs takes its slot. Blocks until every slot is done; no allocation
// per call. Waiters spin briefly before sleeping (thread_pool.cpp says when and why). One caller
// at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qrt {

// What the pool does when a job shows that its threads are being preempted (thread_pool.cpp):
// Adaptive stops spinning for a while, so that another process that has the cores gets them;
// Always keeps spinning, for a process whose own short-lived threads are what preempts the pool
// (`qrt serve`: a connection thread writes each stream's token after every step).
enum class SpinPolicy { Adaptive, Always };

class ThreadPool {
 public:
  // More threads than this is a mistake, not a configuration (creating 100000 threads stalls the
  // machine); the CLI and the config file check it first, with their own names.
  static constexpr int kMaxThreads = 256;
  // The CPUs this process may run on (its affinity mask: taskset, cgroups/containers), at least 1.
  // The default thread count of the pool and of every command.
  static int available_cpus();
  // threads <= 0: available_cpus(). Throws qrt::Error(InvalidInput) above kMaxThreads.
  explicit ThreadPool(int threads = 0, SpinPolicy policy = SpinPolicy::Adaptive);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }  // workers + caller
  // fn(slot, begin, end) over size() contiguous chunks of [0, n) (fewer when n < size()); each
  // chunk runs once, concurrent calls have distinct slots (per-slot scratch needs no locking).
  void parallel_for(int64_t n, const std::function<void(int, int64_t, int64_t)>& fn);
  // fn(slot, size()) once per slot in [0, size()); one thread may run several slots in turn.
  void run_on_all(const std::function<void(int, int)>& fn);

  // Counters for tests and benchmarks: jobs run, and slots the caller ran beyond its first
  // (work a worker did not get to in time), since construction.
  uint64_t jobs_run() const { return jobs_.load(std::memory_order_relaxed); }
  uint64_t slots_taken_over() const { return taken_over_.load(std::memory_order_relaxed); }

 private:
  void worker_loop(int index);
  int run_slots();                 // takes and runs slots of the current job until none is left
  bool spin_allowed() const;
  void note_preempted();           // a job showed preemption: pause spinning if Adaptive and crowded
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  // The current job's door: (generation << 32) | closed bit | workers that came in. A worker runs
  // slots only after entering through it; the caller closes it when no slot is left and then waits
  // for exactly those who entered.
  std::atomic<uint64_t> door_{0};
  std::atomic<int> next_slot_{0};
  std::atomic<int> finished_{0};            // workers that entered and are done
  std::atomic<int> sleepers_{0};            // workers blocked on start_cv_
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
  bool spin_ = true;                        // threads <= available CPUs
  SpinPolicy policy_ = SpinPolicy::Adaptive;
  // Jobs left during which nobody spins: set when a job showed that the workers are not getting
  // a CPU in time (another process has the cores), so spinning would only take CPU time away
  // from the threads that have the work.
  std::atomic<int> no_spin_jobs_{0};
  std::atomic<uint64_t> jobs_{0}, taken_over_{0};
};

}  // namespace qrt
