// fp16 -> float32 conversion of a buffer (see kernels.h).
#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

__global__ void half_to_float_kernel(const __half* in, float* out, int64_t n) {
  pdl_entry();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __half2float(in[i]);
}

}  // namespace

void half_to_float(const __half* in, float* out, int64_t n, cudaStream_t s) {
  launch(half_to_float_kernel, dim3(blocks_for(n, 256)), dim3(256), s, in, out, n);
}

}  // namespace qrt::cuda_model
