// The compact device form of a canonical QuantizedWeight that cuda_dequant runs, and the kernels
// that read it: a fused dequant-GEMV for small M and a tile dequantizer feeding cuBLAS. cuda_fp8
// stores its e4m3 weight in the same form and runs these kernels for small M and as its
// weight-only path.
//
// Layout (built on the host from QuantizedWeight, uploaded once by prepare()):
//   words  uint32 [N][row_words]: along K, every run of 32 codes occupies `bits` words; code j of a
//          run sits at bit j*bits of that little-endian bit string (codes may straddle words), so
//          4-bit rows are plain nibble packing and 8-bit rows plain bytes. row_words = ceil(K/32)*bits,
//          so a row is never shared with the next and runs of 4/8-bit codes are 16/32-byte aligned.
//   scale  float [N][G] and offset float [N][G]: W[n][k] = code * scale + offset with the zero
//          folded in (Symmetric: offset = -2^(bits-1)*s; Integer: -z*s; Float: z). FP8: no offset,
//          W = e4m3(code) * scale, the block scales expanded to one row per n (G = ceil(K/bk)).
//          Codebook: no offset, W = codebook[code] * scale.
//   codebook float [2^bits] (Codebook only): the level each code stands for (NF4, FP4, IQ4 grid);
//          the kernels copy it to shared memory once per block.
//   g_idx  int32 [K] when act-order; otherwise group = k / group_size.
//   bias   float [N] or absent.
// Bytes on the device: N*K*bits/8 + 8*N*G (+ 4K, + 4N, + 4*2^bits): the codes stay packed; only a workspace
// tile is ever expanded to fp16/bf16.
#pragma once

#include <cstdint>

#include "gpu/runtime.h"
#include "qrt/dtype.h"
#include "qrt/quantized_weight.h"

namespace qrt::cuda {

struct PackedWeightView {
  const uint32_t* words = nullptr;
  const float* scale = nullptr;
  const float* offset = nullptr;   // nullptr for FP8 and code books
  const float* codebook = nullptr; // Codebook: 2^bits levels; nullptr for every other encoding
  const int32_t* g_idx = nullptr;  // nullptr unless act-order
  const float* bias = nullptr;
  int64_t n = 0, k = 0;
  int64_t row_words = 0;
  int groups = 1;
  int group_size = 0;   // effective (K when one group)
  int bits = 4;
  bool fp8 = false;
  // Every run of 32 codes lies in one group (no g_idx and group_size % 32 == 0 or >= K): one
  // scale/offset per run, the fast path.
  bool uniform_runs = false;
};

class PackedWeight {
 public:
  // Packs on the host and uploads; throws OutOfMemory naming the layer when the device is full.
  static PackedWeight pack(const QuantizedWeight& w);
  const PackedWeightView& view() const { return view_; }
  int64_t device_bytes() const;

 private:
  DeviceBuffer words_, scale_, offset_, codebook_, g_idx_, bias_;
  PackedWeightView view_;
};

// Host-side packing exposed for tests: the words of one weight (N * row_words values).
std::vector<uint32_t> pack_codes(const QuantizedWeight& w, int64_t* row_words);

// y[M][N] = x[M][K] * W^T (+ bias) for M <= 8 per launch (larger M loops). x, y: dtype F16/BF16,
// row-major, contiguous. Never allocates.
void launch_dequant_gemv(const PackedWeightView& w, const void* x, void* y, int64_t m, DType dtype,
                         cudaStream_t stream);

// Writes rows [n0, n0 + rows) of W as dtype (F16/BF16) into `out` (row-major, leading dim ld >= K,
// ld % 8 == 0).
void launch_dequant_tile(const PackedWeightView& w, int64_t n0, int64_t rows, void* out, int64_t ld,
                         DType dtype, cudaStream_t stream);


}  // namespace qrt::cuda

namespace qrt::cuda {

// Rows of W dequantized per tile for the dequant + cuBLAS path: the whole layer when it fits in
// `cap_elements`, otherwise a multiple of 64 rows.
int64_t dequant_tile_rows(int64_t n, int64_t k, int64_t requested, int64_t cap_elements = int64_t(128) << 20);
inline int64_t dequant_ld(int64_t k) { return (k + 7) / 8 * 8; }

// Dequantize W tile by tile into `workspace` (>= tile_rows * dequant_ld(K) * 2 bytes) and run one
// cuBLAS GEMM per tile; adds the bias. x, y row-major contiguous.
void dequant_gemm(const PackedWeightView& w, cublasHandle_t handle, void* workspace, int64_t tile_rows,
                  const void* x, void* y, int64_t m, DType dtype, cudaStream_t stream);

}  // namespace qrt::cuda
