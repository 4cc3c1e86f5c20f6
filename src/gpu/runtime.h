// CUDA runtime pieces shared by the CUDA backends and the GPU model engine: RAII device buffers,
// a per-device context (cuBLAS / cuBLASLt handles, a growable workspace arena), stream helpers.
// Internal header (includes CUDA headers).
//
// Memory policy: everything a forward pass touches is allocated at load (prepare / engine build);
// forward only reads pointers. The per-device workspace is shared by every PreparedLinear of that
// device and grows (at prepare time only) to the largest request; kernels that use it run one after
// another on one stream, which is how the engine drives them. Growing frees the old block, so a
// caller must not keep a workspace pointer across prepare() calls: ask workspace() in forward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "gpu/check.h"

namespace qrt::cuda {

// Owns one cudaMalloc'd block. Move-only. Allocation failure throws ErrorKind::OutOfMemory with
// `what` (a tensor or workspace name) and the size in the message.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, const std::string& what);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  explicit operator bool() const { return ptr_ != nullptr; }
  void reset();

  // Allocates and copies (synchronous; load-time only).
  static DeviceBuffer upload(const void* host, size_t bytes, const std::string& what);
  template <typename T>
  static DeviceBuffer upload(const std::vector<T>& v, const std::string& what) {
    return upload(v.data(), v.size() * sizeof(T), what);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Bump allocator over a DeviceBuffer: carve aligned pieces for one forward's scratch. reserve()
// only grows (load time); carve() never allocates and returns nullptr when the arena is too small.
class DeviceArena {
 public:
  explicit DeviceArena(std::string name) : name_(std::move(name)) {}
  void reserve(size_t bytes);  // throws OutOfMemory naming the arena and the size
  size_t capacity() const { return buffer_.bytes(); }
  void* base() const { return buffer_.get(); }
  void reset() { offset_ = 0; }
  void* carve(size_t bytes, size_t align = 256);

 private:
  std::string name_;
  DeviceBuffer buffer_;
  size_t offset_ = 0;
};

// Per-device state, created on first use of a device, alive for the process.
class DeviceContext {
 public:
  static DeviceContext& get(int device);
  // The current device (cudaGetDevice), for callers that were handed a DeviceInfo.
  static DeviceContext& current();

  int device() const { return device_; }
  const cudaDeviceProp& props() const { return props_; }
  int compute_capability() const { return props_.major * 10 + props_.minor; }

  cublasHandle_t cublas();     // created lazily (load time), with its own workspace
  cublasLtHandle_t cublas_lt();
  // Scratch shared by the backends of this device: grow at prepare time, read in forward.
  void reserve_workspace(size_t bytes);
  void* workspace() const { return workspace_.base(); }
  size_t workspace_bytes() const { return workspace_.capacity(); }
  // cuBLASLt workspace (separate from the dequant workspace so both can be live in one GEMM).
  void* lt_workspace() const { return lt_workspace_.get(); }
  size_t lt_workspace_bytes() const { return lt_workspace_.bytes(); }

  // A device buffer of `bytes` zeroed once and kept for the life of the context, by name (e.g. the
  // split-K arrival counters every int4 launch of this device shares; the kernels reset them).
  void* zeroed_buffer(const std::string& name, size_t bytes);
  // An upload several prepared kernels of this device share (cuda_gemv and cuda_marlin serving
  // one layer for different M ranges), by key: the live one, else make()'s, kept while in use.
  std::shared_ptr<const void> shared_upload(const std::string& key,
                                            const std::function<std::shared_ptr<const void>()>& make);

  std::mutex& mutex() { return mutex_; }

 private:
  explicit DeviceContext(int device);
  int device_ = 0;
  cudaDeviceProp props_{};
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublas_lt_ = nullptr;
  DeviceBuffer cublas_workspace_;
  DeviceBuffer lt_workspace_;
  DeviceArena workspace_{"cuda workspace"};
  std::map<std::string, DeviceBuffer> zeroed_;
  std::map<std::string, std::weak_ptr<const void>> uploads_;
  std::mutex mutex_;
};

// Switches the current device for a scope and restores it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// A non-blocking stream owned by RAII.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// A pair of events timing a region on a stream (benchmarks, tuning).
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  void start(cudaStream_t s);
  float stop_ms(cudaStream_t s);  // synchronizes on the end event

 private:
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

// The stream of an ExecContext (nullptr = the legacy default stream).
inline cudaStream_t as_stream(void* p) { return static_cast<cudaStream_t>(p); }

// Number of CUDA devices, 0 (with `why`) when there is no driver or no GPU. Never throws.
int device_count(std::string* why = nullptr);

// Compute capability of `device` (default: the current one) as 10 * major + minor, asked of the
// driver once per device and kept (safe from any thread); 0 for a device that cannot be queried.
int device_compute_capability(int device = -1);

// Whether `device` (default: the current one) is sm_90 or newer: programmatic dependent launch and
// TMA bulk copies. Asked of the driver once per device and kept (safe from any thread); false for
// a device that cannot be queried.
bool device_is_sm90_or_newer(int device = -1);

// Blocks of `kernel` (launched with `threads` threads and `smem_bytes` of dynamic shared memory)
// that one SM of the current device holds at once. Asked of the runtime once per (device, kernel,
// threads, shared memory) and kept, safe from any thread; 1 when the query fails.
int resident_blocks_per_sm(const void* kernel, int threads, int smem_bytes);

}  // namespace qrt::cuda
