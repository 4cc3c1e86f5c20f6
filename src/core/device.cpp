// Device descriptions: probing the local CPU (cpuid + xgetbv), one-line descriptions, tuning-cache
// identities, and the named target profiles used to plan for hardware that is not present.
//
// CUDA probing lives in backends/device_probe.cpp (the only place that knows whether this binary
// was built with CUDA); this file never touches the CUDA runtime.
#include "qrt/device.h"

#include <cstdio>
#include <cstring>
#include <sstream>

#include "qrt/error.h"
#include "qrt/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QRT_X86 1
#endif

namespace qrt {

const char* device_kind_name(DeviceKind k) { return k == DeviceKind::Cpu ? "cpu" : "cuda"; }

std::string CpuFeatures::to_string() const {
  // Fixed order so that two probes of the same machine give the same cache key.
  const std::pair<bool, const char*> table[] = {
      {sse42, "sse4.2"},        {avx, "avx"},
      {avx2, "avx2"},           {fma, "fma"},
      {f16c, "f16c"},           {avx512f, "avx512f"},
      {avx512bw, "avx512bw"},   {avx512vl, "avx512vl"},
      {avx512dq, "avx512dq"},   {avx512_vnni, "avx512_vnni"},
      {avx512_bf16, "avx512_bf16"}, {avx_vnni, "avx_vnni"},
      {amx_tile, "amx_tile"},   {amx_int8, "amx_int8"},
  };
  std::string out;
  for (const auto& [present, name] : table) {
    if (!present) continue;
    if (!out.empty()) out += ' ';
    out += name;
  }
  return out.empty() ? "none" : out;
}

std::string CpuFeatures::isa_level() const {
  const bool avx512 = avx512f && avx512bw && avx512vl;
  if (avx512 && avx512_vnni) return "avx512_vnni";
  if (avx512) return "avx512";
  if (avx2 && fma) return "avx2";
  return "baseline";
}

namespace {

std::string format_gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

}  // namespace

std::string DeviceInfo::describe() const {
  std::ostringstream os;
  if (kind == DeviceKind::Cuda) {
    os << id << " " << gpu.name << " (sm_" << gpu.compute_capability() << ", " << gpu.sm_count << " SMs, "
       << format_gib(gpu.memory_bytes) << ")";
  } else {
    os << id << " " << (cpu.model.empty() ? cpu.vendor : cpu.model) << " (" << cpu.logical_cores
       << (cpu.logical_cores == 1 ? " thread, " : " threads, ") << cpu.features.isa_level() << ")";
  }
  if (simulated()) os << " [target profile '" << profile << "', not this machine]";
  return os.str();
}

std::string DeviceInfo::cache_key() const {
  // Everything that changes which kernel parameters are fastest; nothing that changes per run.
  std::ostringstream os;
  if (kind == DeviceKind::Cuda) {
    os << "cuda|" << gpu.name << "|sm_" << gpu.compute_capability() << "|" << gpu.sm_count << " SMs|driver "
       << gpu.driver_version << "|runtime " << gpu.runtime_version;
  } else {
    os << "cpu|" << (cpu.model.empty() ? cpu.vendor : cpu.model) << "|" << cpu.features.to_string() << "|"
       << cpu.logical_cores << " threads";
  }
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// CPU probe
// ---------------------------------------------------------------------------------------------
namespace {

#ifdef QRT_X86
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned subleaf) {
  Regs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d)) r = Regs{};
  return r;
}

// XCR0: which register states the OS saves on a context switch. A CPU feature is usable only
// when the OS saves its registers too (an AVX-512 CPU under an OS/VM that disables ZMM state).
uint64_t read_xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool bit(unsigned v, int i) { return (v >> i) & 1u; }
#endif

// The affinity mask, not the machine's core count: containers and taskset limit it (the same
// count the thread pool starts with).
int count_logical_cores() { return ThreadPool::available_cpus(); }

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(' ');
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(' ');
  return s.substr(b, e - b + 1);
}

}  // namespace

DeviceInfo probe_cpu() {
  DeviceInfo d;
  d.kind = DeviceKind::Cpu;
  d.id = "cpu";
  d.cpu.logical_cores = count_logical_cores();
#ifdef QRT_X86
  const Regs leaf0 = cpuid(0, 0);
  char vendor[13] = {};
  std::memcpy(vendor + 0, &leaf0.b, 4);
  std::memcpy(vendor + 4, &leaf0.d, 4);
  std::memcpy(vendor + 8, &leaf0.c, 4);
  d.cpu.vendor = vendor;

  const unsigned max_ext = cpuid(0x80000000u, 0).a;
  if (max_ext >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002u + i, 0);
      std::memcpy(brand + 16 * i + 0, &r.a, 4);
      std::memcpy(brand + 16 * i + 4, &r.b, 4);
      std::memcpy(brand + 16 * i + 8, &r.c, 4);
      std::memcpy(brand + 16 * i + 12, &r.d, 4);
    }
    d.cpu.model = trim(brand);
  }

  auto& f = d.cpu.features;
  const unsigned max_leaf = leaf0.a;
  const Regs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.c, 27);
  const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;          // XMM + YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;  // opmask + ZMM_Hi256 + Hi16_ZMM
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG + XTILEDATA

  f.sse42 = bit(l1.c, 20);
  f.avx = bit(l1.c, 28) && os_avx;
  f.fma = bit(l1.c, 12) && os_avx;
  f.f16c = bit(l1.c, 29) && os_avx;
  if (max_leaf >= 7) {
    const Regs l7 = cpuid(7, 0);
    f.avx2 = bit(l7.b, 5) && os_avx;
    f.avx512f = bit(l7.b, 16) && os_avx512;
    f.avx512dq = bit(l7.b, 17) && os_avx512;
    f.avx512bw = bit(l7.b, 30) && os_avx512;
    f.avx512vl = bit(l7.b, 31) && os_avx512;
    f.avx512_vnni = bit(l7.c, 11) && os_avx512;
    f.amx_tile = bit(l7.d, 24) && os_amx;
    f.amx_int8 = bit(l7.d, 25) && os_amx;
    if (l7.a >= 1) {
      const Regs l71 = cpuid(7, 1);
      f.avx_vnni = bit(l71.a, 4) && os_avx;
      f.avx512_bf16 = bit(l71.a, 5) && os_avx512;
    }
  }
#else
  d.cpu.vendor = "unknown";
  d.cpu.model = "non-x86 CPU";
#endif
  if (d.cpu.model.empty()) d.cpu.model = d.cpu.vendor;
  return d;
}

// ---------------------------------------------------------------------------------------------
// Target profiles: realistic figures of devices one may want to plan for (from vendor data
// sheets and cudaGetDeviceProperties of real cards). Driver/runtime are a recent CUDA 12 pair.
// ---------------------------------------------------------------------------------------------
namespace {

struct GpuProfile {
  const char* key;
  const char* name;
  int cc_major, cc_minor, sms;
  int64_t memory_bytes, smem_optin, l2_bytes;
};

constexpr int64_t kMiB = 1024 * 1024;

const GpuProfile kGpuProfiles[] = {
    {"h100", "NVIDIA H100 80GB HBM3", 9, 0, 132, 81559 * kMiB, 232448, 50 * kMiB},
    {"h200", "NVIDIA H200", 9, 0, 132, 143771 * kMiB, 232448, 60 * kMiB},
    {"a100", "NVIDIA A100-SXM4-80GB", 8, 0, 108, 81038 * kMiB, 166912, 40 * kMiB},
    {"l4", "NVIDIA L4", 8, 9, 58, 22478 * kMiB, 101376, 48 * kMiB},
    {"rtx4090", "NVIDIA GeForce RTX 4090", 8, 9, 128, 24217 * kMiB, 101376, 72 * kMiB},
    {"rtx3090", "NVIDIA GeForce RTX 3090", 8, 6, 82, 24259 * kMiB, 101376, 6 * kMiB},
    {"t4", "Tesla T4", 7, 5, 40, 14931 * kMiB, 65536, 4 * kMiB},
    {"v100", "Tesla V100-SXM2-32GB", 7, 0, 80, 32501 * kMiB, 98304, 6 * kMiB},
};

struct CpuProfile {
  const char* key;
  const char* vendor;
  const char* model;
  int threads;
  CpuFeatures features;
};

CpuFeatures features_avx2() {
  CpuFeatures f;
  f.sse42 = f.avx = f.avx2 = f.fma = f.f16c = true;
  return f;
}
CpuFeatures features_avx512() {
  CpuFeatures f = features_avx2();
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512_vnni = f.avx512_bf16 = true;
  f.avx_vnni = f.amx_tile = f.amx_int8 = true;
  return f;
}
CpuFeatures features_baseline() {
  CpuFeatures f;
  f.sse42 = true;
  return f;
}

std::vector<CpuProfile> cpu_profiles() {
  return {
      {"cpu-avx2", "AuthenticAMD", "AMD Ryzen 7 5800X 8-Core Processor", 16, features_avx2()},
      {"cpu-avx512", "GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+", 112, features_avx512()},
      {"cpu-baseline", "GenuineIntel", "generic x86-64 (SSE4.2 only)", 4, features_baseline()},
  };
}

}  // namespace

std::vector<std::string> target_profile_names() {
  std::vector<std::string> names;
  for (const auto& g : kGpuProfiles) names.push_back(g.key);
  for (const auto& c : cpu_profiles()) names.push_back(c.key);
  return names;
}

DeviceInfo target_profile(const std::string& name) {
  for (const auto& g : kGpuProfiles) {
    if (name != g.key) continue;
    DeviceInfo d;
    d.kind = DeviceKind::Cuda;
    d.id = "cuda:0";
    d.profile = g.key;
    d.cpu = probe_cpu().cpu;  // the host of a simulated GPU: this machine's CPU
    d.gpu.index = 0;
    d.gpu.name = g.name;
    d.gpu.cc_major = g.cc_major;
    d.gpu.cc_minor = g.cc_minor;
    d.gpu.sm_count = g.sms;
    d.gpu.memory_bytes = g.memory_bytes;
    d.gpu.shared_mem_per_block_optin = g.smem_optin;
    d.gpu.l2_bytes = g.l2_bytes;
    d.gpu.driver_version = 12080;
    d.gpu.runtime_version = 12080;
    return d;
  }
  for (const auto& c : cpu_profiles()) {
    if (name != c.key) continue;
    DeviceInfo d;
    d.kind = DeviceKind::Cpu;
    d.id = "cpu";
    d.profile = c.key;
    d.cpu.vendor = c.vendor;
    d.cpu.model = c.model;
    d.cpu.logical_cores = c.threads;
    d.cpu.features = c.features;
    return d;
  }
  std::string known;
  for (const auto& n : target_profile_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(ErrorKind::InvalidInput, "unknown target profile '" + name + "'; known profiles: " + known);
}

}  // namespace qrt
