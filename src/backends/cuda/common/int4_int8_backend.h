// What the adapters of cuda_gemv and cuda_marlin share: both run the 4-/8-bit tensor-core layout of
// int4_int8_weight.h, so they check a layer against the same rules, upload it to one shared device
// copy, and keep the same state per prepared layer.
#pragma once

#include <memory>

#include "backends/cuda/common/backend_helpers.h"
#include "backends/cuda/common/int4_int8_weight.h"

namespace qrt::cuda {

class Int4Int8Backend : public CudaBackend {
 protected:
  using CudaBackend::CudaBackend;
  // The checks both start with: the declared capability, sm_80+ (`needs_sm80` says what for, "; device
  // is sm_XY" is appended), then the packed layout's shape rules. Verdict::yes() when all pass.
  Verdict check_int4_int8(const LayerSpec& layer, const DeviceInfo& device, const char* needs_sm80) const;
};

// prepare()'s upload, after its checks: the device copy of `weight` shared with any other backend
// serving the layer, and the scratch for context.max_rows rows a call (`reorder`: with room for a
// reordered copy of the activations, Int4Workspace::act).
struct Int4Int8Upload {
  std::shared_ptr<const Int4DeviceWeight> weight;
  Int4Scratch scratch;
};
Int4Int8Upload upload_int4_int8(const QuantizedWeight& weight, const PrepareContext& context, bool reorder = false);

// A prepared layer of either backend: the shared device copy and the scratch.
class Int4Int8Linear : public PreparedLinear {
 public:
  explicit Int4Int8Linear(Int4Int8Upload upload) : w_(std::move(upload.weight)), scratch_(upload.scratch) {}
  int64_t weight_bytes() const override { return w_->bytes(); }

 protected:
  std::shared_ptr<const Int4DeviceWeight> w_;
  Int4Scratch scratch_;
};

}  // namespace qrt::cuda
