// The final logit soft-cap on the GPU: v -> cap * tanh(v / cap) over float logits, in place
// (see kernels.h).
#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

__global__ void softcap_kernel(float* v, int64_t n, float cap) {
  pdl_entry();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    v[i] = cap * tanhf(v[i] / cap);
}

}  // namespace

void softcap(float* v, int64_t n, float cap, cudaStream_t s) {
  launch(softcap_kernel, dim3(blocks_for(n, 256)), dim3(256), s, v, n, cap);
}

}  // namespace qrt::cuda_model
