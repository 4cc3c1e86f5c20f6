// HIGGS quantization of float weights (what `qrt quantize --method higgs` runs), data-free:
//   1. each row's blocks of hadamard_size input columns are rotated by the orthonormal Sylvester
//      Hadamard matrix H (V = W H; H is symmetric and its own inverse, so W = V H decodes);
//   2. each group of group_size rotated values is divided by its root mean square, which makes it
//      close to standard Gaussian whatever the weight's distribution;
//   3. each run of p values is rounded to the nearest point of a grid of 2^(bits*p) points chosen
//      to minimize the mean squared error on standard Gaussian p-vectors;
//   4. the group's scale is refitted by least squares to the chosen points, and the rounding done
//      once more with it.
// The result is the canonical WeightEncoding::RotatedCodebook weight that decode_higgs reads back,
// with the grid and scales already rounded to the folder's 16-bit float type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qrt/dtype.h"
#include "qrt/quantized_weight.h"

namespace qrt {
class ThreadPool;
}

namespace qrt::quant {

// The MSE grid for standard Gaussian p-vectors: 2^(bits*p) points of p values, point i at
// [i*p, i*p + p). p = 1: the Lloyd-Max quantizer of N(0, 1) (computed from the density, exact to
// float); p = 2: Lloyd's algorithm on 32,768 pseudo-random Gaussian pairs of a fixed seed, so the
// same build always gives the same grid. Values rounded to `dtype` (F16 or BF16; F32 keeps them).
std::vector<float> higgs_gaussian_grid(int bits, int p, DType dtype);

// Mean squared error per value of rounding standard Gaussian p-vectors to `grid` (p-vectors),
// estimated on `samples` pseudo-random vectors of a fixed seed (tests and messages).
double higgs_grid_mse(const std::vector<float>& grid, int p, int64_t samples);

struct HiggsQuantizeSettings {
  int bits = 4;            // 2 or 4 (the widths FLUTE's 16-bit packing holds)
  int p = 2;               // 1 or 2
  int group_size = 256;    // divides hadamard_size
  int hadamard_size = 512; // power of 2 dividing in_features
  std::vector<float> grid; // higgs_gaussian_grid(bits, p, dtype)
  DType dtype = DType::F16;   // the scales are rounded to it (the folder stores them so)
};

// Throws InvalidInput naming `name` for settings that do not fit [out_features, in_features] or
// a weight with NaN / Inf values. `pool` (may be null) splits the rows.
QuantizedWeight higgs_quantize(const std::string& name, const float* w, int64_t out_features, int64_t in_features,
                               const HiggsQuantizeSettings& s, ThreadPool* pool = nullptr);

}  // namespace qrt::quant
