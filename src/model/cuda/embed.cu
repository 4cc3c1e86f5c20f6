// The embedding lookup on the GPU: x[i] = embed[tokens[i]] as float32, scaled (see kernels.h).
#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

__global__ void embed_kernel(const int32_t* tokens, const __half* table, float scale, int64_t hidden, float* x) {
  pdl_entry();
  const int64_t row = blockIdx.x;
  const __half* src = table + static_cast<int64_t>(tokens[row]) * hidden;
  for (int64_t d = threadIdx.x; d < hidden; d += blockDim.x) x[row * hidden + d] = __half2float(src[d]) * scale;
}

}  // namespace

void embed(const int32_t* tokens, int64_t m, const __half* table, float scale, int64_t hidden, float* x,
           cudaStream_t s) {
  launch(embed_kernel, dim3(static_cast<unsigned>(m)), dim3(256), s, tokens, table, scale, hidden, x);
}

}  // namespace qrt::cuda_model
