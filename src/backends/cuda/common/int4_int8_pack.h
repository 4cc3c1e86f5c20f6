// Host side of qrt's int4/int8 tensor-core kernels (cuda_marlin, cuda_gemv): the repack of a
// canonical QuantizedWeight into the fragment-ordered layout the kernels stream (documented in
// int4_int8_device.cuh), and the launch-geometry heuristics. No CUDA headers: this part is plain C++
// so it can be reasoned about (and tested) without a GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qrt/quantized_weight.h"

namespace qrt::cuda {

struct Int4PackedHost {
  int64_t n = 0, k = 0;
  int bits = 4;
  int group_size = 0;   // 0 = one group over K (per-channel), else 32 / 64 / 128
  int groups = 1;
  bool has_zero = false;               // integer zero points (asymmetric)
  bool float_zero = false;             // float zero points: W = s*q + b (GGUF Q4_1 / Q4_K "min")
  std::vector<uint32_t> words;         // packed codes, N*K*bits/32 words
  std::vector<uint16_t> scales;        // fp16 [G][N/16][8][2]: pair (s[r]*2^-e, s[r+8]*2^-e)
  std::vector<uint8_t> zeros;          // [G][N/16][8][2] zero codes, empty when symmetric
  std::vector<uint16_t> offsets;       // fp16 [G][N/16][8][2]: pair (b[r]*2^-f, b[r+8]*2^-f); float_zero only
  std::vector<int32_t> perm;           // act-order: kernel column i reads input column perm[i]
  std::vector<float> bias;             // [N] or empty
  float scale_mul = 1.f;               // 2^e, applied to the fp32 result
  float offset_mul = 1.f;              // 2^f (float_zero only)
};

// Shape rules of the packed layout (N % 16, K % 64, bits 4/8, group -1/32/64/128, act-order with
// equal-size groups, float zero points with 4-bit codes only); "" when packable, else a reason a
// person can read.
std::string int4_pack_rejection(const LayerSpec& spec);
// Throws qrt::Error (Unsupported / InvalidInput) naming the layer when the weight cannot be packed.
Int4PackedHost pack_int4_host(const QuantizedWeight& w);
// The weight the kernels multiply with, W[n][k] in float in the input column order, read back from
// the packed words, fp16 scales, zeros and offsets exactly as the kernels use them (value = (q - z)
// * s, or q * s + b with float zero points). For tests: packing then unpacking reproduces
// dequantize_reference() bit for bit wherever the scales and offsets are fp16 numbers (GGUF Q4_0,
// Q4_1, Q8_0), and within fp16 rounding (2^-11 relative per scale and offset) elsewhere (Q4_K).
std::vector<float> unpack_int4_host(const Int4PackedHost& p);

// Split-K choice for a memory-bound launch: `base` independent output tiles, `chunks` k64 chunks
// (split in even counts), `sms` multiprocessors; maximises the balance of chunks per SM, prefers
// fewer splits (each costs a partial tile round trip), and keeps base*split <= max_tiles.
int choose_split(int64_t base, int64_t chunks, int sms, int64_t max_tiles, int chunk_align);

// Whether a split-K launch fits its scratch: `tiles` output tiles of `tile_floats` floats each,
// `split` partial tiles per output tile in `partial_floats` floats, one arrival counter per output
// tile among `counters`. launch_qmm / launch_int4_gemv refuse launches that do not fit; tuning
// spaces leave them out (with the counter margin the automatic split keeps).
bool split_k_fits(int64_t tiles, int64_t split, int64_t tile_floats, int64_t partial_floats, int64_t counters);
// The same for a stream-K launch of `grid` blocks: two partial tiles a block, one counter a tile.
bool stream_k_fits(int64_t tiles, int64_t grid, int64_t tile_floats, int64_t partial_floats, int64_t counters);
// The wgmma kernel's automatic schedule: stream-K where the automatic `split` of `tiles` output
// tiles needs more than one wave of `slots` resident blocks and either cuts K (split > 1: partial
// tiles written and summed many times over) or leaves the waves of whole tiles less than 3/4 full
// (172 tiles on 132 SMs); tiles and split otherwise, one wave always.
bool prefer_stream_k(int64_t tiles, int split, int64_t slots);

// The kernels' KernelArgs::log2_group: the exponent of a power-of-two group size (the smallest l
// with 2^l >= v).
int group_log2(int v);

}  // namespace qrt::cuda
