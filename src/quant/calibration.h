// Hook for calibrated quantization (the GPTQ algorithm with a Hessian from calibration text).
// `qrt quantize --calib` needs a model forward pass, which lives in the model module; that module
// registers its implementation here at static-init time (a static GptqCalibratorRegistrar in one of
// its .cpp files). Until one is registered, `--calib` fails with a clear "not available" error.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "qrt/checkpoint.h"
#include "qrt/quantized_weight.h"

namespace qrt::quant {

struct CalibrationSettings {
  std::string calib_text_path;   // --calib
  int bits = 4;
  int group_size = 128;
  bool sym = true;
  bool desc_act = false;
  double damp_percent = 0.1;
  std::function<void(int64_t done, int64_t total)> progress;
};

// Returns the quantized weight of every linear layer it quantized (keyed by module name, e.g.
// "model.layers.0.self_attn.q_proj"); layers it leaves out are quantized round-to-nearest.
using GptqCalibrator =
    std::function<std::map<std::string, QuantizedWeight>(const Checkpoint& checkpoint, const CalibrationSettings& settings)>;

// The registered calibrator, or nullptr.
const GptqCalibrator* gptq_calibrator();

struct GptqCalibratorRegistrar {
  explicit GptqCalibratorRegistrar(GptqCalibrator calibrator);
};

}  // namespace qrt::quant
