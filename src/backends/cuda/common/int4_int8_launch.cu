// What the marlin and gemv kernel families share on the host side of a launch: the launch with
// programmatic dependent launch, the split-K scratch sizes, and the act-order column permutation
// of the activations (see int4_int8_kernels.h).
#include <cuda_fp16.h>

#include <algorithm>

#include "backends/cuda/common/int4_int8_kernels.h"
#include "gpu/runtime.h"

namespace qrt::cuda {
namespace int4k {

template <typename T>
__global__ void permute_cols_kernel(const T* __restrict__ x, T* __restrict__ xp, const int32_t* __restrict__ perm,
                                    int64_t m, int64_t k) {
  const int64_t total = m * k;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / k, col = i % k;
    xp[i] = x[row * k + perm[col]];
  }
}

}  // namespace int4k

int64_t int4_max_partial_tiles(int sms) { return 8LL * std::max(sms, 1); }
int64_t int4_max_tile_floats() { return 32LL * 128; }
int64_t int4_counter_count(int sms) { return 8LL * std::max(sms, 1) + 64; }

cudaError_t launch_int4_family(void* fn, dim3 grid, int smem, void** args, bool pdl, cudaStream_t stream) {
  if (!pdl || !device_is_sm90_or_newer()) return cudaLaunchKernel(fn, grid, dim3(256), args, smem, stream);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(256);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelExC(&cfg, fn, args);
}

cudaError_t launch_permute_cols(const void* x, void* xp, const int32_t* perm, int64_t m, int64_t k,
                                cudaStream_t stream) {
  const int64_t total = m * k;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535);
  int4k::permute_cols_kernel<__half><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      static_cast<const __half*>(x), static_cast<__half*>(xp), perm, m, k);
  return cudaGetLastError();
}

}  // namespace qrt::cuda
