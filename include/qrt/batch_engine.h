// A batched forward engine: each step runs rows of many sequences through the model at once (the
// decode row of every running sequence and chunks of new prompts), so the quantized linears see
// M = the step's rows and the plan's kernel for that M runs. Its KV cache is a pool of fixed-size
// blocks (kKvBlockPositions positions each); every sequence has a block table mapping its logical
// block b (positions [16 b, 16 b + 16)) to a block of the pool. Who owns which block is the
// caller's bookkeeping (the server's scheduler: a free list): sequences come and go without any
// copy, and a finished sequence's blocks are free for the next step.
//
// Results. A row's logits are those the single-sequence engine (ForwardEngine) gives for the same
// tokens at the same positions, bit for bit on the CPU: every kernel computes a row alone, in the
// same order whatever the other rows are, and a decode row (the only row of its sequence in a
// step) splits its attention exactly as a one-row forward does. Prefill chunks must start at
// multiples of prefill_chunk() for that to hold (tests/model/test_batch_engine.cpp checks it).
// On a CUDA GPU (fp16 activations, an fp16 or fp8 KV pool in GPU memory) a row's logits are the
// CPU's within the fp16 tolerance of the GPU engine (tests/backends/test_cuda_engine.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qrt/model.h"

namespace qrt {

constexpr int64_t kKvBlockPositions = 16;

// The blocks of one sequence: position p lives in block blocks[p / kKvBlockPositions].
struct KvBlockTable {
  const int32_t* blocks = nullptr;
  int64_t count = 0;
};

// The rows of one step: row i is token tokens[i] at position positions[i] of sequence
// sequences[i] (an index into tables). Rows of one sequence are consecutive positions (a prompt
// chunk) or one position (a decode row); their keys and values are written before any row of the
// step attends, so a chunk attends to itself causally.
struct BatchStep {
  int64_t rows = 0;
  const int32_t* tokens = nullptr;
  const int64_t* positions = nullptr;
  const int32_t* sequences = nullptr;
  const KvBlockTable* tables = nullptr;
  int64_t table_count = 0;
  // Rows whose logits are wanted, ascending; step() writes logits[k * vocab, +vocab) for row
  // logit_rows[k].
  const int64_t* logit_rows = nullptr;
  int64_t logit_count = 0;
};

class BatchEngine {
 public:
  virtual ~BatchEngine() = default;
  virtual const ModelConfig& config() const = 0;
  // Blocks of the KV pool (EngineOptions::kv_blocks).
  virtual int64_t kv_blocks() const = 0;
  // Most rows one step may carry (EngineOptions::max_step_rows).
  virtual int64_t max_rows() const = 0;
  // Most positions one sequence may reach (max_input_length + max_new_tokens).
  virtual int64_t max_positions() const = 0;
  // Rows of one prompt chunk (EngineOptions::prefill_batch): chunks start at multiples of it.
  virtual int64_t prefill_chunk() const = 0;
  // Throws qrt::Error(InvalidInput) before touching the cache when a row's token is outside the
  // vocabulary, its position outside [0, max_positions()), its sequence outside the tables, its
  // block outside its table or the pool, or the logit rows are not ascending rows of the step.
  virtual void step(const BatchStep& step, float* logits) = 0;
  virtual const std::vector<LinearPlan>& plans() const = 0;
  virtual std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const = 0;
  virtual std::map<std::string, int> backend_counts() const = 0;
  virtual std::string device_name() const = 0;
};

// The batched engine for options.device, the CPU or a CUDA GPU (options.kv_blocks > 0 blocks of
// KV pool, steps of up to options.max_step_rows rows). Throws qrt::Error naming the device when
// this build has no batched engine for it (a build without the CUDA engine, for a GPU).
std::unique_ptr<BatchEngine> make_batch_engine(std::shared_ptr<const ModelWeights> weights,
                                               const EngineOptions& options);

}  // namespace qrt
