// cuda_marlin's wgmma kernel in a binary built without sm_90a code (QRT_CUDA_ARCHS without 90):
// every launch answers cudaErrorNotSupported and the backend keeps to its mma.sync kernel.
#include "backends/cuda/common/int4_int8_kernels.h"

namespace qrt::cuda {

bool wgmma_kernels_built() { return false; }
cudaError_t wgmma_init_kernels() { return cudaSuccess; }
int wgmma_auto_split(const Int4DeviceView&, int64_t, int, int) { return 1; }
bool wgmma_stream_k_fits(const Int4DeviceView&, int64_t, int, bool, const Int4Workspace&, int) { return false; }
cudaError_t launch_qmm_wgmma(const Int4DeviceView&, const void*, void*, int64_t, bool, const WgmmaConfig&,
                             const Int4Workspace&, int, cudaStream_t) {
  return cudaErrorNotSupported;
}

}  // namespace qrt::cuda
