// libFuzzer target: config.json and quantization_config parsing. Any input must either parse or
// throw qrt::Error; a parsed quantization config must serialize and re-parse to the same JSON.
// Seeds: tests/data/fuzz_seeds/fuzz_config/ (real config.json shapes of every supported method).
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/quant_config.h"

namespace {

void check_quant(const std::string& text) {
  qrt::QuantizationConfig c;
  try {
    c = qrt::parse_quantization_config(text);
  } catch (const qrt::Error&) {
    return;
  }
  (void)c.describe();
  const std::string once = qrt::quantization_config_to_json(c);
  // What we write must be accepted by our own parser and be a fixed point.
  const qrt::QuantizationConfig again = qrt::parse_quantization_config(once);
  if (qrt::quantization_config_to_json(again) != once) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)qrt::parse_model_config(text);
  } catch (const qrt::Error&) {
  }
  check_quant(text);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_object() && j.contains("quantization_config")) check_quant(j["quantization_config"].dump());
  return 0;
}
