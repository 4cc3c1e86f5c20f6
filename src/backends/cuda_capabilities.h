// The declared capabilities of the CUDA backends, in one table that every build knows:
// a CPU-only binary uses it for the "not built in this binary" stubs (so `qrt plan --target h100`
// plans exactly as a CUDA build would), and the real CUDA backends return the same declaration
// from capability(), so the two can never drift apart.
#pragma once

#include <string>
#include <vector>

#include "qrt/backend.h"

namespace qrt {

struct CudaBackendDeclaration {
  std::string name;       // "cuda_marlin"
  std::string summary;    // one line
  BackendCapability capability;
  // For a layer the capability accepts: how the backend runs it differently from what its name
  // promises ("" = as advertised); check() returns it as the verdict's note, so the plan shows it.
  std::string (*path_note)(const LayerSpec& layer, const DeviceInfo& device) = nullptr;
  // Rules on the layer that the capability fields cannot say ("" when the layer passes): check()
  // applies them both in the backend and in the stand-in of a CPU-only build, so plans for target
  // profiles agree between the two builds.
  std::string (*layer_obstacle)(const LayerSpec& layer) = nullptr;
};

// cuda_higgs's largest Hadamard block: two passes of at most 4096 points each.
constexpr int kHiggsMaxHadamardPass = 4096;
constexpr int64_t kHiggsMaxHadamard = int64_t{kHiggsMaxHadamardPass} * kHiggsMaxHadamardPass;
// What of a HIGGS layer cuda_higgs cannot run ("" when it can): grid vectors of 1 or 2 values, K a
// multiple of them, at most 256 grid vectors (one byte a code), Hadamard blocks up to the limit.
std::string higgs_layer_obstacle(const LayerSpec& layer);

// Why cuda_fp8 cannot run `layer` on FP8 tensor cores on a GPU of compute capability `cc` ("" when
// it can): it then runs M > gemv_max_m weight-only (dequant + cuBLAS).
std::string fp8_tensor_core_obstacle(const LayerSpec& layer, int cc);

// How cuda_marlin and cuda_gemv run a layer with float zero points ("" for other layers): its
// verdict note, so the plan says how GGUF Q4_1 / Q4_K weights were repacked.
std::string int4_float_zero_note(const LayerSpec& layer);

// How cuda_dequant runs a code-book layer (NF4, FP4, GGUF IQ4; "" for other layers): its verdict
// note, so the plan says the code book is decoded through a table and on which kernels.
std::string dequant_path_note(const LayerSpec& layer, const DeviceInfo& device);

// How cuda_int8 runs `layer` (its verdict note, so the plan shows it): activations int8 per row on
// int8 tensor cores, with LLM.int8's outlier columns (|x| >= the layer's llm_int8_threshold) in
// float, and weight-only below gemv_max_m rows.
std::string int8_path_note(const LayerSpec& layer);

// cuda_dequant, cuda_fp8, cuda_marlin, cuda_gemv, cuda_higgs, cuda_int8 (registry order).
const std::vector<CudaBackendDeclaration>& cuda_backend_declarations();
// Throws qrt::Error(Internal) for a name not in the table.
const CudaBackendDeclaration& cuda_backend_declaration(const std::string& name);

}  // namespace qrt
