// The GPTQ solver (Frantar et al. 2022): quantizes a weight W [N][K] column by column, pushing
// each column's rounding error onto the columns not yet quantized through the inverse Hessian
// H = 2 X^T X of the layer's calibration inputs, so that ||X W^T - X Q^T|| stays small.
// Block size 128 (lazy batch updates), damping of damp_percent x mean(diag H), dead inputs
// (diag H = 0) zeroed, optional act-order (columns by decreasing diag H, recorded in g_idx).
// Quantization grid per group: the GPTQ reference formulas (quant/rtn.h "GPTQ style").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qrt/quantized_weight.h"

namespace qrt {
class ThreadPool;
}

namespace qrt::quant {

struct GptqSolverOptions {
  int bits = 4;
  int group_size = 128;       // -1 = one group per row
  bool sym = true;
  bool act_order = false;
  double damp_percent = 0.01;
  int block_size = 128;
};

// W: [N][K] float32 row-major. hessian: [K][K] (any positive multiple of X^T X; symmetric).
// Throws qrt::Error for bad sizes/options or a Hessian that stays not positive definite after damping.
// With a pool, rows are solved in parallel (same result: rows are independent).
QuantizedWeight gptq_quantize(const std::string& name, const float* W, int64_t N, int64_t K,
                              const std::vector<double>& hessian, const GptqSolverOptions& options,
                              ThreadPool* pool = nullptr);

}  // namespace qrt::quant
