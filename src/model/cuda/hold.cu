// A kernel that keeps the stream busy for a while, for profiling (see kernels.h).
#include "model/cuda/kernels.h"
#include "model/cuda/kernel_common.cuh"

namespace qrt::cuda_model {
namespace {

__global__ void hold_kernel(uint64_t ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

}  // namespace

void hold_stream(uint32_t microseconds, cudaStream_t s) {
  hold_kernel<<<1, 32, 0, s>>>(static_cast<uint64_t>(microseconds) * 1000);  // a plain launch: nothing before it
  QRT_CUDA_CHECK_LAUNCH();
}

}  // namespace qrt::cuda_model
