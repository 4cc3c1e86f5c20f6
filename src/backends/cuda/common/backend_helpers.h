// What the CUDA backends' adapters (the *_backend.cpp of gemv/, marlin/, dequant/, fp8/) share: the
// Backend base with their name, summary and declared capability, the parameter check, and the checks
// prepare() starts with.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "qrt/backend.h"
#include "qrt/quantized_weight.h"

namespace qrt::cuda {

// A CUDA backend's identity: `name`, a one-line `summary`, and the capability declared for `name`
// in the shared table (backends/cuda_capabilities.*).
class CudaBackend : public Backend {
 public:
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return summary_; }
  const BackendCapability& capability() const override { return cap_; }

 protected:
  CudaBackend(std::string name, std::string summary);

 private:
  std::string name_;
  std::string summary_;
  BackendCapability cap_;
};

struct IntParamRule {
  const char* name;
  int64_t min, max;
};
// Every key of `keys` at 0: what the backends whose parameters read 0 as "chosen at run time" start
// from.
KernelParams zero_params(std::initializer_list<const char*> keys);

// Every key must be one of `rules` and an integer in [min, max]; the Verdict names the bad one.
Verdict validate_known_params(const KernelParams& params, std::initializer_list<IntParamRule> rules);

// The checks a CUDA backend's prepare() starts with, each an Error naming the layer and backend: the
// device is a CUDA one (Unsupported), `backend` accepts `params` (InvalidInput) and, with
// `check_layer`, its check() passes for the layer on `device` (Unsupported).
void check_prepare(const Backend& backend, const QuantizedWeight& weight, const KernelParams& params,
                   const DeviceInfo& device, bool check_layer);

}  // namespace qrt::cuda
