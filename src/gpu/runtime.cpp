// CUDA runtime pieces: checked-call error reporting, device buffers, arenas, per-device contexts.
#include "gpu/runtime.h"

#include <fmt/format.h>

#include <atomic>
#include <map>
#include <mutex>
#include <tuple>

namespace qrt::cuda {

namespace {
std::string human_bytes(size_t bytes) {
  double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{} bytes", bytes);
}
}  // namespace

void throw_cuda_error(cudaError_t err, const char* statement, const char* file, int line) {
  // Clear a non-sticky error so the next call starts clean (sticky ones persist regardless).
  cudaGetLastError();
  ErrorKind kind = err == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Device;
  throw Error(kind, fmt::format("CUDA error {} ({}) in `{}` at {}:{}", cudaGetErrorName(err),
                                cudaGetErrorString(err), statement, file, line));
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_(unknown)";
  }
}

void throw_cublas_error(cublasStatus_t status, const char* statement, const char* file, int line) {
  ErrorKind kind = status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorKind::OutOfMemory : ErrorKind::Device;
  throw Error(kind, fmt::format("cuBLAS error {} in `{}` at {}:{}", cublas_status_name(status), statement,
                                file, line));
}

// ---- DeviceBuffer ----
DeviceBuffer::DeviceBuffer(size_t bytes, const std::string& what) : bytes_(bytes) {
  if (bytes == 0) return;
  cudaError_t err = cudaMalloc(&ptr_, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    ptr_ = nullptr;
    bytes_ = 0;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaGetLastError();
    throw Error(err == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Device,
                fmt::format("GPU allocation of {} for {} failed: {} ({} free of {})", human_bytes(bytes), what,
                            cudaGetErrorString(err), human_bytes(free_b), human_bytes(total_b)));
  }
}

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (ptr_) cudaFree(ptr_);  // never throws from a destructor; a failed free is reported by later calls
  ptr_ = nullptr;
  bytes_ = 0;
}

DeviceBuffer DeviceBuffer::upload(const void* host, size_t bytes, const std::string& what) {
  DeviceBuffer b(bytes, what);
  if (bytes) QRT_CUDA_CHECK(cudaMemcpy(b.get(), host, bytes, cudaMemcpyHostToDevice));
  return b;
}

// ---- DeviceArena ----
void DeviceArena::reserve(size_t bytes) {
  if (bytes <= buffer_.bytes()) return;
  // Round up to 2 MiB so a sequence of slightly larger requests does not reallocate each time.
  size_t rounded = (bytes + (size_t(2) << 20) - 1) & ~((size_t(2) << 20) - 1);
  buffer_.reset();
  buffer_ = DeviceBuffer(rounded, name_);
  offset_ = 0;
}

void* DeviceArena::carve(size_t bytes, size_t align) {
  size_t start = (offset_ + align - 1) / align * align;
  if (start + bytes > buffer_.bytes()) return nullptr;
  offset_ = start + bytes;
  return static_cast<char*>(buffer_.get()) + start;
}

// ---- DeviceContext ----
DeviceContext::DeviceContext(int device) : device_(device) {
  QRT_CUDA_CHECK(cudaGetDeviceProperties(&props_, device));
}

DeviceContext& DeviceContext::get(int device) {
  static std::mutex mu;
  static std::map<int, std::unique_ptr<DeviceContext>> contexts;
  std::lock_guard<std::mutex> lock(mu);
  auto it = contexts.find(device);
  if (it != contexts.end()) return *it->second;
  int count = 0;
  QRT_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    throw Error(ErrorKind::Device, fmt::format("cuda:{} does not exist ({} CUDA devices)", device, count));
  auto ctx = std::unique_ptr<DeviceContext>(new DeviceContext(device));
  auto& ref = *ctx;
  contexts.emplace(device, std::move(ctx));
  return ref;
}

void* DeviceContext::zeroed_buffer(const std::string& name, size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = zeroed_.find(name);
  if (it == zeroed_.end()) {
    DeviceGuard g(device_);
    DeviceBuffer b(bytes, name);
    QRT_CUDA_CHECK(cudaMemset(b.get(), 0, bytes));
    QRT_CUDA_CHECK(cudaDeviceSynchronize());
    it = zeroed_.emplace(name, std::move(b)).first;
  } else if (it->second.bytes() < bytes) {
    throw internal_error(fmt::format("{}: asked for {} bytes, created with {}", name, bytes, it->second.bytes()));
  }
  return it->second.get();
}

std::shared_ptr<const void> DeviceContext::shared_upload(const std::string& key,
                                                         const std::function<std::shared_ptr<const void>()>& make) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = uploads_.find(key); it != uploads_.end())
      if (auto sp = it->second.lock()) return sp;
  }
  std::shared_ptr<const void> sp = make();  // outside the lock: an upload takes a while
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = uploads_.begin(); it != uploads_.end();)  // drop expired entries
    it = it->second.expired() ? uploads_.erase(it) : std::next(it);
  uploads_[key] = sp;
  return sp;
}

DeviceContext& DeviceContext::current() {
  int dev = 0;
  QRT_CUDA_CHECK(cudaGetDevice(&dev));
  return get(dev);
}

cublasHandle_t DeviceContext::cublas() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!cublas_) {
    DeviceGuard g(device_);
    QRT_CUBLAS_CHECK(cublasCreate(&cublas_));
    // An explicit workspace keeps cuBLAS from allocating during CUDA-graph capture.
    cublas_workspace_ = DeviceBuffer(size_t(32) << 20, "cuBLAS workspace");
    QRT_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_.get(), cublas_workspace_.bytes()));
    QRT_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  }
  return cublas_;
}

cublasLtHandle_t DeviceContext::cublas_lt() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!cublas_lt_) {
    DeviceGuard g(device_);
    QRT_CUBLAS_CHECK(cublasLtCreate(&cublas_lt_));
    lt_workspace_ = DeviceBuffer(size_t(32) << 20, "cuBLASLt workspace");
  }
  return cublas_lt_;
}

void DeviceContext::reserve_workspace(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  DeviceGuard g(device_);
  workspace_.reserve(bytes);
}

// ---- DeviceGuard / Stream / EventTimer ----
DeviceGuard::DeviceGuard(int device) {
  QRT_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) QRT_CUDA_CHECK(cudaSetDevice(device));
}
DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_ && previous_ >= 0) cudaSetDevice(previous_);
}

Stream::Stream() { QRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}
void Stream::synchronize() const { QRT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

EventTimer::EventTimer() {
  QRT_CUDA_CHECK(cudaEventCreate(&a_));
  QRT_CUDA_CHECK(cudaEventCreate(&b_));
}
EventTimer::~EventTimer() {
  if (a_) cudaEventDestroy(a_);
  if (b_) cudaEventDestroy(b_);
}
void EventTimer::start(cudaStream_t s) { QRT_CUDA_CHECK(cudaEventRecord(a_, s)); }
float EventTimer::stop_ms(cudaStream_t s) {
  QRT_CUDA_CHECK(cudaEventRecord(b_, s));
  QRT_CUDA_CHECK(cudaEventSynchronize(b_));
  float ms = 0;
  QRT_CUDA_CHECK(cudaEventElapsedTime(&ms, a_, b_));
  return ms;
}

int device_count(std::string* why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("no CUDA device: ") + cudaGetErrorString(err);
    return 0;
  }
  if (count == 0 && why) *why = "no CUDA device found";
  return count;
}


int device_compute_capability(int device) {
  static std::atomic<int> known[64] = {};  // per device: 0 not asked yet, -1 failed, else 10 * major + minor
  if (device < 0 && cudaGetDevice(&device) != cudaSuccess) return 0;
  if (device < 0 || device >= 64) return 0;
  int v = known[device].load(std::memory_order_relaxed);
  if (v == 0) {
    int major = 0, minor = 0;
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess;
    v = ok ? 10 * major + minor : -1;
    known[device].store(v, std::memory_order_relaxed);
  }
  return v < 0 ? 0 : v;
}

bool device_is_sm90_or_newer(int device) { return device_compute_capability(device) >= 90; }

int resident_blocks_per_sm(const void* kernel, int threads, int smem_bytes) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 1;
  static std::mutex mu;
  static std::map<std::tuple<int, const void*, int, int>, int> known;
  const auto key = std::make_tuple(device, kernel, threads, smem_bytes);
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = known.find(key); it != known.end()) return it->second;
  int blocks = 1;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, smem_bytes) != cudaSuccess || blocks < 1)
    blocks = 1;
  known.emplace(key, blocks);
  return blocks;
}

}  // namespace qrt::cuda
