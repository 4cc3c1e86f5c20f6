// What a device can do: the local CPU, each CUDA GPU, and named target profiles for devices that
// are not present (so `qrt plan --target h100` works on a laptop).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qrt {

enum class DeviceKind : uint8_t { Cpu, Cuda };
const char* device_kind_name(DeviceKind k);

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx_vnni = false, avx512_bf16 = false, amx_tile = false, amx_int8 = false;
  // "avx2 fma f16c avx512f ..." in a fixed order, for plans and cache keys.
  std::string to_string() const;
  // Named ISA level used by the CPU auto list and tuning keys: "avx512_vnni", "avx2", "baseline".
  std::string isa_level() const;
};

struct CpuInfo {
  std::string vendor;     // "GenuineIntel", "AuthenticAMD"
  std::string model;      // brand string
  int logical_cores = 1;
  CpuFeatures features;
};

struct GpuInfo {
  int index = 0;
  std::string name;                 // "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;   // compute capability
  int sm_count = 0;
  int64_t memory_bytes = 0;
  int64_t shared_mem_per_block_optin = 0;
  int64_t l2_bytes = 0;
  int driver_version = 0;           // e.g. 13000
  int runtime_version = 0;
  int compute_capability() const { return cc_major * 10 + cc_minor; }  // 90 for sm_90
};

struct DeviceInfo {
  DeviceKind kind = DeviceKind::Cpu;
  std::string id = "cpu";           // "cpu", "cuda:0"
  CpuInfo cpu;                      // always filled (the host)
  GpuInfo gpu;                      // kind == Cuda
  std::string profile;              // non-empty when this describes a target profile, not real hardware
  bool simulated() const { return !profile.empty(); }
  // One line for logs and plan headers: "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.6 GiB)".
  std::string describe() const;
  // Stable identity for tuning caches: name, cc / ISA, SM / core count, driver/runtime.
  std::string cache_key() const;
};

// The machine this process runs on.
DeviceInfo probe_cpu();
// Every CUDA device; empty when built without CUDA or when no GPU/driver is present.
std::vector<DeviceInfo> probe_cuda_devices();
// Why probe_cuda_devices() is empty ("built without CUDA", "no CUDA device: driver not found"), or "".
std::string cuda_unavailable_reason();
// Why this binary cannot run CUDA kernels on a GPU of this compute capability ("" when it can): it
// carries code for the architectures it was built for (the oldest is the limit; newer GPUs compile
// the newest one's PTX), so an older GPU is out of reach whatever the backend.
std::string cuda_binary_gap(const GpuInfo& gpu);
// "cpu" or "cuda:N" -> the real device; throws naming the id when absent or when this binary has no
// code for it (cuda_binary_gap). "auto" -> the device `qrt run` uses when none is named: the first
// CUDA device when this build has CUDA and one is present, else the CPU; *why then says which and
// why ("auto: no CUDA device: ..."), for the log. A GPU this binary has no code for, or that no
// backend of it can run on (below every CUDA backend's minimum compute capability), is skipped by
// "auto", with the reason in *why, and the next GPU or the CPU is taken.
DeviceInfo resolve_device(const std::string& id, std::string* why = nullptr);

class BackendRegistry;
// Why no backend of `registry` can run on `gpu` ("cuda:0 Tesla T4 (sm_75) has no backend to run on
// it (cuda_dequant: needs sm_80, ...)"), or "" when one can.
std::string gpu_unusable_reason(const DeviceInfo& gpu, const BackendRegistry& registry);
// The choice of "auto" among probed `gpus`: the first for which why_unusable() is "", else the CPU.
// *why says which and why, naming every GPU skipped; `no_gpu_reason` explains an empty list.
DeviceInfo choose_auto_device(const std::vector<DeviceInfo>& gpus, const std::string& no_gpu_reason,
                              const std::function<std::string(const DeviceInfo&)>& why_unusable, std::string* why);

// Named profiles: h100, h200, a100, l4, rtx4090, rtx3090, t4, v100, cpu-avx2, cpu-avx512, cpu-baseline.
std::vector<std::string> target_profile_names();
// Throws qrt::Error listing the known names when `name` is unknown.
DeviceInfo target_profile(const std::string& name);

}  // namespace qrt
