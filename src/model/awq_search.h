// AWQ's activation-aware scale search (Lin et al. 2023, "AWQ") for a group of linears that read
// the same input X [T][K]: per input channel a scale s_k = mean|x_k|^alpha (normalized so that
// max(s) x min(s) = 1), the weights' columns multiplied by s before round-to-nearest and the input
// divided by s (folded into the op before: an RMSNorm weight, or the rows of the linear that
// produced X). alpha runs over a grid in [0, 1); the pick minimizes the group's output error
//   sum over the linears of || X W^T - (X / s) Q(W s)^T ||^2 = tr(D H D^T), D = W - Q(W s) / s,
// with H = X^T X accumulated over all calibration tokens, so every token counts at the cost of a
// [N][K] x [K][K] product per linear and alpha. alpha = 0 is plain round-to-nearest: the pick is
// never worse than it on the calibration data.
#pragma once

#include <cstdint>
#include <vector>

namespace qrt {
class ThreadPool;

struct AwqLinearView {
  const float* w = nullptr;  // [out][K] float32
  int64_t out = 0;
};

struct AwqScales {
  std::vector<float> scales;  // [K]: multiply W's columns, divide the input
  float alpha = 0;
  double error = 0;           // output error at the pick
  double rtn_error = 0;       // output error at alpha = 0 (round-to-nearest)
};

// hessian: [K][K] float32, X^T X (symmetric). mean_abs: [K], mean |x_k| over the calibration tokens
// (channels that must share a scale carry equal values). grid >= 1 points alpha = i / grid.
// Quantization: AWQ's asymmetric grid (quant/rtn.h, RtnStyle::Awq) with `bits` and `group_size`.
AwqScales awq_search_scales(const std::vector<AwqLinearView>& linears, int64_t K, const std::vector<float>& hessian,
                            const std::vector<double>& mean_abs, int bits, int group_size, int grid,
                            ThreadPool& pool);

}  // namespace qrt
