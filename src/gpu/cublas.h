// The fp16/bf16 GEMM through cuBLAS that the GPU engine (dense projections) and the dequant
// backends (dequantized weight tiles) both run, and the bias epilogue that follows it.
// Internal header (includes CUDA headers).
#pragma once

#include <cstdint>

#include "gpu/check.h"
#include "qrt/dtype.h"

namespace qrt::cuda {

cudaDataType_t cuda_dtype(DType t);  // F16 -> CUDA_R_16F, BF16 -> CUDA_R_16BF; throws otherwise

// cuBLAS: y[M][N] = x[M][K] * W^T with W given as rows [N][ld] (ld >= K) in `dtype`, written into
// y with leading dim ldy (>= N). fp32 accumulation.
void gemm_xwt(cublasHandle_t handle, const void* x, const void* w, int64_t ldw, void* y, int64_t ldy,
              int64_t m, int64_t n, int64_t k, DType dtype, cudaStream_t stream);

// y[m][n] += bias[n] (y F16/BF16, row-major M x N).
void launch_add_bias(const float* bias, void* y, int64_t m, int64_t n, DType dtype, cudaStream_t stream);

}  // namespace qrt::cuda
