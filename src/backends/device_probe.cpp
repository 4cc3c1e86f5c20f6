// CUDA device discovery and device-id resolution. This file lives in the backends library because
// only it knows whether the binary was built with CUDA (QRT_WITH_CUDA); the CUDA runtime calls
// themselves are in src/gpu/device_probe.cpp, compiled only in CUDA builds.
#include <cstdlib>
#include <string>
#include <vector>

#include "qrt/device.h"
#include "qrt/error.h"
#include "qrt/plan.h"

namespace qrt {

#ifdef QRT_WITH_CUDA
namespace cuda_probe {
// Defined in src/gpu/device_probe.cpp. Fills `why` when no device can be listed.
std::vector<GpuInfo> list_gpus(std::string* why);
int binary_min_arch();
}  // namespace cuda_probe
#endif

namespace {
struct CudaProbeResult {
  std::vector<DeviceInfo> devices;
  std::string why;
};

// Probed once per process: the driver answer does not change, and the CUDA runtime's first call
// costs tens of milliseconds.
const CudaProbeResult& cuda_probe_result() {
  static const CudaProbeResult result = [] {
    CudaProbeResult r;
#ifdef QRT_WITH_CUDA
    const std::vector<GpuInfo> gpus = cuda_probe::list_gpus(&r.why);
    const CpuInfo host = probe_cpu().cpu;
    for (const GpuInfo& g : gpus) {
      DeviceInfo d;
      d.kind = DeviceKind::Cuda;
      d.id = "cuda:" + std::to_string(g.index);
      d.cpu = host;
      d.gpu = g;
      r.devices.push_back(d);
    }
    if (r.devices.empty() && r.why.empty()) r.why = "no CUDA device found";
#else
    r.why = "built without CUDA";
#endif
    return r;
  }();
  return result;
}
}  // namespace

std::vector<DeviceInfo> probe_cuda_devices() { return cuda_probe_result().devices; }

std::string cuda_binary_gap(const GpuInfo& gpu) {
#ifdef QRT_WITH_CUDA
  const int cc = gpu.compute_capability(), oldest = cuda_probe::binary_min_arch();
  if (cc >= oldest) return "";
  std::string out = "this binary has CUDA code for sm_" + std::to_string(oldest) + " and newer, not for " +
                    gpu.name + " (sm_" + std::to_string(cc) + ")";
  if (cc >= 70)
    out += "; a build with QRT_CUDA_PORTABLE_ARCHS containing " + std::to_string(cc) + " has it" +
           (cc < 75 ? std::string(" (nvcc 13 dropped sm_70: a CUDA 12 toolkit builds it)") : std::string());
  return out;
#else
  (void)gpu;
  return "built without CUDA";
#endif
}

std::string cuda_unavailable_reason() {
  const auto& r = cuda_probe_result();
  return r.devices.empty() ? r.why : "";
}

std::string gpu_unusable_reason(const DeviceInfo& gpu, const BackendRegistry& registry) {
  const int cc = gpu.gpu.compute_capability();
  std::string reasons;
  for (const Backend* b : registry.all()) {
    const BackendCapability& cap = b->capability();
    if (cap.device != DeviceKind::Cuda) continue;
    std::string why;
    if (!b->built()) why = "not built in this binary";
    else if (cc < cap.min_compute_capability) why = "needs sm_" + std::to_string(cap.min_compute_capability);
    else return "";
    reasons += (reasons.empty() ? "" : ", ") + b->name() + ": " + why;
  }
  return gpu.id + " " + gpu.gpu.name + " (sm_" + std::to_string(cc) + ") has no backend to run on it (" +
         (reasons.empty() ? std::string("no CUDA backend is registered") : reasons) + ")";
}

DeviceInfo choose_auto_device(const std::vector<DeviceInfo>& gpus, const std::string& no_gpu_reason,
                              const std::function<std::string(const DeviceInfo&)>& why_unusable, std::string* why) {
  std::string skipped;
  for (const DeviceInfo& g : gpus) {
    const std::string reason = why_unusable(g);
    if (reason.empty()) {
      if (why)
        *why = "auto: a CUDA device is present (--device cpu runs on the CPU)" +
               (skipped.empty() ? std::string() : "; skipped " + skipped);
      return g;
    }
    skipped += (skipped.empty() ? "" : "; ") + reason;
  }
  if (why) *why = "auto: " + (gpus.empty() ? no_gpu_reason : "no usable CUDA device: " + skipped);
  return probe_cpu();
}

DeviceInfo resolve_device(const std::string& id, std::string* why) {
  if (id == "cpu") return probe_cpu();
  if (id == "auto")
    return choose_auto_device(
        probe_cuda_devices(), cuda_unavailable_reason(),
        [](const DeviceInfo& g) {
          const std::string gap = cuda_binary_gap(g.gpu);
          return gap.empty() ? gpu_unusable_reason(g, BackendRegistry::global()) : g.id + ": " + gap;
        },
        why);
  std::string rest;
  if (id == "cuda" || id == "gpu") {
    rest = "0";
  } else if (id.rfind("cuda:", 0) == 0) {
    rest = id.substr(5);
  } else {
    throw Error(ErrorKind::InvalidInput, "unknown device '" + id + "': expected auto, cpu, cuda or cuda:N");
  }
  char* end = nullptr;
  const long index = std::strtol(rest.c_str(), &end, 10);
  if (rest.empty() || *end != '\0' || index < 0)
    throw Error(ErrorKind::InvalidInput, "unknown device '" + id + "': expected cuda:N with N >= 0");
  const auto devices = probe_cuda_devices();
  if (devices.empty())
    throw Error(ErrorKind::Device, "device '" + id + "' is not available: " + cuda_unavailable_reason());
  if (index >= static_cast<long>(devices.size()))
    throw Error(ErrorKind::Device, "device '" + id + "' is not available: this machine has " +
                                       std::to_string(devices.size()) + " CUDA device(s)");
  const DeviceInfo& d = devices[static_cast<size_t>(index)];
  if (const std::string gap = cuda_binary_gap(d.gpu); !gap.empty())
    throw Error(ErrorKind::Device, "device '" + id + "' cannot run this binary's CUDA code: " + gap +
                                       " (--device cpu runs on the CPU)");
  return d;
}

}  // namespace qrt
