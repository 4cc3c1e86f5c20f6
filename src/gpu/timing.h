// GPU timing shared by `qrt tune` (backends/tuner.cpp) and `qrt bench --device cuda`: device
// activation buffers for one layer shape, a median-of-repeats timer with CUDA events and the L2
// flushed before every timed call (a decode step reads its weights from memory, not from L2),
// the dense fp16 cuBLAS peer, and the device's streaming read bandwidth (the memory floor).
// CUDA-free header: the implementation (timing.cu) exists only in CUDA builds, so include it
// under #ifdef QRT_WITH_CUDA.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "qrt/backend.h"
#include "qrt/dtype.h"

namespace qrt::gpu_timing {

class LayerBench {
 public:
  // Buffers for up to max_m rows of a K x N layer on `device`; `rotations` input buffers filled
  // with seeded N(0, 1) values (rounded to `act`, F16 or BF16).
  LayerBench(int device, int64_t max_m, int64_t k, int64_t n, DType act, int rotations, uint32_t seed);
  ~LayerBench();
  LayerBench(const LayerBench&) = delete;
  LayerBench& operator=(const LayerBench&) = delete;

  ActTensor x(int rotation, int64_t m) const;   // rows [0, m) of input `rotation`
  ActTensor y(int64_t m) const;
  std::vector<float> input(int64_t m) const;    // rows [0, m) of input 0 on the host (f32): for references
  std::vector<float> output(int64_t m) const;               // synchronizes
  void poison_output() const;                               // NaN everywhere (unwritten rows show)
  void* stream() const;                                     // a cudaStream_t

  // Median microseconds of fn(rep), each rep timed alone between two events after an L2 flush.
  double median_us(const std::function<void(int rep)>& fn, int warmup, int repeats) const;
  // Dense peer: y = x * W^T through cuBLAS with a random fp16/bf16 N x K weight (allocated once).
  double dense_us(int64_t m, int warmup, int repeats);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streaming read bandwidth of device memory in GB/s: the best of several passes of a read-only
// kernel over a buffer many times the L2. The floor of a weight-bound layer is bytes / this.
double read_bandwidth_gbps(int device);

}  // namespace qrt::gpu_timing
