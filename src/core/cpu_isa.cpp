#include "core/cpu_isa.h"

#include <algorithm>
#include <cstdlib>

#include "qrt/device.h"

namespace qrt {

CpuIsa cpu_isa_of(const CpuFeatures& f) {
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_vnni) return CpuIsa::Avx512;
  if (avx2) return CpuIsa::Avx2;
  return CpuIsa::Scalar;
}

CpuIsa best_cpu_isa() {
  static const CpuIsa best = cpu_isa_of(probe_cpu().cpu.features);
  return best;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512_vnni";
  }
  return "?";
}

bool parse_cpu_isa(const std::string& name, CpuIsa* out) {
  if (name == "scalar" || name == "baseline") *out = CpuIsa::Scalar;
  else if (name == "avx2") *out = CpuIsa::Avx2;
  else if (name == "avx512_vnni" || name == "avx512") *out = CpuIsa::Avx512;
  else return false;
  return true;
}

CpuIsa resolve_cpu_isa(const std::string& requested) {
  std::string name = requested;
  if (name.empty() || name == "auto") {
    const char* env = std::getenv("QRT_CPU_ISA");
    name = env ? env : "";
  }
  CpuIsa want = best_cpu_isa();
  CpuIsa parsed;
  if (!name.empty() && name != "auto" && parse_cpu_isa(name, &parsed)) want = parsed;
  return std::min(want, best_cpu_isa());
}

}  // namespace qrt
