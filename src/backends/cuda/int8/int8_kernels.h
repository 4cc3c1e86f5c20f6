// The kernels of cuda_int8 (docs/LLM_INT8.md): a weight-only GEMV over the int8 rows for small M,
// and around cuBLASLt's int8 GEMM the LLM.int8 decomposition: which activation columns are outliers,
// per-row int8 quantization of the rest, the outlier columns of the weight, and one epilogue that
// scales the int32 product and adds the outlier part and the bias. Internal, CUDA header.
//
// The weight: int8 rows [n_pad][k_pad] (row-major; k_pad, n_pad multiples of 16, padding zero),
// `ws` [n] the row scales (W[n][k] = w[n][k] * ws[n]), `bias` [n] or nullptr. Activations x [m][k]
// and outputs y [m][n] are F16 or BF16, row-major and contiguous. Every launcher is asynchronous on
// `stream`, allocates nothing and never synchronizes (graph-capturable); a count the host does not
// know (the outlier columns found) is read by the kernels from device memory.
#pragma once

#include <cstdint>

#include "gpu/check.h"
#include "qrt/dtype.h"

namespace qrt::cuda {

struct Int8WeightView {
  const int8_t* w = nullptr;
  const float* ws = nullptr;
  const float* bias = nullptr;
  int64_t n = 0, k = 0, n_pad = 0, k_pad = 0;
};

// y[m][n] = ws[n] * sum_k x[m][k] * w[n][k] (+ bias[n]), float accumulation, any m (8 rows per launch).
void launch_int8_gemv(const Int8WeightView& w, const void* x, void* y, int64_t m, DType dtype, cudaStream_t stream);

// colmax[c] (as the bits of a non-negative float) = max over the m rows of |x[r][c]|, folded in with
// atomicMax: colmax must hold zeros (or smaller maxima) before the call.
void launch_column_absmax(const void* x, DType dtype, int64_t m, int64_t k, uint32_t* colmax, cudaStream_t stream);

// The outlier columns: those whose colmax >= threshold (> 0), in increasing column order. When more
// than max_outliers columns qualify, the max_outliers of largest colmax (ties: lower column first).
// Writes idx[0 .. count) (column numbers), is_out[c] = 1 for a taken column else 0 (c < k), and
// counters[0] = count, counters[1] = qualifying columns left in the int8 part (0 unless over the
// bound). One block.
void launch_select_outliers(const uint32_t* colmax, int64_t k, float threshold, int max_outliers, int32_t* idx,
                            uint8_t* is_out, int32_t* counters, cudaStream_t stream);

// Per row r: s = max |x[r][c]| over the columns not taken (is_out[c] == 0; every column when is_out
// is nullptr), rs[r] = s / 127, xq[r][c] = round(x[r][c] * 127 / s) for those columns and 0 for the
// taken ones and the padding up to k_pad (row stride k_pad). With counters: xo[r][j] = x[r][idx[j]]
// as float for j < counters[0] (row stride max_outliers).
void launch_quantize_rows_int8(const void* x, DType dtype, int64_t m, int64_t k, int64_t k_pad, const uint8_t* is_out,
                               const int32_t* idx, const int32_t* counters, int max_outliers, int8_t* xq, float* rs,
                               float* xo, cudaStream_t stream);

// wo[j][n] = w[n][idx[j]] for j < counters[0] (row stride w.n): the weight's outlier columns, int8.
void launch_gather_outlier_columns(const Int8WeightView& w, const int32_t* idx, const int32_t* counters,
                                   int max_outliers, int8_t* wo, cudaStream_t stream);

// y[r][n] = ws[n] * (c32[r][n] * rs[r] + sum_{j < count} xo[r][j] * wo[j][n]) + bias[n], in float,
// rounded once to dtype. count = counters[0] (0 when counters is nullptr). c32 row stride ldc.
void launch_int8_epilogue(const Int8WeightView& w, const int32_t* c32, int64_t ldc, const float* rs, const float* xo,
                          const int8_t* wo, const int32_t* counters, int max_outliers, int64_t m, void* y,
                          DType dtype, cudaStream_t stream);

}  // namespace qrt::cuda
