// The device form of a HIGGS (WeightEncoding::RotatedCodebook) weight that cuda_higgs runs, and the
// kernels that read it (higgs_kernels.cu). docs/HIGGS.md ("On a CUDA GPU") describes the layout and
// the two paths; in short, W = V H, so y = x W^T = (x H) V^T:
//   1. rotate every activation row by the orthonormal block Hadamard transform of hadamard_size
//      (fp16/bf16 in, fp32 butterflies in shared memory);
//   2a. small M: the lookup kernel walks the codes of the output rows, decodes each through the grid
//      held in shared memory, scales by the group scale and accumulates in fp32 against the rotated
//      rows (split along K when the rows alone give too few blocks, the slices summed by a second
//      small kernel);
//   2b. larger M: V (grid value x group scale) decoded to fp16/bf16 once, at prepare when device
//      memory allows, else tile by tile into the workspace per call, then cuBLAS over the rotated
//      rows.
//
// Layout on the device (built on the host from QuantizedWeight, uploaded once):
//   codes  uint8 [N][ldc]      one byte per grid vector: code c of row n covers columns c*p .. c*p+p-1;
//                              ldc = K/p rounded up to 16 (one 16-byte load = 16 codes), padding 0
//   scales float [N][G]        the group scales, G = num_groups
//   grid   float [Q][p]        Q = 2^(bits*p) grid vectors (at most 256, 2 KB)
//   bias   float [N]           or absent
//   v16    fp16  [N][ldv]      V decoded once (ldv = K rounded up to 8), only when kept (keep_fp16)
// Bytes: N*K/p + 4*N*G + 4*Q*p (+ 4N) (+ 2*N*ldv when the fp16 copy is kept).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda_capabilities.h"
#include "gpu/runtime.h"
#include "qrt/dtype.h"
#include "qrt/quantized_weight.h"

namespace qrt::cuda {

struct HiggsView {
  const uint8_t* codes = nullptr;
  const float* scales = nullptr;
  const float* grid = nullptr;
  const float* bias = nullptr;
  int64_t n = 0, k = 0;
  int64_t ldc = 0;        // bytes per row of codes
  int p = 1;              // values per grid vector (HIGGS p)
  int points = 0;         // grid vectors Q
  int groups = 1;         // G
  int group_size = 0;     // effective (K when one group per row)
  int hadamard = 0;       // hadamard_size
  // Every run of 16 codes (16p columns) lies in one group: one scale per run (the fast path).
  bool uniform = false;
};

// Codes, scales, grid and bias on the device (the part every preparation of a layer shares).
class HiggsDeviceWeight {
 public:
  // Packs on the host and uploads; OutOfMemory names the layer.
  explicit HiggsDeviceWeight(const QuantizedWeight& w);
  const HiggsView& view() const { return view_; }
  int64_t bytes() const;

 private:
  DeviceBuffer codes_, scales_, grid_, bias_;
  HiggsView view_;
};

// The packed codes of `w` as uploaded: [N][ldc] bytes (exposed for tests).
std::vector<uint8_t> pack_higgs_codes(const QuantizedWeight& w, int64_t* ldc);

// One upload per layer and device, shared by every cuda_higgs preparation of it (several M ranges
// or parameter sets of one layer).
std::shared_ptr<const HiggsDeviceWeight> shared_higgs_weight(const QuantizedWeight& w, int device);

// V as fp16 [N][ldv] kept on the device (the large-M path's cuBLAS operand), decoded there from the
// shared weight; shared like the weight.
struct HiggsFp16Copy {
  DeviceBuffer v;
  int64_t ld = 0;
};
std::shared_ptr<const HiggsFp16Copy> shared_higgs_fp16(const QuantizedWeight& w, const HiggsView& view, int device);

inline int64_t higgs_ldv(int64_t k) { return (k + 7) / 8 * 8; }
// Row stride (floats) of the fp32 rotated activations the lookup kernel reads: K rounded up to 32,
// the padding zero, so a last run of 16 codes shorter than 16 reads zeros, not the next row.
inline int64_t higgs_ldx(int64_t k) { return (k + 31) / 32 * 32; }
// Largest block the rotation kernel transforms in one pass (shared memory, fp32); larger
// hadamard_size runs as two passes (hadamard_passes), up to kHiggsMaxHadamard. Both limits are the
// declared ones (cuda_capabilities.h), which plans for target profiles check.
constexpr int kHiggsMaxPass = kHiggsMaxHadamardPass;

// Launch geometry of the lookup kernel for one layer (fixed at prepare).
struct HiggsLutGeometry {
  int tile_n = 16;        // output rows per block
  int split = 1;          // K slices (blocks along K); > 1 writes fp32 partial sums
  int64_t chunks = 0;     // runs of 16 codes per row
  int64_t chunk_slice = 0;  // runs of 16 codes per K slice
  int tk_log2 = 5;        // log2(lanes that share one output row along K)
};
// tile_n and split as the kernel parameters give them (split 0 = chosen from the SM count).
HiggsLutGeometry higgs_lut_geometry(const HiggsView& w, int tile_n, int split, int sms);

// out[r][0..K) = rotate(x[r]) for `rows` rows: x is F16/BF16 [rows][K] contiguous; out is fp32
// (out_f32 = true, row stride ldo; columns K..ldo zeroed) or x's dtype (row stride ldo). `tmp`
// (fp32, rows x K) is needed only when hadamard_size > kHiggsMaxPass and out is not fp32.
void launch_higgs_rotate(const HiggsView& w, const void* x, DType dtype, int64_t rows, void* out, bool out_f32,
                         int64_t ldo, float* tmp, cudaStream_t stream);

// y[m][N] (x's dtype) for m <= 8 rows of fp32 rotated activations xr (row stride ldx): the lookup
// kernel, then (split > 1) the sum of the K slices from `partial` (split * m * N floats) plus bias.
void launch_higgs_lut(const HiggsView& w, const HiggsLutGeometry& g, const float* xr, int64_t ldx, int64_t m,
                      void* y, DType dtype, float* partial, cudaStream_t stream);

// Rows [n0, n0 + rows) of V = grid value x group scale into `out` (F16/BF16, row stride ld >= K).
void launch_higgs_decode(const HiggsView& w, int64_t n0, int64_t rows, void* out, int64_t ld, DType dtype,
                         cudaStream_t stream);

}  // namespace qrt::cuda
