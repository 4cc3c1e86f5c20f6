// The host side of kernel_common.cuh: whether the model's kernels launch with PDL.
#include <cstdlib>
#include <string>

#include "gpu/runtime.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {

bool pdl_enabled() {
  static const bool allowed = [] {
    const char* env = std::getenv("QRT_CUDA_PDL");
    return !(env && std::string(env) == "0");
  }();
  return allowed && qrt::cuda::device_is_sm90_or_newer();
}

}  // namespace qrt::cuda_model
