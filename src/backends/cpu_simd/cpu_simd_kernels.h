// cpu_simd internals shared by the backend (packing, dispatch) and the per-ISA kernel files.
//
// This header is included by translation units compiled with AVX-512 flags and by ones compiled
// without: it must hold only plain declarations and trivially inlined scalar code, never SIMD
// intrinsics, or an AVX-512 instruction could leak into a function the baseline build calls.
//
// Packed weight layout (one per prepared layer):
//   Output rows are cut into tiles of kTileRows = 16 rows (N padded with zero scales). Input columns
//   are cut into blocks of kBlockK = 32; every block belongs to exactly one scale group (act-order and
//   group sizes that are not multiples of 32 are handled by a column map that permutes and pads the
//   activations, never the weights per element). Per tile and block:
//     4-bit storage (bits <= 4): 4 chunks of 64 bytes; chunk c, byte 4*row + j holds
//       code(row, k = 4c + j) in its low nibble and code(row, k = 4(c+4) + j) in its high nibble,
//       so one 512-bit load + mask/shift yields two 16-row x 4-k operands of vpdpbusd.
//     8-bit storage (bits 5..8, FP8): 8 chunks of 64 bytes; chunk q, byte 4*row + j = code(row, 4q + j).
//   Scales: per tile and group, 16 `scale` then 16 `min` values: W = code * scale + min; stored as
//   fp16 when every value round-trips exactly (GGUF and GPTQ scales are fp16: 6% fewer bytes to
//   stream at g128, 17% at g32), else as fp32
//   (min = -zero * scale for integer zeros, -2^(bits-1) * scale for symmetric, the float zero for
//   GGUF-style mins; FP8 codes decode through e4m3 and have min = 0).
#pragma once

#include <cstdint>
#include <string>

#include "core/cpu_isa.h"

namespace qrt {
class ThreadPool;
}

namespace qrt::cpu_simd {

constexpr int kTileRows = 16;
constexpr int kBlockK = 32;
constexpr int kMaxMTile = 8;  // largest register tile along M

using Isa = CpuIsa;  // the shared levels (core/cpu_isa.h)

enum class CodeKind : uint8_t { U4, U8, Fp8 };

struct PackedView {
  CodeKind kind = CodeKind::U4;
  int64_t n_tiles = 0;
  int64_t blocks = 0;               // padded K / 32
  int64_t groups = 0;               // scale groups per tile
  const uint8_t* codes = nullptr;   // [n_tiles][blocks][block_bytes]
  const float* scales = nullptr;    // [n_tiles][groups][2][16]  (scale row, then min row)
  const uint16_t* scales16 = nullptr;  // same, as fp16, when every value is exact in fp16 (else null)
  const int32_t* block_group = nullptr;  // [blocks] -> group
  const int32_t* runs = nullptr;         // [n_runs][2] = (group, blocks): consecutive blocks of one group
  int64_t n_runs = 0;
  int64_t block_bytes() const { return kind == CodeKind::U4 ? 256 : 512; }
  int64_t tile_code_bytes() const { return blocks * block_bytes(); }
};

// Activations prepared once per call (permuted/padded to blocks of 32):
//   int8 path:   q[m][blocks*32], d[m][blocks] (step), dsum[m][blocks] = d * sum(q of the block)
//   int8x2 path: x ~ d * v with v = round(x / d) a 15-bit integer, d = max|x| / (127 * kSplitRatio),
//                stored as two int8 halves v = kSplitRatio * q + q2 (q, q2 in [-127, 127]);
//                dsum = d * sum(v). Kernels compute kSplitRatio * dot(code, q) + dot(code, q2)
//                exactly in int32, so the result is that of 15-bit activations at two int8 dots.
//   float path:  x[m][blocks*32], xsum[m][blocks]
// The weight-min term always uses the sum of the values the dot product saw (as ggml's Q8_1 does),
// so y = W . x' exactly for the quantized x'.
constexpr int kSplitRatio = 255;  // odd: round(v / 255) has no ties and |v - 255 q| <= 127
constexpr float kSplitLevels = 127.f * kSplitRatio;

struct ActView {
  const int8_t* q = nullptr;
  const int8_t* q2 = nullptr;   // int8x2 path: the low halves
  const float* x = nullptr;
  const float* d = nullptr;
  const float* sum = nullptr;   // dsum (int8 path) or xsum (float path)
  int64_t row_stride = 0;       // elements per row of q / x  (= blocks * 32)
  int64_t block_stride = 0;     // elements per row of d / sum (= blocks)
};

struct GemmArgs {
  PackedView w;
  ActView a;
  int64_t m_begin = 0, m_end = 0;        // activation rows to compute
  int64_t tile_begin = 0, tile_end = 0;  // weight tiles to compute
  float* y = nullptr;                    // [M][ldy]
  int64_t ldy = 0;
  int64_t n = 0;                         // valid output columns (<= n_tiles * 16)
  const float* bias = nullptr;           // [n] or nullptr
  int m_tile = 4;                        // rows per register tile (1..kMaxMTile)
};

// Kernels: compute y[m][n] for m in [m_begin, m_end), n in the tiles, over all of K.
// The int8 path reads a.q / a.d / a.sum; int8x2 also a.q2; the float path reads a.x / a.sum.
// The integer paths take 1..8-bit codes (U4, U8), the float path also FP8.
void gemm_int8_scalar(const GemmArgs& args);
void gemm_int8x2_scalar(const GemmArgs& args);
void gemm_f32_scalar(const GemmArgs& args);
void gemm_int8_avx2(const GemmArgs& args);
void gemm_int8x2_avx2(const GemmArgs& args);
void gemm_f32_avx2(const GemmArgs& args);
void gemm_int8_avx512(const GemmArgs& args);
void gemm_int8x2_avx512(const GemmArgs& args);
void gemm_f32_avx512(const GemmArgs& args);

// Block b (kBlockK values) of an activation row of `k` floats, through the act-order `map` (nullable:
// for each padded position the source column or -1) and zero-padded past K: a pointer into `src`
// when the block is contiguous, else the values gathered into `tmp`. Static: each ISA's translation
// unit keeps its own copy (an inline function shared across -mavx2/-mavx512 units could be
// resolved to the copy with the wider instructions).
static inline const float* activation_block(const float* src, const int32_t* map, int64_t k, int64_t b, float* tmp) {
  if (!map && (b + 1) * kBlockK <= k) return src + b * kBlockK;
  for (int i = 0; i < kBlockK; ++i) {
    const int64_t pos = b * kBlockK + i;
    const int64_t col = map ? map[pos] : (pos < k ? pos : -1);
    tmp[i] = col >= 0 ? src[col] : 0.f;
  }
  return tmp;
}

// Row quantization to int8 per 32-block: q = round(x / d), d = max|x| / 127, dsum = d * sum(q).
// `src` has `k` floats; `map` (nullable) gives for each padded position the source column or -1.
void quantize_row_scalar(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q,
                         float* d, float* dsum);
void quantize_row_avx2(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q,
                       float* d, float* dsum);
// Two-level version (int8x2 path): v = round(x / d), d = max|x| / kSplitLevels, split into
// q = round(v / kSplitRatio) and q2 = v - kSplitRatio * q; dsum = d * sum(v).
void quantize_row_x2_scalar(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q,
                            int8_t* q2, float* d, float* dsum);
void quantize_row_x2_avx2(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q,
                          int8_t* q2, float* d, float* dsum);


// Dense fp32 GEMM for the "unquantized" baseline of `qrt bench`: W packed by pack_dense into
// [N/16][K][16]; y[M][N] = x[M][K] W^T for rows [m_begin, m_end) and tiles [tile_begin, tile_end).
struct DenseArgs {
  const float* w_packed = nullptr;
  int64_t k = 0, n = 0;
  const float* x = nullptr;
  int64_t m_begin = 0, m_end = 0, tile_begin = 0, tile_end = 0;
  float* y = nullptr;
};
void dense_sgemm_scalar(const DenseArgs& args);
void dense_sgemm_avx2(const DenseArgs& args);
void dense_sgemm_avx512(const DenseArgs& args);
// W [N][K] row-major -> [ceil(N/16)][K][16] (rows past N zero); out holds ceil(N/16)*16*K floats.
void pack_dense(const float* w, int64_t n, int64_t k, float* out);
// y[M][N] = x[M][K] W^T over the pool (nullptr: calling thread).
void dense_sgemm(Isa isa, ThreadPool* pool, const float* w_packed, int64_t n, int64_t k, const float* x,
                 int64_t m, float* y);

}  // namespace qrt::cpu_simd
