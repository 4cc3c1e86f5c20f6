// cuda_wgmma's kernel: fp16/bf16 activations x 4-bit weights on Hopper's warpgroup MMA (wgmma,
// sm_90a), reading the same packed weights as cuda_marlin and cuda_gemv (int4_int8_device.cuh), so
// the three share one device copy of a layer.
//
// Orientation as in cuda_marlin: y^T = W x^T, the weights are wgmma's A operand (64 rows a
// warpgroup, dequantized in registers to exact integers q - z, in the register layout the packed
// words already have), the tokens are its N side (16 / 32 / 64 / 128 a block), read by the tensor
// cores straight from shared memory. Each group's integer products are summed in fp32 and scaled
// in fp32 when the group ends, as in cuda_marlin (exact scaling, also in bf16).
//
// Block: 256 threads = 2 warpgroups x 64 weight rows (N-tile 128), one M-tile of BT tokens, a k128
// stage = two k64 chunks. Weights stream through a cp.async ring of kStages stages; the
// activations come with them into the 128-byte swizzled K-major tile the descriptor describes, in
// the k order of the packed weights, written in that order by a pass before the kernel
// (reorder_act_kernel) so that the ring copies 16 bytes at a time. The layout and k order:
// docs/GPU_KERNEL_LAYOUTS.md, "The wgmma kernel: activations in the packed k order".
// The next stage's fragments are dequantized while this stage's wgmmas run. Split-K and the
// epilogue are cuda_marlin's (finish_tile). With stream-K (WgmmaConfig::stream_k) the grid is one
// block per resident slot and each block takes an equal run of the layer's k128 steps, tile after
// tile: every SM gets the same work whatever the tile count (96 tiles of 128 x 128 leave 36 of 132
// SMs idle, 172 take two waves with the second a third full); a block's run covers at most two
// partial tiles, which go to its two workspace slots and are summed by the last contributor.
#include <algorithm>

#include "backends/cuda/common/int4_int8_device.cuh"
#include "backends/cuda/common/int4_int8_kernels.h"
#include "backends/cuda/common/int4_int8_pack.h"
#include "backends/cuda/wgmma/wgmma_ops.cuh"
#include "gpu/runtime.h"

namespace qrt::cuda {
namespace wgk {
using namespace int4k;

constexpr int round_up(int v, int a) { return (v + a - 1) / a * a; }

template <int BT>
struct WgShape {
  static constexpr int kBN = 128;
  static constexpr int kABytes = BT * 256;           // two k64 sub-tiles of BT rows x 128 bytes
  static constexpr int kWBytes = (kBN / 16) * 2 * 512;  // 8 n16 tiles x 2 k64 chunks
  static constexpr int kSBytes = kBN * 2 * 4;        // up to 4 groups (g = 32) a stage
  static constexpr int kZBytes = kBN * 4;
  static constexpr int kStageBytes = round_up(kABytes + kWBytes + kSBytes + kZBytes, 1024);
  // Two blocks an SM for the small tiles (their accumulators are few), one with a deep ring above.
  static constexpr int kMinBlocks = BT <= 32 ? 2 : 1;
  static constexpr int kStages = BT <= 16 ? 7 : BT <= 32 ? 6 : BT <= 64 ? 8 : 5;
  static constexpr int kRedBytes = BT * (kBN + 4) * 4;
  // +1024: the dynamic shared memory is aligned to 1024 bytes by hand (the swizzle atoms need it).
  static constexpr int kSmem = (kStages * kStageBytes > kRedBytes ? kStages * kStageBytes : kRedBytes) + 1024;
};

// Shared-memory matrix descriptor of a K-major tile with the 128-byte swizzle: rows 128 bytes
// apart, 8-row atoms 1024 bytes apart; the leading offset is unused by this layout.
__device__ __forceinline__ uint64_t kmajor_sw128_desc(uint32_t saddr) {
  return static_cast<uint64_t>((saddr & 0x3FFFF) >> 4) | (1ull << 16) | (64ull << 32) | (1ull << 62);
}

// The reordering pass: within every 64 columns, 16-byte piece L = 4h + w of the output holds the
// 4-byte words 16h + 4p + w (p = 0..3) of the input (two columns a word). K is a multiple of 64.
// Plain 4-byte moves: fp16 and bf16 alike.
__global__ void reorder_act_kernel(const uint32_t* __restrict__ x, uint4* __restrict__ xr, int64_t pieces) {
  pdl_trigger();
  pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pieces; i += int64_t(gridDim.x) * blockDim.x) {
    const int L = static_cast<int>(i & 7), h = L >> 2, w = L & 3;
    const uint32_t* src = x + (i >> 3) * 32 + 16 * h + w;
    xr[i] = make_uint4(src[0], src[4], src[8], src[12]);
  }
}

// SPG: k16 steps per scale group (2, 4, 8 for groups of 32, 64, 128; per-channel scales run as 8,
// each stage's sum scaled by the one scale). Compile-time so that a stage's wgmmas are straight-line
// code: a branch between two wgmmas makes the compiler wait for each before the next.
template <typename T, int BT, int SPG>
__global__ void __launch_bounds__(256, WgShape<BT>::kMinBlocks) qmm_wgmma_kernel(const KernelArgs a) {
  using S = WgShape<BT>;
  constexpr int BN = S::kBN, NACC = BT / 2;
  extern __shared__ unsigned char smem_raw[];
  // Offset from the shared array itself (not an integer cast of its address), so that reads through
  // `smem` compile to shared-memory loads rather than generic ones.
  unsigned char* smem = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  __shared__ int last_flag;
  pdl_trigger();

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;  // warp = the block's n16 tile
  const int g = lane >> 2, q = lane & 3;
  const int kchunks = a.k >> 6;
  const int n16_total = a.n >> 4;
  const bool grouped = a.group_size != 0;
  const int G = grouped ? (a.k >> a.log2_group) : 1;
  const int half_n = a.n >> 1;
  // What each thread copies of a stage, worked out once: the stage's 16-byte pieces are numbered
  // i0 + tid with i0 a multiple of 256, so a thread's piece within its row (and its chunk) is fixed
  // and only the row (or n16 tile) moves, by 16 (or 4) each step.
  // Weights: piece i -> n16 tile i / 64, chunk (i / 32) % 2, word group i % 32.
  const int w_t0 = tid >> 6, w_c = (tid >> 5) & 1;
  // Activations: piece i -> row i / 16, k64 sub-tile (i / 8) % 2, 16-byte piece L = i % 8, which
  // goes to swizzled chunk L ^ (row % 8); row % 8 is the same for all of a thread's rows.
  const int a_row0 = tid >> 4, a_sub = (tid >> 3) & 1, a_L = tid & 7;
  const uint32_t a_dst0 = a_sub * (BT * 128) + a_row0 * 128 + ((a_L ^ (a_row0 & 7)) << 4);

  // The block's work: one tile and K partition (split-K), or with stream-K the steps [u, u_end) of
  // the layer's tiles x sk_iters k128 steps, which may cover the end of one tile, whole tiles and
  // the start of another: one segment a tile, each finished on its own.
  const int64_t sk_units = static_cast<int64_t>(a.m_tiles) * a.n_tiles * a.sk_iters;
  auto sk_start = [&](int64_t b) { return b * sk_units / gridDim.x; };
  // The block whose steps hold unit v: the largest b with sk_start(b) <= v.
  auto sk_block_of = [&](int64_t v) { return ((v + 1) * gridDim.x - 1) / sk_units; };
  int64_t u = a.stream_k ? sk_start(blockIdx.x) : 0;
  const int64_t u_end = a.stream_k ? sk_start(blockIdx.x + 1) : 1;
  bool first_segment = true;
  while (u < u_end) {
    int tile_id, c_begin, c_end;
    TileParts parts;
    if (a.stream_k) {
      tile_id = static_cast<int>(u / a.sk_iters);
      const int it0 = static_cast<int>(u - static_cast<int64_t>(tile_id) * a.sk_iters);
      const int64_t left = u_end - u;
      const int it1 = left < a.sk_iters - it0 ? it0 + static_cast<int>(left) : a.sk_iters;
      c_begin = 2 * it0;
      c_end = min(2 * it1, kchunks);
      u += it1 - it0;
      if (it0 != 0 || it1 != a.sk_iters) {
        // Slots 2b (a block's first segment) and 2b + 1 (its last): the tile's first contributor
        // wrote its last segment here unless its steps start with this tile.
        const int64_t u0 = static_cast<int64_t>(tile_id) * a.sk_iters;
        const int64_t bf = sk_block_of(u0);
        parts.count = static_cast<int>(sk_block_of(u0 + a.sk_iters - 1) - bf + 1);
        parts.me = static_cast<int>(blockIdx.x - bf);
        parts.first = 2 * bf;
        parts.stride = 2;
        parts.first_extra = sk_start(bf) < u0 ? 1 : 0;
      }
    } else {
      const int sp = static_cast<int>(blockIdx.x / (a.m_tiles * a.n_tiles));
      tile_id = static_cast<int>(blockIdx.x % (a.m_tiles * a.n_tiles));
      c_begin = sp * a.chunks_per_split;
      c_end = min(c_begin + a.chunks_per_split, kchunks);
      parts.count = a.split;
      parts.me = sp;
      parts.first = static_cast<int64_t>(tile_id) * a.split;
      u = u_end;
    }
    const int mt_idx = tile_id % a.m_tiles, nt_idx = tile_id / a.m_tiles;
    const int m0 = mt_idx * BT, n0 = nt_idx * BN;
    const int iters = (c_end - c_begin + 1) >> 1;
    const uint4* w_src0 = static_cast<const uint4*>(a.w) + (static_cast<size_t>((n0 >> 4) + w_t0) * kchunks + w_c) * 32 + (tid & 31);
    const T* a_src0 = static_cast<const T*>(a.x) + static_cast<size_t>(m0 + a_row0) * a.k + a_sub * 64 + 8 * a_L;
    const int a_rows_left = a.m - m0 - a_row0;  // this thread's rows 16 r are valid for 16 r < a_rows_left

    auto load_stage = [&](int slot, int it) {
      unsigned char* abase = smem + slot * S::kStageBytes;
      unsigned char* wbase = abase + S::kABytes;
      const int c0 = c_begin + 2 * it;
      constexpr int WP = S::kWBytes / 16;
      const bool w_chunk_ok = c0 + w_c < c_end;
#pragma unroll
      for (int i0 = 0; i0 < WP; i0 += 256) {
        const bool ok = w_chunk_ok && (n0 >> 4) + w_t0 + (i0 >> 6) < n16_total;
        const uint4* src = w_src0 + (static_cast<size_t>(i0 >> 6) * kchunks + c0) * 32;
        cp_async16(wbase + (i0 + tid) * 16, ok ? src : a.w, ok);
      }
      constexpr int AP = BT * 16;
      const bool a_chunk_ok = c0 + a_sub < c_end;
      const T* a_src = a_src0 + c0 * 64;
#pragma unroll
      for (int i0 = 0; i0 < AP; i0 += 256) {
        if (AP % 256 == 0 || i0 + tid < AP) {
          const int r16 = i0 >> 4;  // rows past this thread's first
          const bool ok = a_chunk_ok && r16 < a_rows_left;
          cp_async16(abase + a_dst0 + r16 * 128, ok ? static_cast<const void*>(a_src + static_cast<size_t>(r16) * a.k) : a.x, ok);
        }
      }
      if (grouped) {
        const int gps = 128 >> a.log2_group;
        const int g0 = (c0 * 64) >> a.log2_group;
        unsigned char* sbase = wbase + S::kWBytes;
        stage_group_pairs<BN>(sbase, a.scales, a, half_n, g0, gps, G, n0, tid);
        if (a.zeros) stage_group_zeros<BN>(sbase + S::kSBytes, a, g0, gps, G, n0, tid);
      }
    };

    float acc[NACC], gacc[NACC];
#pragma unroll
    for (int i = 0; i < NACC; ++i) acc[i] = gacc[i] = 0.f;

    const int n16 = (n0 >> 4) + warp;
    uint32_t zpair_pc = 0x0808u;  // symmetric: z = 8
    if (a.zeros && !grouped && n16 < n16_total) zpair_pc = a.zeros[n16 * 8 + g];

    auto flush = [&](uint32_t spair) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&spair));
#pragma unroll
      for (int i = 0; i < NACC; ++i) {
        keep_f(gacc[i]);
        acc[i] += ((i & 2) ? f.y : f.x) * gacc[i];
      }
    };

    // Stages loaded ahead: kStages - 2, so that the slot being refilled is never one that the
    // wgmmas in flight read (the next stage is dequantized while this one's wgmmas run).
    constexpr int D = S::kStages - 2;
    auto slot_base = [&](int it) { return smem + (it % S::kStages) * S::kStageBytes; };
    // Stage `it` landed and visible to the tensor cores (all threads past their reads of the slot
    // the load below reuses), then the load of stage it + D.
    auto ready = [&](int it) {
      cp_async_wait<D - 1>();
      fence_proxy_async();
      __syncthreads();
      const int nx = it + D;
      if (nx < iters) load_stage(nx % S::kStages, nx);
      cp_async_commit();
    };
    // Every A fragment of stage `it`. A partition's odd last chunk adds nothing: the copy zero-filled
    // its second half of activations (and weights), and (0 - z) x 0 is 0.
    auto dequant_stage = [&](int it, uint32_t (&af)[8][4]) {
      const unsigned char* wbase = slot_base(it) + S::kABytes;
      const unsigned char* zbase = wbase + S::kWBytes + S::kSBytes;
      uint4 wq[2];
      wq[0] = reinterpret_cast<const uint4*>(wbase)[(warp * 2 + 0) * 32 + lane];
      wq[1] = reinterpret_cast<const uint4*>(wbase)[(warp * 2 + 1) * 32 + lane];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int c = j >> 2, jw = j & 3;
        const int gi = grouped ? ((16 * j) >> a.log2_group) : 0;
        const uint32_t zp = (a.zeros && grouped)
                                ? reinterpret_cast<const uint16_t*>(zbase)[gi * (BN / 2) + warp * 8 + g]
                                : zpair_pc;
        const uint32_t word = jw == 0 ? wq[c].x : jw == 1 ? wq[c].y : jw == 2 ? wq[c].z : wq[c].w;
        dequant4<T>(word, zero_magic4<T>(zp & 0xFFu), zero_magic4<T>(zp >> 8), af[j]);
      }
    };
    // Each group starts a fresh sum (scale-d 0); per-channel sums run on over the stages. SPG < 8
    // comes only with groups: no run-time test, so no branch between the wgmmas.
    const bool group_kernel = SPG < 8 || grouped;
    auto scale_of = [&](int it, int j) {
      const unsigned char* sbase = slot_base(it) + S::kABytes + S::kWBytes;
      return reinterpret_cast<const uint32_t*>(sbase)[((16 * j) >> a.log2_group) * (BN / 2) + warp * 8 + g];
    };
    // The stage's wgmmas back to back with no instruction that writes their inputs and no branch
    // between them (either makes the compiler wait for each wgmma before the next); groups that end
    // inside the stage are waited for and flushed here, the last one is left in flight.
    auto mma_stage = [&](int it, const uint32_t (&af)[8][4]) {
      const uint32_t abase_s = smem_addr(slot_base(it));
      wg_fence();
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int c = j >> 2, jw = j & 3;
        const int accumulate = (j % SPG == 0 && group_kernel) ? 0 : 1;
        Wgmma<T, BT>::run(gacc, af[j], kmajor_sw128_desc(abase_s + c * (BT * 128) + 32 * jw), accumulate);
        if (j < 7 && (j + 1) % SPG == 0) {
          wg_commit();
          wg_wait<0>();
          flush(scale_of(it, j));
          wg_fence();
        }
      }
      wg_commit();
    };
    auto finish_stage = [&](int it) {
      wg_wait<0>();
      if (group_kernel) flush(scale_of(it, 7));
    };

    // The stages mix weights with activations: wait for the kernel before this one first.
    if (first_segment) pdl_wait();
    first_segment = false;
#pragma unroll
    for (int s = 0; s < D; ++s) {
      if (s < iters) load_stage(s, s);
      cp_async_commit();
    }

    // Stage it + 1 is waited for and dequantized while stage it's last wgmmas run; two fragment
    // sets, their roles swapped every stage (unrolled by two, so no register copies).
    uint32_t fa[8][4], fb[8][4];
    if (iters > 0) {
      ready(0);
      dequant_stage(0, fa);
    }
    auto step = [&](int it, const uint32_t (&cur)[8][4], uint32_t (&next)[8][4]) {
      mma_stage(it, cur);
      if (it + 1 < iters) {
        ready(it + 1);
        dequant_stage(it + 1, next);
      }
      finish_stage(it);
    };
    for (int it = 0; it < iters; it += 2) {
      step(it, fa, fb);
      if (it + 1 < iters) step(it + 1, fb, fa);
    }

    if (!grouped) {
#pragma unroll
      for (int i = 0; i < NACC; ++i) keep_f(gacc[i]);
      flush(n16 < n16_total ? a.scales[n16 * 8 + g] : 0u);
    }

    cp_async_wait<0>();
    __syncthreads();
    float* red = reinterpret_cast<float*>(smem);
    constexpr int LD = BN + 4;
#pragma unroll
    for (int i = 0; i < NACC; ++i) {
      const int nl = warp * 16 + g + 8 * ((i >> 1) & 1);
      const int tok = 8 * (i >> 2) + 2 * q + (i & 1);
      red[tok * LD + nl] = acc[i];
    }
    __syncthreads();
    finish_tile_parts<T, BT, BN, 256>(a, red, tile_id, parts, m0, n0, &last_flag);
    // The next segment's stages reuse the shared memory the epilogue read.
    __syncthreads();
  }
}

}  // namespace wgk

namespace {
using namespace wgk;

struct WgEntry {
  bool bf16;
  int bt, spg, smem;
  void* fn;
};

template <typename T, int BT, int SPG>
WgEntry wg_entry(bool bf16) {
  return WgEntry{bf16, BT, SPG, WgShape<BT>::kSmem, reinterpret_cast<void*>(&qmm_wgmma_kernel<T, BT, SPG>)};
}
#define QRT_WG_ROWS(T, ISBF, BT) wg_entry<T, BT, 2>(ISBF), wg_entry<T, BT, 4>(ISBF), wg_entry<T, BT, 8>(ISBF)

const WgEntry* wg_table(size_t* count) {
  static const WgEntry table[] = {
      QRT_WG_ROWS(__half, false, 16),       QRT_WG_ROWS(__half, false, 32),
      QRT_WG_ROWS(__half, false, 64),       QRT_WG_ROWS(__half, false, 128),
      QRT_WG_ROWS(__nv_bfloat16, true, 16), QRT_WG_ROWS(__nv_bfloat16, true, 32),
      QRT_WG_ROWS(__nv_bfloat16, true, 64), QRT_WG_ROWS(__nv_bfloat16, true, 128),
  };
  *count = sizeof(table) / sizeof(table[0]);
  return table;
}

const WgEntry* find_wg(bool bf16, int bt, int spg) {
  size_t n = 0;
  const WgEntry* t = wg_table(&n);
  for (size_t i = 0; i < n; ++i)
    if (t[i].bf16 == bf16 && t[i].bt == bt && t[i].spg == spg) return &t[i];
  return nullptr;
}

// Blocks of the kernel an SM holds at once (at most 2: the small tiles are built for two).
int wgmma_resident_blocks(const WgEntry& e) {
  return std::max(1, std::min(resident_blocks_per_sm(e.fn, 256, e.smem), 2));
}

// k16 steps per scale group: 2 / 4 / 8 for groups of 32 / 64 / 128; per-channel runs as 8.
int steps_per_group(int group_size) { return group_size == 32 ? 2 : group_size == 64 ? 4 : 8; }

// The stream-K grid of `tiles` output tiles of K = k: one block per resident slot, never more
// blocks than k128 steps.
int64_t stream_k_grid(const WgEntry& e, int64_t tiles, int64_t k, int sms) {
  return std::min<int64_t>(tiles * ((k / 64 + 1) / 2), int64_t(sms) * wgmma_resident_blocks(e));
}

}  // namespace

bool wgmma_kernels_built() { return true; }

cudaError_t wgmma_init_kernels() {
  size_t n = 0;
  const WgEntry* t = wg_table(&n);
  for (size_t i = 0; i < n; ++i) {
    cudaError_t e = cudaFuncSetAttribute(t[i].fn, cudaFuncAttributeMaxDynamicSharedMemorySize, t[i].smem);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

bool wgmma_stream_k_fits(const Int4DeviceView& w, int64_t m, int bt, bool bf16, const Int4Workspace& ws, int sms) {
  const WgEntry* e = find_wg(bf16, bt, steps_per_group(w.group_size));
  if (!e) return false;
  const int64_t tiles = ((m + bt - 1) / bt) * ((w.n + 127) / 128);
  return stream_k_fits(tiles, stream_k_grid(*e, tiles, w.k, sms), int64_t(128) * bt, ws.partial_floats,
                       ws.counter_count);
}

int wgmma_auto_split(const Int4DeviceView& w, int64_t m, int bt, int sms) {
  const int64_t bn = 128;
  const int64_t base = ((w.n + bn - 1) / bn) * ((m + bt - 1) / bt);
  const int64_t max_tiles = int4_max_partial_tiles(sms) * int4_max_tile_floats() / (bn * bt);
  const WgEntry* e = find_wg(false, bt, 8);
  return choose_split(base, w.k / 64, sms * (e ? wgmma_resident_blocks(*e) : 1),
                      std::min<int64_t>(max_tiles, int4_counter_count(sms) - 64), 2);
}

cudaError_t launch_qmm_wgmma(const Int4DeviceView& w, const void* x, void* y, int64_t m, bool bf16,
                             const WgmmaConfig& cfg, const Int4Workspace& ws, int sms, cudaStream_t stream) {
  if (w.group_size != 0 && w.group_size != 32 && w.group_size != 64 && w.group_size != 128) return cudaErrorInvalidValue;
  const WgEntry* e = find_wg(bf16, cfg.bt, steps_per_group(w.group_size));
  if (!e || m <= 0 || w.bits != 4 || w.offsets) return cudaErrorInvalidValue;
  if (!ws.act || ws.act_bytes < m * w.k * 2) return cudaErrorInvalidValue;
  // The reordering pass, then the GEMM on its output (both with PDL: each waits for the kernel
  // before it before touching activations).
  const uint32_t* rx = static_cast<const uint32_t*>(x);
  uint4* rxr = static_cast<uint4*>(ws.act);
  int64_t pieces = m * w.k / 8;
  const int rblocks = static_cast<int>(std::min<int64_t>((pieces + 255) / 256, int64_t(sms) * 8));
  void* rargs[] = {&rx, &rxr, &pieces};
  const cudaError_t re = launch_int4_family(reinterpret_cast<void*>(&reorder_act_kernel), dim3(rblocks), 0, rargs,
                                            cfg.pdl, stream);
  if (re != cudaSuccess) return re;
  x = ws.act;
  KernelArgs a;
  a.x = x;
  a.y = y;
  a.w = static_cast<const uint4*>(w.words);
  a.scales = w.scales;
  a.zeros = w.zeros;
  a.bias = w.bias;
  a.m = static_cast<int>(m);
  a.n = static_cast<int>(w.n);
  a.k = static_cast<int>(w.k);
  a.group_size = w.group_size;
  a.log2_group = w.group_size ? group_log2(w.group_size) : 0;
  a.scale_mul = w.scale_mul;
  a.m_tiles = static_cast<int>((m + cfg.bt - 1) / cfg.bt);
  a.n_tiles = static_cast<int>((w.n + 127) / 128);
  const int kchunks = static_cast<int>(w.k / 64);
  const int64_t tiles = static_cast<int64_t>(a.m_tiles) * a.n_tiles;
  // Stream-K: one block per resident slot, each with the same number of k128 steps; a tile shared
  // by several blocks is summed by the last to finish (two partial slots a block). Where the
  // workspace cannot hold that (more tiles than counters, at large M), tiles and split below.
  const int split_choice = cfg.split > 0 ? cfg.split : wgmma_auto_split(w, m, cfg.bt, sms);
  const bool want_sk = cfg.stream_k > 0 || (cfg.stream_k == 0 && cfg.split <= 0 &&
                                            prefer_stream_k(tiles, split_choice, int64_t(sms) * wgmma_resident_blocks(*e)));
  const int64_t sk_grid = want_sk ? stream_k_grid(*e, tiles, w.k, sms) : 0;
  if (want_sk && stream_k_fits(tiles, sk_grid, int64_t(128) * cfg.bt, ws.partial_floats, ws.counter_count)) {
    a.sk_iters = (kchunks + 1) / 2;
    a.stream_k = 1;
    a.partials = ws.partials;
    a.counters = ws.counters;
    void* args[] = {&a};
    return launch_int4_family(e->fn, dim3(static_cast<unsigned>(sk_grid)), e->smem, args, cfg.pdl, stream);
  }
  int split = split_choice;
  int per = (kchunks + split - 1) / split;
  per = (per + 1) & ~1;
  split = (kchunks + per - 1) / per;
  a.split = split;
  a.chunks_per_split = per;
  if (split > 1) {
    if (!split_k_fits(tiles, split, int64_t(128) * cfg.bt, ws.partial_floats, ws.counter_count))
      return cudaErrorInvalidValue;
    a.partials = ws.partials;
    a.counters = ws.counters;
  }
  const int64_t blocks = tiles * split;
  if (blocks > 0x7FFFFFFF) return cudaErrorInvalidValue;
  void* args[] = {&a};
  return launch_int4_family(e->fn, dim3(static_cast<unsigned>(blocks)), e->smem, args, cfg.pdl, stream);
}

}  // namespace qrt::cuda
