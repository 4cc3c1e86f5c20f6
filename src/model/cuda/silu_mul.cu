// The SwiGLU activation: silu(gate) * up (see kernels.h).
#include <algorithm>

#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

// out[r][c] = silu(gate[r * in_stride + c]) * up[r * in_stride + c], out rows `inter` wide. Separate
// gate / up buffers (in_stride = inter, out may be gate) or a fused gate/up projection's rows
// [gate | up] (up = gate + inter, in_stride = 2 * inter). Rows on grid y, no 64-bit division.
__global__ void silu_mul_kernel(const __half* gate, const __half* up, int64_t in_stride, __half* out, int64_t m,
                                int64_t inter) {
  pdl_entry();
  for (int64_t r = blockIdx.y; r < m; r += gridDim.y)
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < inter;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float g = __half2float(gate[r * in_stride + c]);
      out[r * inter + c] = __float2half_rn(g / (1.f + __expf(-g)) * __half2float(up[r * in_stride + c]));
    }
}

}  // namespace

void silu_mul(const __half* gate, const __half* up, int64_t in_stride, __half* out, int64_t m, int64_t inter,
              cudaStream_t s) {
  const dim3 grid(blocks_for(inter, 256), static_cast<unsigned>(std::min<int64_t>(m, 65535)));
  launch(silu_mul_kernel, grid, dim3(256), s, gate, up, in_stride, out, m, inter);
}

}  // namespace qrt::cuda_model
