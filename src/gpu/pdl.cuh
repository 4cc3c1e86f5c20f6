// Programmatic dependent launch (sm_90+), for kernels launched with the programmatic-serialization
// attribute: such a kernel may start while the kernel before it on the stream still runs.
// Internal header for .cu files.
//   pdl_wait()     returns once the kernel before has finished and its writes are visible; a
//                  kernel reads and writes nothing that kernel writes before this call.
//   pdl_trigger()  lets the next such kernel be scheduled once every block of this one started.
// Launched without the attribute, or below sm_90, both are no-ops.
#pragma once

namespace qrt::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace qrt::cuda
