// Per-token e4m3 quantization of F16/BF16 activations (cuda_fp8). Internal, CUDA header.
#pragma once

#include <cstdint>

#include "gpu/check.h"
#include "qrt/dtype.h"

namespace qrt::cuda {

// xq[m][k] = sat_e4m3(x[m][k] / xs[m]), xs[m] = max_k |x[m][k]| / 448 (1 for an all-zero row).
// Needs k % 8 == 0 and 16-byte aligned x.
void launch_quantize_rows_fp8(const void* x, DType dtype, int64_t m, int64_t k, uint8_t* xq, float* xs,
                              cudaStream_t stream);

// Per-tensor: *scale = max |x| / 448 over all m rows (1 when all zero), xq = sat_e4m3(x / *scale).
// row_amax: m floats of scratch. Two launches, no host synchronisation (graph-capturable).
void launch_quantize_tensor_fp8(const void* x, DType dtype, int64_t m, int64_t k, uint8_t* xq, float* row_amax,
                                float* scale, int num_sms, cudaStream_t stream);

// In place: y[m][n] = y[m][n] * mul * ws[n] (* xs[m] when xs != nullptr) (+ bias[n]), F16/BF16.
void launch_scale_cols_inplace(void* y, const float* xs, const float* ws, const float* bias, float mul, int64_t m,
                               int64_t n, DType dtype, cudaStream_t stream);

}  // namespace qrt::cuda
