// Independent tasks of uneven size (decoding a checkpoint's layers, preparing them) on a few
// threads, with errors reported as a sequential loop would report them.
#pragma once

#include <cstdint>
#include <functional>

namespace qrt {

// Runs task(i) for every i in [0, count), each once, on up to `threads` threads (the caller is one
// of them; threads <= 0: the CPUs this process may use, at most 16), in increasing order of i per
// taker. When tasks throw, the exception of the lowest index that threw is rethrown once all have
// stopped: tasks above an index that failed are skipped (they cannot change the answer), those
// below it still run. So a checkpoint with several bad tensors reports the same one on every run.
void run_parallel_tasks(int64_t count, int threads, const std::function<void(int64_t)>& task);

// fn(begin, end) over [0, n) in runs of `chunk` items (the last one shorter), each run a task of
// run_parallel_tasks on the CPUs this process may use: rows or tiles that are independent.
void run_parallel_ranges(int64_t n, int64_t chunk, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace qrt
