// The GPU forward engine (CUDA builds only; CUDA-free header): the Llama model (llama_model.h)
// over the CUDA block ops (cuda_ops.h: fp16 activations, float32 residual stream and norms, fp16
// KV cache, one stream, the decode step captured in a CUDA graph; q/k/v and gate/up fused where
// the plan says so). make_cuda_engine() is what make_engine() (src/model/weights.cpp) calls for
// DeviceKind::Cuda, so `qrt run --device cuda:0` works; CudaForwardEngine adds on-device
// generation (no host synchronisation per token) for benchmarks and callers that want it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qrt/batch_engine.h"
#include "qrt/model.h"

namespace qrt {

struct DeviceSampling {
  float temperature = 0.f;  // <= 0: greedy
  int top_k = 0;            // 0: off
  float top_p = 1.f;        // >= 1: off
  uint64_t seed = 0;
};

class CudaForwardEngine : public ForwardEngine {
 public:
  // Appends `steps` tokens after `last_token`, which is fed at position `pos` (the cache holds
  // [0, pos)); each step is one graph replay whose sampled token feeds the next on the device.
  // Returns the generated tokens. Throws qrt::Error when pos + steps > capacity().
  virtual std::vector<int32_t> generate_on_device(int32_t last_token, int64_t pos, int64_t steps,
                                                  const DeviceSampling& sampling) = 0;
  // Seconds the last generate_on_device() took on the device (CUDA events around the replays).
  virtual double last_generate_seconds() const = 0;
  // Where a decode step's time goes: one step of `token` at `pos` (the cache holds [0, pos); the
  // step writes position pos) enqueued behind a held stream with an event after every op, so the
  // ops run back to back as in the graph. One row per op kind, in order of first appearance.
  struct OpTime {
    std::string op;
    double us = 0;      // summed over the step
    int launches = 0;   // times the op ran in the step (e.g. once per block)
    // The model's own kernels (norm, RoPE, attention, SwiGLU): one launch timed alone, as the
    // mean of 32 back-to-back launches in a CUDA graph (no event between them); 0 = not timed.
    double graph_us_each = 0;
  };
  virtual std::vector<OpTime> profile_decode_step(int32_t token, int64_t pos) = 0;
  // The launches of one decode step as the graph that forward() replays holds them: the graph
  // nodes (kernels, and any memset or copy a library adds) each op added, by op in order of first
  // appearance, and the graph's kernel nodes in all. Captures the step if it was not yet.
  struct StepLaunches {
    std::vector<std::pair<std::string, int>> nodes_by_op;
    int nodes = 0;
    int kernels = 0;
  };
  virtual StepLaunches decode_step_launches() = 0;
  // Decode steps (forward() of one row) replay the captured graph (true, the default) or launch
  // their kernels one by one (false), e.g. to compare the two.
  virtual void use_graphs(bool on) = 0;
};

std::unique_ptr<ForwardEngine> make_cuda_engine(std::shared_ptr<const ModelWeights> weights,
                                                const EngineOptions& options);
// The batched engine on the GPU (qrt/batch_engine.h): the same model and ops with a paged KV pool
// of options.kv_blocks blocks in GPU memory. make_batch_engine() calls it for DeviceKind::Cuda.
std::unique_ptr<BatchEngine> make_cuda_batch_engine(std::shared_ptr<const ModelWeights> weights,
                                                    const EngineOptions& options);

}  // namespace qrt
