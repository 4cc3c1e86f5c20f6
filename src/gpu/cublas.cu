// The cuBLAS GEMM and its bias epilogue (see cublas.h).
#include "gpu/cublas.h"

#include <algorithm>
#include <string>

#include "gpu/convert.cuh"

namespace qrt::cuda {

cudaDataType_t cuda_dtype(DType t) {
  if (t == DType::F16) return CUDA_R_16F;
  if (t == DType::BF16) return CUDA_R_16BF;
  throw unsupported("CUDA activations must be F16 or BF16, got " + std::string(dtype_name(t)));
}

namespace {

template <typename T>
__global__ void add_bias_kernel(const float* __restrict__ bias, T* __restrict__ y, int64_t m, int64_t n) {
  const int64_t total = m * n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = from_f<T>(to_f<T>(y[i]) + bias[i % n]);
}

}  // namespace

void launch_add_bias(const float* bias, void* y, int64_t m, int64_t n, DType dtype, cudaStream_t stream) {
  const int64_t total = m * n;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 4096));
  if (dtype == DType::F16)
    add_bias_kernel<__half><<<blocks, 256, 0, stream>>>(bias, static_cast<__half*>(y), m, n);
  else
    add_bias_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(bias, static_cast<__nv_bfloat16*>(y), m, n);
  QRT_CUDA_CHECK_LAUNCH();
}

void gemm_xwt(cublasHandle_t handle, const void* x, const void* w, int64_t ldw, void* y, int64_t ldy, int64_t m,
              int64_t n, int64_t k, DType dtype, cudaStream_t stream) {
  const cudaDataType_t t = cuda_dtype(dtype);
  const float alpha = 1.f, beta = 0.f;
  QRT_CUBLAS_CHECK(cublasSetStream(handle, stream));
  // Column-major view: Y^T[N][M] = W[N][K] (stored K-major, op T) x X^T[K][M] (stored K-major, op N).
  QRT_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                static_cast<int>(k), &alpha, w, t, static_cast<int>(ldw), x, t, static_cast<int>(k),
                                &beta, y, t, static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace qrt::cuda
