// Registry of the calibrated quantizers; see calibration.h.
#include "quant/calibration.h"

namespace qrt::quant {

namespace {
Calibrator& slot() {
  static Calibrator instance;
  return instance;
}
}  // namespace

const Calibrator* calibrator() { return slot() ? &slot() : nullptr; }

CalibratorRegistrar::CalibratorRegistrar(Calibrator c) { slot() = std::move(c); }

}  // namespace qrt::quant
