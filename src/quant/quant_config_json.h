// JSON-level entry points of the quantization configs (the public header takes text; the
// checkpoint loader already holds parsed JSON).
#pragma once

#include <nlohmann/json.hpp>

#include "qrt/quant_config.h"

namespace qrt::quant {

QuantizationConfig parse_quantization_config_json(const nlohmann::json& j, const std::string& where);
nlohmann::json quantization_config_to_json_value(const QuantizationConfig& c);

}  // namespace qrt::quant
