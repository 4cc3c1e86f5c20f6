// A layer as cuda_dequant runs it from the packed weight (packed_weight.h): the fused GEMV up to
// gemv_max_m rows, dequantized tiles + cuBLAS above. cuda_fp8 builds its layers on it: the same
// GEMV for small M, and the tiles as its weight-only path.
#pragma once

#include <cstdint>
#include <utility>

#include "backends/cuda/dequant/packed_weight.h"
#include "gpu/runtime.h"
#include "qrt/backend.h"

namespace qrt::cuda {

class DequantLinear : public PreparedLinear {
 public:
  DequantLinear(PackedWeight packed, DeviceContext& ctx, int64_t gemv_max_m, int64_t tile_rows)
      : packed_(std::move(packed)), ctx_(ctx), gemv_max_m_(gemv_max_m), tile_rows_(tile_rows) {}

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ec) override {
    if (!forward_gemv(x, y, ec)) forward_tiles(x, y, ec);
  }
  int64_t weight_bytes() const override { return packed_.device_bytes(); }

 protected:
  // The fused GEMV when x has at most gemv_max_m rows; false (nothing launched) otherwise.
  bool forward_gemv(const ActTensor& x, const ActTensor& y, const ExecContext& ec) {
    if (x.rows > gemv_max_m_) return false;
    launch_dequant_gemv(packed_.view(), x.data, y.data, x.rows, x.dtype, as_stream(ec.cuda_stream));
    return true;
  }
  void forward_tiles(const ActTensor& x, const ActTensor& y, const ExecContext& ec) {
    dequant_gemm(packed_.view(), ctx_.cublas(), ctx_.workspace(), tile_rows_, x.data, y.data, x.rows, x.dtype,
                 as_stream(ec.cuda_stream));
  }

  PackedWeight packed_;
  DeviceContext& ctx_;
  int64_t gemv_max_m_;
  int64_t tile_rows_;
};

}  // namespace qrt::cuda
