// Test helpers for GPU backends, CUDA-free so tests compile as plain C++ (the implementation,
// cuda_test_support.cpp, exists only in CUDA builds: include this header under #ifdef QRT_WITH_CUDA).
// Used by tests/backends/test_cuda_*.cpp and the cross-backend suite.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qrt/backend.h"
#include "qrt/device.h"
#include "qrt/dtype.h"

namespace qrt::cuda_test {

// True when a CUDA device is usable; otherwise `why` says why (for GTEST_SKIP).
bool gpu_available(std::string* why);
// DeviceInfo of cuda:0 (probe_cuda_devices()[0]); call only when gpu_available().
DeviceInfo gpu0();

// A device buffer owned by the test (RAII, move-only).
class DeviceTensor {
 public:
  DeviceTensor() = default;
  DeviceTensor(int64_t rows, int64_t cols, DType dtype);  // uninitialised (poisoned with 0xFF bytes)
  ~DeviceTensor();
  DeviceTensor(DeviceTensor&& o) noexcept;
  DeviceTensor& operator=(DeviceTensor&& o) noexcept;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  // float -> dtype (F32, F16, BF16) on the host, then copied to the device.
  static DeviceTensor upload(const std::vector<float>& values, int64_t rows, int64_t cols, DType dtype);
  // dtype -> float (synchronises the device first).
  std::vector<float> download() const;
  ActTensor act() const;  // an ActTensor view on DeviceKind::Cuda
  void* data() const { return ptr_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  DType dtype() const { return dtype_; }

 private:
  void* ptr_ = nullptr;
  int64_t rows_ = 0, cols_ = 0;
  DType dtype_ = DType::F16;
};

// Rounds like an upload to dtype would (for references computed on the rounded inputs).
std::vector<float> round_to(const std::vector<float>& v, DType dtype);

void synchronize();
// Runs fn(stream) directly on a fresh stream (graph = false) or captured once into a CUDA graph
// and replayed (graph = true); synchronises before returning. Throws qrt::Error on CUDA errors.
void run_on_stream(const std::function<void(void* stream)>& fn, bool graph);
// Allocates `bytes` on the device through cuda::DeviceBuffer and frees it (OOM tests).
void allocate_and_free(int64_t bytes);
// A deliberately failing checked call (cudaSetDevice(-7)) through QRT_CUDA_CHECK (tests the message).
void failing_checked_call();

}  // namespace qrt::cuda_test
