// The instruction-set ladder every CPU kernel dispatches on (core/cpu_isa.h).
#include "core/cpu_isa.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "qrt/device.h"

namespace qrt {
namespace {

CpuFeatures avx2_features() {
  CpuFeatures f;
  f.sse42 = f.avx = f.avx2 = f.fma = f.f16c = true;
  return f;
}

TEST(CpuIsa, LevelNeedsEveryFeatureItsFilesAreCompiledFor) {
  EXPECT_EQ(cpu_isa_of(CpuFeatures{}), CpuIsa::Scalar);
  CpuFeatures f = avx2_features();
  EXPECT_EQ(cpu_isa_of(f), CpuIsa::Avx2);
  f.f16c = false;  // the AVX2 files convert fp16 in registers
  EXPECT_EQ(cpu_isa_of(f), CpuIsa::Scalar);
  f = avx2_features();
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = true;
  EXPECT_EQ(cpu_isa_of(f), CpuIsa::Avx2) << "AVX-512 without VNNI is not the AVX-512 level";
  f.avx512_vnni = true;
  EXPECT_EQ(cpu_isa_of(f), CpuIsa::Avx512);
  f.avx512dq = false;
  EXPECT_EQ(cpu_isa_of(f), CpuIsa::Avx2);
}

TEST(CpuIsa, NamesRoundTripAndUnknownNamesAreRefused) {
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) {
    CpuIsa parsed;
    ASSERT_TRUE(parse_cpu_isa(cpu_isa_name(isa), &parsed)) << cpu_isa_name(isa);
    EXPECT_EQ(parsed, isa);
  }
  CpuIsa parsed = CpuIsa::Avx2;
  EXPECT_TRUE(parse_cpu_isa("baseline", &parsed));
  EXPECT_EQ(parsed, CpuIsa::Scalar);
  EXPECT_TRUE(parse_cpu_isa("avx512", &parsed));
  EXPECT_EQ(parsed, CpuIsa::Avx512);
  EXPECT_FALSE(parse_cpu_isa("sse2", &parsed));
  EXPECT_FALSE(parse_cpu_isa("", &parsed));
}

TEST(CpuIsa, RequestsAreClampedToThisCpu) {
  EXPECT_EQ(best_cpu_isa(), cpu_isa_of(probe_cpu().cpu.features));
  EXPECT_EQ(resolve_cpu_isa("scalar"), CpuIsa::Scalar);
  EXPECT_LE(resolve_cpu_isa("avx512_vnni"), best_cpu_isa());
  ::unsetenv("QRT_CPU_ISA");
  EXPECT_EQ(resolve_cpu_isa("auto"), best_cpu_isa());
  ::setenv("QRT_CPU_ISA", "scalar", 1);
  EXPECT_EQ(resolve_cpu_isa("auto"), CpuIsa::Scalar);
  EXPECT_EQ(resolve_cpu_isa(""), CpuIsa::Scalar);
  EXPECT_EQ(resolve_cpu_isa("avx2"), std::min(CpuIsa::Avx2, best_cpu_isa())) << "an explicit request wins";
  ::unsetenv("QRT_CPU_ISA");
}

}  // namespace
}  // namespace qrt
