// Checked CUDA / cuBLAS calls: a failing call throws qrt::Error naming the statement, file and line
// (ErrorKind::OutOfMemory for allocation failures, ErrorKind::Device otherwise). Never aborts.
// Internal header (includes CUDA headers): only .cu/.cpp files under src/gpu, src/backends/cuda
// and src/model/cuda include it.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "qrt/error.h"

namespace qrt::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* statement, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* statement, const char* file, int line);
const char* cublas_status_name(cublasStatus_t status);

}  // namespace qrt::cuda

#define QRT_CUDA_CHECK(stmt)                                                     \
  do {                                                                           \
    cudaError_t qrt_cuda_err_ = (stmt);                                          \
    if (qrt_cuda_err_ != cudaSuccess)                                            \
      ::qrt::cuda::throw_cuda_error(qrt_cuda_err_, #stmt, __FILE__, __LINE__);   \
  } while (0)

#define QRT_CUBLAS_CHECK(stmt)                                                   \
  do {                                                                           \
    cublasStatus_t qrt_cublas_st_ = (stmt);                                      \
    if (qrt_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                 \
      ::qrt::cuda::throw_cublas_error(qrt_cublas_st_, #stmt, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here (not asynchronous faults).
#define QRT_CUDA_CHECK_LAUNCH() QRT_CUDA_CHECK(cudaGetLastError())
