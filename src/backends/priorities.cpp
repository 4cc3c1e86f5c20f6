// The auto priority lists, as data (DESIGN.md "A backend"). `auto` walks the list of the layer's
// device class and takes, for each range of M, the first backend whose check passes; a backend
// with a bounded capability().max_m (the GEMV) serves only the small-M range and the walk goes on
// for the rest. Change the order here, from measurements; nothing else encodes it.
#include "backends/backends_internal.h"

namespace qrt {

const std::vector<PriorityList>& priority_lists() {
  static const std::vector<PriorityList> lists = {
      // LLM.int8 is the one integer format whose checkpoint asks for int8 activations. cuda_int8
      // serves every M from one copy of the weight: its own weight-only GEMV up to gemv_max_m rows
      // (decode is memory-bound: the int8 tensor-core path adds quantization launches and reads the
      // same bytes; a tunable, qrt tune measures the crossover), int8 tensor cores above. The
      // weight-only kernels follow, for a layer cuda_int8 cannot take or when it is disabled.
      {"cuda_llm_int8", "CUDA sm_80+, bitsandbytes LLM.int8 weights: int8 tensor cores with the outlier "
                        "decomposition (weight-only GEMV up to gemv_max_m rows), then the weight-only kernels",
       {"cuda_int8", "cuda_gemv", "cuda_marlin", "cuda_dequant"}},
      {"cuda_sm80", "CUDA sm_80+ (Ampere/Ada/Hopper), integer weights: GEMV for M <= 16, tensor-core "
                    "Marlin-class above, dequant + cuBLAS for what neither runs",
       {"cuda_gemv", "cuda_marlin", "cuda_dequant"}},
      {"cuda_sm70", "CUDA sm_70/75 (Volta/Turing), integer weights: GEMV for M <= 16, dequant + cuBLAS",
       {"cuda_gemv", "cuda_dequant"}},
      {"cuda_fp8", "CUDA, FP8 weights: native FP8 tensor cores (sm_89+), else weight-only dequant + cuBLAS",
       {"cuda_fp8", "cuda_dequant"}},
      {"cuda_higgs", "CUDA, HIGGS rotated-codebook weights: the one CUDA backend that runs them (Hadamard-rotated "
                     "activations; grid-lookup GEMV for small M, fp16 V + cuBLAS above)",
       {"cuda_higgs"}},
      {"cpu", "CPU: SIMD kernels (AVX-512 VNNI or AVX2, chosen inside cpu_simd), HIGGS grids (cpu_higgs), then "
              "the reference",
       {"cpu_simd", "cpu_higgs", "cpu_ref"}},
  };
  return lists;
}

std::string device_class(const DeviceInfo& device, const LayerSpec& layer) {
  if (device.kind == DeviceKind::Cpu) return "cpu";
  if (layer.encoding == WeightEncoding::Fp8E4M3) return "cuda_fp8";
  if (layer.encoding == WeightEncoding::RotatedCodebook) return "cuda_higgs";
  if (device.gpu.compute_capability() < 80) return "cuda_sm70";
  return layer.is_llm_int8() ? "cuda_llm_int8" : "cuda_sm80";
}

std::string join_names(const std::vector<std::string>& names, const char* sep) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? sep : "") + names[i];
  return out;
}

}  // namespace qrt
