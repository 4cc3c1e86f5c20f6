// What cuda_marlin and cuda_gemv share on the host: the uploaded packed weight (one copy per
// layer and device even when both backends serve the same layer for different M ranges), the
// split-K scratch, and the forward driver (act-order permutation, M chunking, launch checks).
// Internal header (includes CUDA headers through cuda_runtime.h).
#pragma once

#include <algorithm>
#include <memory>
#include <string>

#include "backends/cuda/common/int4_int8_kernels.h"
#include "backends/cuda/common/int4_int8_pack.h"
#include "gpu/runtime.h"
#include "qrt/backend.h"

namespace qrt::cuda {

class Int4DeviceWeight {
 public:
  Int4DeviceWeight(const Int4PackedHost& p, const std::string& name);
  const Int4DeviceView& view() const { return view_; }
  int64_t bytes() const;

 private:
  DeviceBuffer words_, scales_, zeros_, offsets_, bias_, perm_;
  Int4DeviceView view_;
};

// The packed upload of `w` on `device`, shared with any other live PreparedLinear of the same
// layer (keyed by name, shape, format and a fingerprint of the codes and scales). Throws
// Unsupported / OutOfMemory naming the layer.
std::shared_ptr<const Int4DeviceWeight> shared_int4_weight(const QuantizedWeight& w, int device);

// What a prepared layer of either backend uses at run time: the device context, the device's
// split-K arrival counters (zeroed once, reset by the kernels) and the rows of one chunk (the
// max_rows prepare() was given: act-order's permuted activations and the reordered copy a kernel
// may ask for are staged in the workspace, so calls of more rows run in chunks of these).
struct Int4Scratch {
  DeviceContext* ctx = nullptr;
  int* counters = nullptr;
  int64_t perm_rows = 1;
  bool reorder = false;  // room for Int4Workspace::act
};
// Reserves the per-device scratch a layer of (K, act-order) needs for up to max_rows rows per
// call (call at prepare time); `reorder`: also room for a reordered copy of the activations.
Int4Scratch reserve_int4_scratch(DeviceContext& ctx, int64_t k, bool act_order, int64_t max_rows,
                                 bool reorder = false);

// The forward of both backends: permutes activations for act-order through the workspace (in
// chunks of scratch.perm_rows rows), launches `launch(view, x, y, rows, bf16, ws, sms, stream)`.
// x and y are checked by QuantLinear on the first run of each M range.
template <typename Launch>
void int4_forward(const Int4DeviceWeight& w, const Int4Scratch& scratch, const ActTensor& x, const ActTensor& y,
                  const ExecContext& ec, Launch&& launch);

}  // namespace qrt::cuda

namespace qrt::cuda {

size_t int4_partials_bytes(int sms);

template <typename Launch>
void int4_forward(const Int4DeviceWeight& w, const Int4Scratch& scratch, const ActTensor& x, const ActTensor& y,
                  const ExecContext& ec, Launch&& launch) {
  const Int4DeviceView& v = w.view();
  DeviceContext& ctx = *scratch.ctx;
  cudaStream_t st = as_stream(ec.cuda_stream);
  const int sms = ctx.props().multiProcessorCount;
  auto* base = static_cast<unsigned char*>(ctx.workspace());
  const size_t pbytes = int4_partials_bytes(sms);
  Int4Workspace ws;
  ws.partials = reinterpret_cast<float*>(base);
  ws.partial_floats = static_cast<int64_t>(pbytes / 4);
  ws.counters = scratch.counters;
  ws.counter_count = int4_counter_count(sms);
  const bool bf16 = x.dtype == DType::BF16;
  const int64_t chunk = (v.perm || scratch.reorder) ? scratch.perm_rows : x.rows;
  const size_t chunk_bytes = static_cast<size_t>(scratch.perm_rows) * static_cast<size_t>(v.k) * 2;
  if (scratch.reorder) {
    ws.act = base + pbytes + (v.perm ? chunk_bytes : 0);
    ws.act_bytes = static_cast<int64_t>(chunk_bytes);
  }
  for (int64_t r0 = 0; r0 < x.rows; r0 += chunk) {
    const int64_t rows = std::min<int64_t>(chunk, x.rows - r0);
    const void* xin = static_cast<const unsigned char*>(x.data) + r0 * v.k * 2;
    void* yout = static_cast<unsigned char*>(y.data) + r0 * v.n * 2;
    if (v.perm) {
      void* xp = base + pbytes;
      QRT_CUDA_CHECK(launch_permute_cols(xin, xp, v.perm, rows, v.k, st));
      xin = xp;
    }
    QRT_CUDA_CHECK(launch(v, xin, yout, rows, bf16, ws, sms, st));
  }
}

}  // namespace qrt::cuda
