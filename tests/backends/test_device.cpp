// Device probing: the local CPU (cpuid/xgetbv), descriptions and cache keys, device ids.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "qrt/device.h"
#include "qrt/error.h"
#include "qrt/plan.h"

namespace qrt {
namespace {

TEST(CpuProbe, AgreesWithTheKernel) {
  const DeviceInfo d = probe_cpu();
  EXPECT_EQ(d.kind, DeviceKind::Cpu);
  EXPECT_FALSE(d.simulated());
  EXPECT_GE(d.cpu.logical_cores, 1);
  EXPECT_FALSE(d.cpu.vendor.empty());
  EXPECT_FALSE(d.cpu.model.empty());
  // /proc/cpuinfo lists what the kernel enabled; cpuid + xgetbv must agree on the features qrt uses.
  std::ifstream in("/proc/cpuinfo");
  if (!in) GTEST_SKIP() << "/proc/cpuinfo not readable";
  std::string line, flags;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  auto has = [&](const char* f) { return flags.find(std::string(" ") + f + " ") != std::string::npos; };
  const auto& f = d.cpu.features;
  EXPECT_EQ(f.avx2, has("avx2"));
  EXPECT_EQ(f.fma, has("fma"));
  EXPECT_EQ(f.f16c, has("f16c"));
  EXPECT_EQ(f.avx512f, has("avx512f"));
  EXPECT_EQ(f.avx512bw, has("avx512bw"));
  EXPECT_EQ(f.avx512vl, has("avx512vl"));
  EXPECT_EQ(f.avx512dq, has("avx512dq"));
  EXPECT_EQ(f.avx512_vnni, has("avx512_vnni"));
  EXPECT_EQ(f.avx512_bf16, has("avx512_bf16"));
  EXPECT_EQ(f.avx_vnni, has("avx_vnni"));
  EXPECT_EQ(f.amx_tile, has("amx_tile"));
}

TEST(CpuProbe, DescribeAndCacheKeyAreStable) {
  const DeviceInfo a = probe_cpu(), b = probe_cpu();
  EXPECT_EQ(a.cache_key(), b.cache_key());
  EXPECT_EQ(a.cache_key().rfind("cpu|", 0), 0u);
  EXPECT_NE(a.describe().find(a.cpu.features.isa_level()), std::string::npos);
  const DeviceInfo h100 = target_profile("h100"), a100 = target_profile("a100");
  EXPECT_NE(h100.cache_key(), a100.cache_key());
  EXPECT_NE(h100.cache_key().find("sm_90"), std::string::npos);
  EXPECT_NE(h100.describe().find("NVIDIA H100 80GB HBM3 (sm_90, 132 SMs"), std::string::npos) << h100.describe();
}

TEST(CpuFeatures, IsaLevelsAndStrings) {
  EXPECT_EQ(target_profile("cpu-avx512").cpu.features.isa_level(), "avx512_vnni");
  EXPECT_EQ(target_profile("cpu-avx2").cpu.features.isa_level(), "avx2");
  EXPECT_EQ(target_profile("cpu-baseline").cpu.features.isa_level(), "baseline");
  EXPECT_EQ(target_profile("cpu-avx2").cpu.features.to_string(), "sse4.2 avx avx2 fma f16c");
  EXPECT_EQ(CpuFeatures{}.to_string(), "none");
}

TEST(ResolveDevice, CpuAndBadIds) {
  EXPECT_EQ(resolve_device("cpu").kind, DeviceKind::Cpu);
  for (const char* bad : {"gpu0", "cuda:x", "cuda:-1", "tpu"}) {
    try {
      resolve_device(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  if (probe_cuda_devices().empty()) {
    EXPECT_FALSE(cuda_unavailable_reason().empty());
    try {
      resolve_device("cuda:0");
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(cuda_unavailable_reason()), std::string::npos) << e.what();
    }
  }
}

// "auto" (the default of qrt run, perplexity and plan): the first CUDA device this binary has
// code for when one is present, else the CPU, and it says which and why.
TEST(ResolveDevice, AutoPicksTheGpuWhenPresentAndSaysWhy) {
  std::string why;
  const DeviceInfo d = resolve_device("auto", &why);
  const auto gpus = probe_cuda_devices();
  const DeviceInfo* usable = nullptr;
  for (const auto& g : gpus)
    if (!usable && cuda_binary_gap(g.gpu).empty() && gpu_unusable_reason(g, BackendRegistry::global()).empty())
      usable = &g;
  if (gpus.empty()) {
    EXPECT_EQ(d.kind, DeviceKind::Cpu);
    EXPECT_EQ(why, "auto: " + cuda_unavailable_reason());
  } else if (!usable) {
    EXPECT_EQ(d.kind, DeviceKind::Cpu);
    EXPECT_NE(why.find("no usable CUDA device"), std::string::npos) << why;
  } else {
    EXPECT_EQ(d.kind, DeviceKind::Cuda);
    EXPECT_EQ(d.id, usable->id);
    EXPECT_NE(why.find("CUDA device is present"), std::string::npos) << why;
  }
  std::string untouched = "x";
  resolve_device("cpu", &untouched);
  EXPECT_EQ(untouched, "x") << "a named device has no 'why'";
}

// "auto" skips a GPU no backend of this binary can run on (below sm_70: cuda_dequant's minimum) and
// takes the next one or the CPU, with the reason in the log line. Fake device lists stand in for
// the probe.
TEST(ResolveDevice, AutoSkipsGpusNoBackendServes) {
  DeviceInfo pascal = target_profile("t4");
  pascal.id = "cuda:0";
  pascal.gpu.name = "Tesla P100";
  pascal.gpu.cc_major = 6;
  pascal.gpu.cc_minor = 0;
  const std::string reason = gpu_unusable_reason(pascal, BackendRegistry::global());
  EXPECT_NE(reason.find("cuda:0"), std::string::npos) << reason;
  EXPECT_NE(reason.find("(sm_60) has no backend to run on it"), std::string::npos) << reason;
  DeviceInfo t4 = target_profile("t4");  // sm_75: only cuda_dequant, but that is a backend
  t4.id = "cuda:0";
  DeviceInfo h100 = target_profile("h100");
  h100.id = "cuda:1";
  bool cuda_built = false;
  for (const Backend* b : BackendRegistry::global().all())
    cuda_built |= b->capability().device == DeviceKind::Cuda && b->built();
  EXPECT_EQ(gpu_unusable_reason(h100, BackendRegistry::global()).empty(), cuda_built);
  EXPECT_EQ(gpu_unusable_reason(t4, BackendRegistry::global()).empty(), cuda_built);

  auto only_sm80 = [](const DeviceInfo& g) {
    return g.gpu.compute_capability() >= 80 ? std::string() : g.id + " is sm_" + std::to_string(g.gpu.compute_capability());
  };
  std::string why;
  DeviceInfo d = choose_auto_device({t4, h100}, "", only_sm80, &why);
  EXPECT_EQ(d.id, "cuda:1");
  EXPECT_NE(why.find("skipped cuda:0 is sm_75"), std::string::npos) << why;
  d = choose_auto_device({t4}, "", only_sm80, &why);
  EXPECT_EQ(d.kind, DeviceKind::Cpu);
  EXPECT_EQ(why, "auto: no usable CUDA device: cuda:0 is sm_75");
  d = choose_auto_device({}, "built without CUDA", only_sm80, &why);
  EXPECT_EQ(d.kind, DeviceKind::Cpu);
  EXPECT_EQ(why, "auto: built without CUDA");
}

// A GPU older than every architecture the binary was built for cannot run any of its kernels;
// the reason names the GPU and the oldest architecture there is code for.
TEST(ResolveDevice, BinaryGapNamesTheArchitectures) {
  GpuInfo pascal;
  pascal.name = "Tesla P100";
  pascal.cc_major = 6;
  pascal.cc_minor = 0;
  GpuInfo hopper = pascal;
  hopper.name = "H100";
  hopper.cc_major = 9;
#ifdef QRT_WITH_CUDA
  const std::string gap = cuda_binary_gap(pascal);
  EXPECT_NE(gap.find("Tesla P100 (sm_60)"), std::string::npos) << gap;
  EXPECT_NE(gap.find("and newer"), std::string::npos) << gap;
  EXPECT_EQ(cuda_binary_gap(hopper), "");  // newer GPUs run the newest architecture's PTX
#else
  EXPECT_EQ(cuda_binary_gap(hopper), "built without CUDA");
#endif
}

}  // namespace
}  // namespace qrt
