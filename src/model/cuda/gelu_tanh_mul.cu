// Gemma-2's GeGLU activation: gelu_tanh(gate) * up (see kernels.h).
#include <algorithm>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

// GELU's tanh form as the CPU engine computes it (ops::gelu_tanh_mul), in float32:
// 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3))). tanhf, not a fast approximation: the
// activation's error would otherwise be larger than the fp16 rounding of its output.
__device__ __forceinline__ float gelu_tanh(float g) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * g * (1.f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g)));
}

// The layout of silu_mul: separate gate / up buffers (in_stride = inter, out may be gate) or a
// fused gate/up projection's rows [gate | up] (up = gate + inter, in_stride = 2 * inter); rows
// on grid y.
__global__ void gelu_tanh_mul_kernel(const __half* gate, const __half* up, int64_t in_stride, __half* out, int64_t m,
                                     int64_t inter) {
  pdl_entry();
  for (int64_t r = blockIdx.y; r < m; r += gridDim.y)
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < inter;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float g = __half2float(gate[r * in_stride + c]);
      out[r * inter + c] = __float2half_rn(gelu_tanh(g) * __half2float(up[r * in_stride + c]));
    }
}

}  // namespace

void gelu_tanh_mul(const __half* gate, const __half* up, int64_t in_stride, __half* out, int64_t m, int64_t inter,
                   cudaStream_t s) {
  const dim3 grid(blocks_for(inter, 256), static_cast<unsigned>(std::min<int64_t>(m, 65535)));
  launch(gelu_tanh_mul_kernel, grid, dim3(256), s, gate, up, in_stride, out, m, inter);
}

}  // namespace qrt::cuda_model
