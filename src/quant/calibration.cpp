// Registry of the calibrated (GPTQ) quantizer; see calibration.h.
#include "quant/calibration.h"

namespace qrt::quant {

namespace {
GptqCalibrator& slot() {
  static GptqCalibrator calibrator;
  return calibrator;
}
}  // namespace

const GptqCalibrator* gptq_calibrator() { return slot() ? &slot() : nullptr; }

GptqCalibratorRegistrar::GptqCalibratorRegistrar(GptqCalibrator calibrator) { slot() = std::move(calibrator); }

}  // namespace qrt::quant
