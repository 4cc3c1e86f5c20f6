// CUDA runtime queries behind qrt::probe_cuda_devices() (compiled only in CUDA builds; the
// caller, backends/device_probe.cpp, turns the GpuInfo list into DeviceInfo).
#include <cuda_runtime.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "qrt/device.h"

namespace qrt::cuda_probe {

std::vector<GpuInfo> list_gpus(std::string* why) {
  std::vector<GpuInfo> out;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // Where no NVIDIA driver is installed at all, the runtime answers "driver version is
    // insufficient": say what is really missing.
    const bool has_driver = access("/proc/driver/nvidia/version", F_OK) == 0;
    if (why)
      *why = !has_driver && (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice)
                 ? std::string("no NVIDIA GPU driver on this machine")
                 : std::string("no CUDA device: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return out;
  }
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = prop.name;
    g.cc_major = prop.major;
    g.cc_minor = prop.minor;
    g.sm_count = prop.multiProcessorCount;
    g.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
    g.shared_mem_per_block_optin = static_cast<int64_t>(prop.sharedMemPerBlockOptin);
    g.l2_bytes = prop.l2CacheSize;
    g.driver_version = driver;
    g.runtime_version = runtime;
    out.push_back(g);
  }
  if (out.empty() && why && why->empty()) *why = "no CUDA device found";
  return out;
}

// The oldest architecture this binary's CUDA code was compiled for (CMake: QRT_CUDA_MIN_ARCH, the
// smallest of QRT_CUDA_ARCHS and the portable architectures nvcc could build).
int binary_min_arch() { return QRT_CUDA_MIN_ARCH; }

}  // namespace qrt::cuda_probe
