// Factories of the built-in backends, called by the registry (backends/registry.cpp).
// CUDA factories exist only in a CUDA build; otherwise the registry declares those backends
// as "not built in this binary" so they are reported, never silently absent.
#pragma once

#include <memory>

#include "qrt/backend.h"

namespace qrt {

std::unique_ptr<Backend> make_cpu_ref_backend();    // backends/cpu_ref
std::unique_ptr<Backend> make_cpu_simd_backend();   // backends/cpu_simd (AVX2 / AVX-512 VNNI)
std::unique_ptr<Backend> make_cpu_higgs_backend();  // backends/cpu_higgs (HIGGS rotated codebooks)

#ifdef QRT_WITH_CUDA
std::unique_ptr<Backend> make_cuda_dequant_backend();  // backends/cuda/dequant: dequant tiles + cuBLAS
std::unique_ptr<Backend> make_cuda_fp8_backend();      // backends/cuda/fp8: e4m3 via cuBLASLt
std::unique_ptr<Backend> make_cuda_marlin_backend();   // backends/cuda/marlin: tensor-core int4/int8
std::unique_ptr<Backend> make_cuda_gemv_backend();     // backends/cuda/gemv: M <= 16 GEMV
std::unique_ptr<Backend> make_cuda_higgs_backend();    // backends/cuda/higgs: HIGGS grid lookups + cuBLAS
std::unique_ptr<Backend> make_cuda_int8_backend();     // backends/cuda/int8: int8 tensor cores, LLM.int8
#endif

}  // namespace qrt
