// Small helpers shared by the CUDA backends of this folder (cuda_dequant, cuda_fp8).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "qrt/backend.h"
#include "qrt/quantized_weight.h"

namespace qrt::cuda {

// The declaration from the shared table (backends/cuda_capabilities.*).
BackendCapability cuda_backend_capability(const std::string& name);

struct IntParamRule {
  const char* name;
  int64_t min, max;
};
// Every key must be one of `rules` and an integer in [min, max]; the Verdict names the bad one.
Verdict validate_known_params(const KernelParams& params, std::initializer_list<IntParamRule> rules);

// The checks a CUDA backend's prepare() starts with, each an Error naming the layer and backend: the
// device is a CUDA one (Unsupported), `backend` accepts `params` (InvalidInput) and, with
// `check_layer`, its check() passes for the layer on `device` (Unsupported).
void check_prepare(const Backend& backend, const QuantizedWeight& weight, const KernelParams& params,
                   const DeviceInfo& device, bool check_layer);

}  // namespace qrt::cuda
