// Thread pool. A decode step runs a few hundred short parallel jobs (one per linear layer), so
// waking a sleeping worker for each (futex wake + context switch, tens of microseconds) was a
// visible share of CPU decode time. Workers and the caller therefore spin on atomics for a short
// while before blocking on a condition variable; an idle pool still ends up asleep.
//
// Shared cores. Spinning only pays while every thread has a CPU of its own. It is off when the
// pool has more threads than the process may use (its affinity mask), and it stops for a while
// (kNoSpinJobs jobs) when a job shows that the threads are being preempted and have been waiting
// for a CPU behind other tasks of this machine (threads_wait_for_cpus below): a spinner that finds
// a long gap between two of its clock reads was descheduled, and a caller that ran a slot meant
// for a worker long after the job started had a worker that was not running. A spinner then only
// takes CPU time away from the threads that have the work (and from other processes).
// SpinPolicy::Always leaves this out, for `qrt serve`: there the preemptions come from the
// server's own connection threads, each writing a token for tens of microseconds after every
// step, and pausing the spin made the engine sleep and wake its worker for most jobs (8 streams
// ran ~15 % slower; a busy-loop process beside `qrt run`, though, cost Always ~20 %).
// Independently, slots are taken from a counter, so a worker that is not running never holds a
// job back: the caller runs its slot and the worker, when it wakes, finds the job closed.
//
// No lost wake-ups: a sleeper registers (sleepers_ / caller_sleeping_) and re-checks its
// condition under the mutex; the other side changes the condition (seq_cst), then reads the
// registration (seq_cst) and, if set, notifies under the mutex.
#include "qrt/thread_pool.h"

#if defined(__linux__)
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#endif

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
using Clock = std::chrono::steady_clock;
// How long a waiter spins before sleeping: a little more than the gap between two jobs of a
// decode step (norms, RoPE and sampling run on the caller between them).
constexpr auto kSpin = std::chrono::microseconds(200);
// 64 pause instructions take a few microseconds; a gap this long between two clock reads of a
// spinner means the OS ran something else on its CPU.
constexpr auto kPreemptedGap = std::chrono::microseconds(50);
// A caller that takes over a worker's slot this long after starting the job had a worker that
// was awake (not asleep) and yet not running.
constexpr auto kLateWorker = std::chrono::microseconds(50);
// Jobs without spinning after a sign of preemption (a decode step of the default model is ~240
// jobs): long enough that probing costs little, short enough to recover when the cores free up.
constexpr int kNoSpinJobs = 2048;
// threads_wait_for_cpus(): a thread that waited for a CPU more than this share of the time since
// its previous look (between kWaitWindowMin and kWaitWindowMax ago) is crowded out.
constexpr double kWaitShare = 0.1;
constexpr auto kWaitWindowMin = std::chrono::microseconds(4000);
constexpr auto kWaitWindowMax = std::chrono::microseconds(200000);

constexpr uint64_t kDoorClosed = uint64_t{1} << 31;
constexpr uint64_t kDoorCount = kDoorClosed - 1;
uint64_t door_of(uint64_t generation) { return (generation & 0xFFFFFFFFu) << 32; }

enum class Spin { Ready, Expired, Preempted };

template <typename Ready>
Spin spin_until(Ready&& ready) {
  auto last = Clock::now();
  const auto until = last + kSpin;
  for (int i = 0;; ++i) {
    if (ready()) return Spin::Ready;
    QRT_CPU_RELAX();
    if ((i & 63) == 63) {
      const auto now = Clock::now();
      if (now - last > kPreemptedGap) return ready() ? Spin::Ready : Spin::Preempted;
      if (now > until) return ready() ? Spin::Ready : Spin::Expired;
      last = now;
    }
  }
}

// Whether the calling thread has been kept off a CPU by other tasks of this machine: the share of
// the time since its last look that it spent runnable but waiting in the kernel's run queue
// (run_delay, the second field of /proc/thread-self/schedstat), against kWaitShare. A competing
// process makes it large (a third of the time and more on 2 CPUs); a kernel thread's short
// wake-up or the hypervisor taking the virtual CPU away (which the guest does not count as
// waiting) leaves it near zero. A count of runnable tasks could not tell these apart, since the
// pool's own spinners fill every CPU: any one kernel thread looked like a crowd, and the pauses it
// caused cost 11-16 % of decode on a quiet 2-core VM. The first look of a thread (or one after a
// long quiet spell) only sets its baseline, and a look within a scheduler tick of it waits for a
// later one. No schedstat (another OS, or a kernel without it): crowded, the safe answer.
bool threads_wait_for_cpus() {
#if defined(__linux__)
  thread_local int64_t last_delay_ns = -1;
  thread_local Clock::time_point last_at;
  const int fd = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  char buf[96];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return true;
  buf[n] = '\0';
  // "<ns on CPU> <ns waiting> <timeslices>": skip the first field, read the second.
  const char* p = buf;
  while (*p >= '0' && *p <= '9') ++p;
  while (*p == ' ') ++p;
  if (*p < '0' || *p > '9') return true;
  int64_t delay = 0;
  while (*p >= '0' && *p <= '9' && delay < (int64_t{1} << 58)) delay = delay * 10 + (*p++ - '0');
  const Clock::time_point now = Clock::now();
  const auto elapsed = now - last_at;
  if (last_delay_ns < 0 || elapsed > kWaitWindowMax) {
    last_delay_ns = delay;
    last_at = now;
    return false;
  }
  // A share over less than a scheduler tick is one wake-up's noise: keep the baseline, judge later.
  if (elapsed < kWaitWindowMin) return false;
  const int64_t waited = delay - last_delay_ns;
  last_delay_ns = delay;
  last_at = now;
  const auto elapsed_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
  return static_cast<double>(waited) > kWaitShare * static_cast<double>(elapsed_ns);
#else
  return true;
#endif
}
}  // namespace

int ThreadPool::available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ThreadPool::ThreadPool(int threads, SpinPolicy policy) : policy_(policy) {
  if (threads > kMaxThreads)
    throw invalid_input("thread pool: " + std::to_string(threads) + " threads requested, at most " +
                        std::to_string(kMaxThreads));
  const int cpus = available_cpus();
  if (threads <= 0) threads = std::min(cpus, kMaxThreads);
  spin_ = threads <= cpus;
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

bool ThreadPool::spin_allowed() const {
  return spin_ && no_spin_jobs_.load(std::memory_order_relaxed) == 0;
}

void ThreadPool::note_preempted() {
  if (policy_ == SpinPolicy::Adaptive && threads_wait_for_cpus())
    no_spin_jobs_.store(kNoSpinJobs, std::memory_order_relaxed);
}

int ThreadPool::run_slots() {
  const int n = size();
  int ran = 0;
  for (int slot = next_slot_.fetch_add(1); slot < n; slot = next_slot_.fetch_add(1)) {
    (*job_)(slot, n);
    ++ran;
  }
  return ran;
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  for (;;) {
    auto started = [&] { return stop_.load() || generation_.load() != seen; };
    const Spin spin = spin_allowed() ? spin_until(started) : (started() ? Spin::Ready : Spin::Expired);
    if (spin == Spin::Preempted) note_preempted();
    if (spin != Spin::Ready) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      start_cv_.wait(lock, started);
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    seen = generation_.load();
    // Enter the job if it is still open; a closed or newer door means it ran without us.
    uint64_t door = door_.load();
    bool entered = false;
    while ((door & ~(kDoorClosed | kDoorCount)) == door_of(seen) && !(door & kDoorClosed)) {
      if (door_.compare_exchange_weak(door, door + 1)) {
        entered = true;
        break;
      }
    }
    if (!entered) continue;
    run_slots();
    finished_.fetch_add(1);
    if (caller_sleeping_.load()) {
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
  // Every worker that entered the previous job has finished: the job's state can be reset.
  job_ = &fn;
  next_slot_.store(0);
  finished_.store(0);
  const uint64_t generation = generation_.load() + 1;
  door_.store(door_of(generation));
  const auto t0 = Clock::now();
  generation_.store(generation);  // publishes job_ and the open door
  const bool all_awake = sleepers_.load() == 0;
  if (!all_awake) {
    std::lock_guard<std::mutex> lock(mutex_);
    start_cv_.notify_all();
  }
  // The caller's first slot, then any slot no worker has taken yet.
  const int first = next_slot_.fetch_add(1);
  if (first < size()) fn(first, size());
  const int more = run_slots();
  const bool late = more > 0 && all_awake && Clock::now() - t0 > kLateWorker;
  const int entered = static_cast<int>(door_.fetch_or(kDoorClosed) & kDoorCount);
  auto done = [&] { return finished_.load() == entered; };
  Spin spin = Spin::Ready;
  if (!done()) {
    spin = spin_allowed() ? spin_until(done) : Spin::Expired;
    if (spin != Spin::Ready) {
      std::unique_lock<std::mutex> lock(mutex_);
      caller_sleeping_.store(true);
      done_cv_.wait(lock, done);
      caller_sleeping_.store(false);
    }
  }
  jobs_.fetch_add(1, std::memory_order_relaxed);
  if (more > 0) taken_over_.fetch_add(static_cast<uint64_t>(more), std::memory_order_relaxed);
  if (late || spin == Spin::Preempted) {
    note_preempted();
  } else if (no_spin_jobs_.load(std::memory_order_relaxed) > 0) {
    no_spin_jobs_.fetch_sub(1, std::memory_order_relaxed);
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
