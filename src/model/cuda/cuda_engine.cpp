// The GPU forward engine (see cuda_engine.h): the Llama model (llama_model.h) over the CUDA block
// ops (cuda_ops.h), with on-device generation and the per-op profile of a decode step; and the
// batched engine over the same ops with a paged KV pool (make_cuda_batch_engine).
#include "model/cuda/cuda_engine.h"

#include <fmt/format.h>

#include "model/cuda/cuda_ops.h"
#include "model/llama_model.h"
#include "qrt/error.h"

namespace qrt {
namespace {

class CudaEngine final : public model::LlamaEngine<CudaForwardEngine, model::CudaOps> {
 public:
  using LlamaEngine::LlamaEngine;

  std::vector<int32_t> generate_on_device(int32_t last_token, int64_t pos, int64_t steps,
                                          const DeviceSampling& sampling) override {
    model_.check_args(&last_token, 1, pos);
    if (steps < 1) return {};
    if (pos + steps > capacity())
      throw invalid_input(fmt::format("generate: positions [{}, {}) exceed the KV cache of {} positions", pos,
                                      pos + steps, capacity()));
    std::vector<int32_t> out;
    ops_.on_device([&] { out = ops_.generate([&] { model_.run_step(1, 0, 1); }, last_token, pos, steps, sampling); });
    return out;
  }
  double last_generate_seconds() const override { return ops_.last_generate_seconds(); }

  std::vector<OpTime> profile_decode_step(int32_t token, int64_t pos) override {
    model_.check_args(&token, 1, pos);
    const model::LlamaModel::Views v = model_.views(0);
    std::vector<OpTime> out;
    ops_.on_device([&] {
      out = ops_.profile([&] { model_.run_step(1, 0, 1); }, token, pos, v.q, v.k, v.v, v.gate, v.up,
                         model_.input_norm(0));
    });
    return out;
  }

  StepLaunches decode_step_launches() override {
    StepLaunches out;
    ops_.on_device([&] { out = ops_.step_launches([&] { model_.run_step(1, 0, 1); }); });
    return out;
  }
  void use_graphs(bool on) override { ops_.use_graphs(on); }
};

}  // namespace

std::unique_ptr<ForwardEngine> make_cuda_engine(std::shared_ptr<const ModelWeights> weights,
                                                const EngineOptions& options) {
  return std::make_unique<CudaEngine>(std::move(weights), options);
}

std::unique_ptr<BatchEngine> make_cuda_batch_engine(std::shared_ptr<const ModelWeights> weights,
                                                    const EngineOptions& options) {
  return std::make_unique<model::LlamaBatchEngine<model::CudaOps>>(std::move(weights), options);
}

}  // namespace qrt
