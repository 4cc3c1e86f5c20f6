// Hook for calibrated quantization: GPTQ (Hessian-guided rounding) and AWQ (activation-aware
// channel scales), both fed with the activations of calibration text run through the model.
// `qrt quantize` needs a model forward pass for that, which lives in the model module; that module
// registers its implementation here (a CalibratorRegistrar in one of its .cpp files that every
// binary links). Until one is registered, calibration fails with a clear "not available" error.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qrt/checkpoint.h"
#include "qrt/dtype.h"
#include "qrt/quantized_weight.h"

namespace qrt::quant {

enum class CalibrationAlgorithm : uint8_t { Gptq, Awq };

struct CalibrationSettings {
  CalibrationAlgorithm algorithm = CalibrationAlgorithm::Gptq;
  // Where the calibration tokens come from: a text file, or (empty) sequences sampled from the
  // model itself (model/calibration_samples.h), which every user has offline.
  std::string text_path;
  int64_t tokens = 8192;         // calibration tokens (a text shorter than this gives what it has)
  int64_t window = 256;          // tokens per causal window (and per sampled sequence)
  uint64_t seed = 0;             // of the sampled sequences
  float temperature = 1.0f;      // of the sampled sequences
  int bits = 4;
  int group_size = 128;
  bool sym = true;               // GPTQ only; AWQ is asymmetric
  bool act_order = false;        // GPTQ only: columns by decreasing Hessian diagonal, g_idx written
  double damp_percent = 0.01;    // GPTQ: damping, a fraction of the mean Hessian diagonal
  int awq_grid = 20;             // AWQ: points of the alpha grid in [0, 1)
  int threads = 0;               // 0 = the CPUs this process may use
  // The dtype the folder stores its float tensors in: AWQ folds its scales into norm weights
  // exactly as that dtype holds them.
  DType dtype = DType::F16;
  // (stage, done, total): stage is "sampling" (sequences) or "layers".
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
  // One line for the user about a choice calibration made (when set).
  std::function<void(const std::string& line)> log;
};

struct CalibrationResult {
  // The quantized weight of every linear layer it quantized (keyed by module name, e.g.
  // "model.layers.0.self_attn.q_proj"); layers left out are quantized round-to-nearest.
  std::map<std::string, QuantizedWeight> linears;
  // Float tensors whose values changed (AWQ folds 1/s into the RMSNorm weights), by tensor name.
  std::map<std::string, std::vector<float>> float_tensors;
  int64_t tokens = 0;            // calibration tokens used
  std::string source;            // one line: where they came from
};

using Calibrator = std::function<CalibrationResult(const Checkpoint& checkpoint, const CalibrationSettings& settings)>;

// The registered calibrator, or nullptr.
const Calibrator* calibrator();

struct CalibratorRegistrar {
  explicit CalibratorRegistrar(Calibrator calibrator);
};

}  // namespace qrt::quant
