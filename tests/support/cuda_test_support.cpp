// Implementation of the CUDA test helpers (cuda_test_support.h).
#include "support/cuda_test_support.h"

#include <cstring>

#include "gpu/runtime.h"

namespace qrt::cuda_test {

bool gpu_available(std::string* why) { return cuda::device_count(why) > 0; }

DeviceInfo gpu0() {
  auto devs = probe_cuda_devices();
  if (devs.empty()) throw Error(ErrorKind::Device, "no CUDA device: " + cuda_unavailable_reason());
  return devs[0];
}

namespace {
size_t elem_size(DType t) { return t == DType::F32 ? 4 : 2; }
}  // namespace

DeviceTensor::DeviceTensor(int64_t rows, int64_t cols, DType dtype) : rows_(rows), cols_(cols), dtype_(dtype) {
  const size_t bytes = static_cast<size_t>(rows * cols) * elem_size(dtype);
  QRT_CUDA_CHECK(cudaMalloc(&ptr_, bytes ? bytes : 1));
  QRT_CUDA_CHECK(cudaMemset(ptr_, 0xFF, bytes));  // NaN in every float format: unwritten outputs show
}
DeviceTensor::~DeviceTensor() {
  if (ptr_) cudaFree(ptr_);
}
DeviceTensor::DeviceTensor(DeviceTensor&& o) noexcept { *this = std::move(o); }
DeviceTensor& DeviceTensor::operator=(DeviceTensor&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    rows_ = o.rows_;
    cols_ = o.cols_;
    dtype_ = o.dtype_;
    o.ptr_ = nullptr;
  }
  return *this;
}

DeviceTensor DeviceTensor::upload(const std::vector<float>& values, int64_t rows, int64_t cols, DType dtype) {
  if (static_cast<int64_t>(values.size()) != rows * cols) throw invalid_input("upload: size mismatch");
  DeviceTensor t(rows, cols, dtype);
  std::vector<uint8_t> host(values.size() * elem_size(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(host.data() + 4 * i, &values[i], 4);
    } else {
      uint16_t h = dtype == DType::F16 ? f32_to_fp16(values[i]) : f32_to_bf16(values[i]);
      std::memcpy(host.data() + 2 * i, &h, 2);
    }
  }
  QRT_CUDA_CHECK(cudaMemcpy(t.ptr_, host.data(), host.size(), cudaMemcpyHostToDevice));
  return t;
}

std::vector<float> DeviceTensor::download() const {
  QRT_CUDA_CHECK(cudaDeviceSynchronize());
  const size_t n = static_cast<size_t>(rows_ * cols_);
  std::vector<uint8_t> host(n * elem_size(dtype_));
  QRT_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, host.size(), cudaMemcpyDeviceToHost));
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype_ == DType::F32) {
      std::memcpy(&out[i], host.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, host.data() + 2 * i, 2);
      out[i] = dtype_ == DType::F16 ? fp16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return out;
}

ActTensor DeviceTensor::act() const {
  ActTensor a;
  a.data = ptr_;
  a.dtype = dtype_;
  a.rows = rows_;
  a.cols = cols_;
  a.device = DeviceKind::Cuda;
  return a;
}

std::vector<float> round_to(const std::vector<float>& v, DType dtype) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = dtype == DType::F16 ? fp16_to_f32(f32_to_fp16(v[i]))
             : dtype == DType::BF16 ? bf16_to_f32(f32_to_bf16(v[i]))
                                    : v[i];
  return out;
}

void synchronize() { QRT_CUDA_CHECK(cudaDeviceSynchronize()); }

void run_on_stream(const std::function<void(void* stream)>& fn, bool graph) {
  cuda::Stream stream;
  if (!graph) {
    fn(stream.get());
    stream.synchronize();
    return;
  }
  cudaGraph_t g = nullptr;
  cudaGraphExec_t exec = nullptr;
  QRT_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  try {
    fn(stream.get());
  } catch (...) {
    cudaStreamEndCapture(stream.get(), &g);
    if (g) cudaGraphDestroy(g);
    throw;
  }
  QRT_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &g));
  QRT_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
  QRT_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
  stream.synchronize();
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
}

void allocate_and_free(int64_t bytes) { cuda::DeviceBuffer b(static_cast<size_t>(bytes), "test allocation"); }

void failing_checked_call() { QRT_CUDA_CHECK(cudaSetDevice(-7)); }

}  // namespace qrt::cuda_test
