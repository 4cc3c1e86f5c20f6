// Internal helpers shared by the backends library's own files (not a public interface).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "qrt/backend.h"

namespace qrt {

// A JSON object of kernel parameters ({"tile":[128,128],"warps":4}); `where` prefixes errors.
KernelParams kernel_params_from_json_value(const nlohmann::json& j, const std::string& where);

// The auto priority lists (priorities.cpp): data, one list per device class.
struct PriorityList {
  std::string device_class;   // "cpu", "cuda_sm80", "cuda_sm70", "cuda_fp8", "cuda_higgs", "cuda_llm_int8"
  std::string description;    // for docs and `qrt plan`
  std::vector<std::string> backends;
};
const std::vector<PriorityList>& priority_lists();
// The device class of (device, layer): picks one of priority_lists().
std::string device_class(const DeviceInfo& device, const LayerSpec& layer);

// "a, b and c"
std::string join_names(const std::vector<std::string>& names, const char* sep = ", ");

}  // namespace qrt
