// Calibration text sampled from the model itself ("data-free" calibration): token sequences
// drawn with temperature from the checkpoint's own float weights, each starting at the
// beginning-of-text token. Every user has this source offline, it matches the distribution the
// model was trained on better than any one file a user happens to have, and no calibration
// sequence can overlap an evaluation text. Deterministic for a given seed and options (our own
// splitmix64 stream per sequence, no std:: distribution whose algorithm varies by library).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "qrt/checkpoint.h"

namespace qrt {
class ThreadPool;

struct SampledTextOptions {
  int64_t sequences = 32;
  int64_t length = 256;        // tokens per sequence, the start token included
  float temperature = 1.0f;
  float min_p = 0.0f;          // 0 = off; else drop tokens with p < min_p * p_max
  uint64_t seed = 0;
  int64_t batch = 32;          // sequences decoded together (the rows of each matmul)
};

// sequences * length token ids, sequence s at [s * length, (s + 1) * length), each starting with
// `start_token`. progress(done, total) counts sequences. Throws qrt::Error for bad options or
// checkpoint tensors of the wrong size.
std::vector<int32_t> sample_calibration_tokens(const Checkpoint& ck, int32_t start_token,
                                               const SampledTextOptions& options, ThreadPool& pool,
                                               const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace qrt
