// The fast Walsh-Hadamard transform, used wherever a HIGGS weight or activation is rotated (the
// quantizer, the reference dequantizer, the CPU kernel), so that all three rotate identically.
#pragma once

#include <cmath>

namespace qrt {

// b <- H b / sqrt(n), in place, for one block of n values (n a power of 2), H the Sylvester
// Hadamard matrix of order n. H is symmetric with H H = n I: the scaled transform is orthonormal
// and its own inverse, and a row block times H equals H times that block. The butterfly costs
// n log2(n) additions; F is the precision it runs in (the quantizer and the reference use double).
template <typename F>
void hadamard_transform(F* b, int n) {
  for (int len = 1; len < n; len *= 2)
    for (int i = 0; i < n; i += 2 * len)
      for (int j = i; j < i + len; ++j) {
        const F x = b[j], y = b[j + len];
        b[j] = x + y;
        b[j + len] = x - y;
      }
  const F norm = F(1) / std::sqrt(static_cast<F>(n));
  for (int i = 0; i < n; ++i) b[i] *= norm;
}

}  // namespace qrt
