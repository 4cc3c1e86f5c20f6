// The instruction-set levels of qrt's CPU kernels, and the one way they are chosen.
//
// Every SIMD kernel lives in a translation unit named for its level (`*_avx2.cpp`, `*_avx512.cpp`).
// CMake compiles each such file with that level's flags (and only those files), and the code
// around it calls into the file only after `best_cpu_isa()` (or a request clamped to it) says this
// CPU runs the level. So the library runs on any x86-64 and uses the widest instructions the CPU
// has. docs/DESIGN.md ("CPU instruction sets") states the rules a level file follows.
#pragma once

#include <cstdint>
#include <string>

namespace qrt {

struct CpuFeatures;

// Ordered: a CPU that runs a level runs every level below it.
//   Avx2:   AVX2, FMA, F16C.
//   Avx512: Avx2 plus AVX-512 F, BW, VL, DQ and VNNI (the flags the *_avx512.cpp files get).
enum class CpuIsa : uint8_t { Scalar, Avx2, Avx512 };

// The highest level these features run.
CpuIsa cpu_isa_of(const CpuFeatures& features);
// The highest level this CPU runs (the shared cpuid/XGETBV probe, qrt::probe_cpu; computed once).
CpuIsa best_cpu_isa();
// "scalar", "avx2", "avx512_vnni": the names plans, tuning parameters and QRT_CPU_ISA use.
const char* cpu_isa_name(CpuIsa isa);
// Accepts those names and the aliases "baseline" (scalar) and "avx512"; false for anything else.
bool parse_cpu_isa(const std::string& name, CpuIsa* out);
// A requested level ("auto" or empty: the environment variable QRT_CPU_ISA, else the best),
// clamped to what this CPU runs, so a plan written on another machine still executes here.
CpuIsa resolve_cpu_isa(const std::string& requested);

}  // namespace qrt
