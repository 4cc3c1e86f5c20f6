// cuda_gemv's kernel: M <= 32 tokens x 4/8-bit weights, streaming. Weights go straight from DRAM
// to registers: every lane has a ring of 8 16-byte loads (ld.global.nc.L1::no_allocate; 8 k64
// chunks of 4-bit codes, 4 of 8-bit), and a slot's next load goes out as soon as its chunk is
// used, so 7 of 8 stay in flight (3.5 KB a warp) without shared-memory staging. The block's
// activation rows, scales and zeros (small, re-read by every warp) are staged once in shared
// memory with cp.async. The 8 tokens sit on the n8 side of mma.sync m16n8k16 (weights on the
// 16-row side), so the tensor cores do the multiply-adds and the ALUs only dequantize.
// The kernel is bound by instruction issue as much as by DRAM (3 blocks of 8 warps an SM): the
// chunk loop is compiled once per kind of zero point and group size, so a chunk costs about 60
// instructions a lane (dequantization, 4 MMAs, 2 shared loads, one scale per group) and no
// per-launch branches. Block = 8 warps = WT n16 tiles x (8/WT) K-warps; grid = (N/16/WT, split),
// the split sized to the blocks resident at once; partial tiles are reduced in shared memory, then
// across blocks by the last-arriving block (int4_int8_device.cuh).
//
// MT (9 to 32 rows): the tokens fill two or four n8 tiles, so each dequantized weight fragment
// feeds MT MMAs; the dequantization, the loop and the weight stream are shared, and a chunk costs
// a few MMAs and shared loads more per token tile. Two blocks an SM (128 registers), and with four
// tiles a ring of 4 chunks (8-bit: 2). The activation rows of a block grow with M, so K is split
// until they fit 96 KB.
//
// BULK (sm_90+): the block's whole weight slice (WT tiles x its K range, at most kGemvBulkBytes)
// is put in flight at the start with one bulk copy per (tile, K-warp piece), before the kernel
// waits for the previous one, into shared memory; each K-warp owns a contiguous piece and waits on
// that piece's mbarrier only. Every byte of the matrix is requested in the first microsecond and
// no register holds a load in flight, against 3.5 KB a warp for the register path.
#include <algorithm>
#include <type_traits>

#include "backends/cuda/common/int4_int8_kernels.h"
#include "backends/cuda/common/int4_int8_pack.h"
#include "gpu/runtime.h"
#include "backends/cuda/common/int4_int8_device.cuh"

namespace qrt::cuda {
namespace int4k {

// Dynamic shared memory of one block: x rows [m][kmax + 32 halves of padding], then the scale
// pairs, zero pairs and (float zero points) offset pairs of the block's groups.
// BULK kernels put the block's weight slice first ([WT][per_chunks][32 * bits / 4] uint4).
struct GemvSmem {
  int weight_bytes, x_row_halves, groups, scale_bytes, zero_bytes, offset_bytes, total;
};
__host__ __device__ inline GemvSmem gemv_smem(int m, int per_chunks, int group_size, int wt, bool zeros,
                                              bool offsets, int bulk_bits = 0) {
  GemvSmem g;
  g.weight_bytes = bulk_bits ? wt * per_chunks * (32 * bulk_bits / 4) * 16 : 0;
  g.x_row_halves = per_chunks * 64 + 32;  // +64 B: rows 2g and 2g+1 land on disjoint banks
  g.groups = group_size ? per_chunks * 64 / group_size + 2 : 0;
  g.scale_bytes = g.groups * wt * 32;
  g.zero_bytes = zeros ? g.groups * wt * 16 : 0;
  g.offset_bytes = offsets ? g.scale_bytes : 0;
  g.total = g.weight_bytes + m * g.x_row_halves * 2 + g.scale_bytes + g.zero_bytes + g.offset_bytes;
  return g;
}

// The fused input of the block's K range [k0, k0 + krange) into xs (rows `ld` halves apart), for
// prologue 1 (RMS norm of the float residual rows; every block sums its rows' squares over the
// whole K, the 8 warps sharing the rows, so that one 4096-wide row costs a lane 4 loads, not 32;
// or, with norm_sumsq, the producer's K / 16 partials of each row)
// and 2 (silu(gate) * up). The formulas and roundings are those of the model's add_rmsnorm and
// silu_mul kernels, so only the order of the sum of squares differs.
// row_inv: 8 x 8 floats of shared memory (per-warp partial sums, then each row's 1 / RMS).
template <typename T>
__device__ __forceinline__ void stage_fused_input(const GemvFusion& f, int m, int k, T* xs, int ld, int k0, int krange,
                                                  float* row_inv) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int pairs = krange / 2;
  if (f.prologue == 1) {
    // Warp w sums part w / m of row w % m (8 / m parts a row, each a contiguous run of float4s).
    const int parts = 8 / m, row = warp % m, part = warp / m;
    if (part < parts) {
      float ss = 0.f;
      if (f.norm_sumsq) {
        // The producer's partials: K / 16 floats a row instead of K.
        const int np = k / 16, per = (np + parts - 1) / parts;
        const float* p = f.norm_sumsq + static_cast<size_t>(row) * np;
        for (int i = part * per + lane; i < min(np, (part + 1) * per); i += 32) ss += p[i];
      } else if (reinterpret_cast<uintptr_t>(f.norm_residual) & 15) {
        // Rows only 8-byte aligned (fuses() asks that much): float2 loads.
        const int n2 = k / 2, per = (n2 + parts - 1) / parts;
        const float2* r2 = reinterpret_cast<const float2*>(f.norm_residual + static_cast<size_t>(row) * k);
#pragma unroll 4
        for (int i = part * per + lane; i < min(n2, (part + 1) * per); i += 32) {
          const float2 v = r2[i];
          ss += v.x * v.x + v.y * v.y;
        }
      } else {
        const int n4 = k / 4, per = (n4 + parts - 1) / parts;
        const float4* r4 = reinterpret_cast<const float4*>(f.norm_residual + static_cast<size_t>(row) * k);
#pragma unroll 4
        for (int i = part * per + lane; i < min(n4, (part + 1) * per); i += 32) {
          const float4 v = r4[i];
          ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      if (lane == 0) row_inv[row * 8 + part] = ss;
    }
    __syncthreads();
    if (tid < m) {
      float ss = 0.f;
      for (int p = 0; p < parts; ++p) ss += row_inv[tid * 8 + p];
      row_inv[tid * 8] = rsqrtf(ss / static_cast<float>(k) + f.norm_eps);
    }
    __syncthreads();
    if (((reinterpret_cast<uintptr_t>(f.norm_residual) | reinterpret_cast<uintptr_t>(f.norm_weight)) & 15) == 0) {
      // Four columns an item, one item a turn: more items' loads in flight (32 registers for
      // four) share the registers with the weight ring's first loads and took the kernels from 80
      // to 104-128 registers (ptxas, sm_90), two resident blocks an SM instead of three; on an
      // H100 the 7B shape's q/k/v and gate/up took 23.4 and 32.1 us instead of 15.6 and 22.9,
      // fused or not (CudaKernels.GemvKernelsKeepThreeBlocksAnSm checks the budget).
      const int quads = krange / 4;
      for (int i = tid; i < m * quads; i += 256) {
        const int row = i / quads, c = 4 * (i % quads);
        const float4 v = *reinterpret_cast<const float4*>(f.norm_residual + static_cast<size_t>(row) * k + k0 + c);
        const float4 w = *reinterpret_cast<const float4*>(f.norm_weight + k0 + c);
        const float inv = row_inv[row * 8];
        uint2 o;
        o.x = Traits<T>::from_floats(v.x * inv * w.x, v.y * inv * w.y);
        o.y = Traits<T>::from_floats(v.z * inv * w.z, v.w * inv * w.w);
        *reinterpret_cast<uint2*>(xs + row * ld + c) = o;
      }
      return;
    }
    for (int i = tid; i < m * pairs; i += 256) {
      const int row = i / pairs, c = 2 * (i % pairs);
      const float2 v = *reinterpret_cast<const float2*>(f.norm_residual + static_cast<size_t>(row) * k + k0 + c);
      const float2 w = *reinterpret_cast<const float2*>(f.norm_weight + k0 + c);
      const float inv = row_inv[row * 8];
      *reinterpret_cast<uint32_t*>(xs + row * ld + c) = Traits<T>::from_floats(v.x * inv * w.x, v.y * inv * w.y);
    }
  } else {
    if (((reinterpret_cast<uintptr_t>(f.gate) | reinterpret_cast<uintptr_t>(f.up)) & 15) == 0 &&
        f.gate_up_stride % 8 == 0) {
      // Eight columns an item, one item a turn (as the norm above).
      const int octs = krange / 8;
      for (int i = tid; i < m * octs; i += 256) {
        const size_t at = static_cast<size_t>(i / octs) * f.gate_up_stride + k0 + 8 * (i % octs);
        const uint4 gv = *reinterpret_cast<const uint4*>(static_cast<const T*>(f.gate) + at);
        const uint4 uv = *reinterpret_cast<const uint4*>(static_cast<const T*>(f.up) + at);
        const uint32_t* g4 = reinterpret_cast<const uint32_t*>(&gv);
        const uint32_t* u4 = reinterpret_cast<const uint32_t*>(&uv);
        uint4 o;
        uint32_t* o4 = reinterpret_cast<uint32_t*>(&o);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 g = Traits<T>::to_floats(g4[e]), up = Traits<T>::to_floats(u4[e]);
          o4[e] = Traits<T>::from_floats(g.x / (1.f + __expf(-g.x)) * up.x, g.y / (1.f + __expf(-g.y)) * up.y);
        }
        *reinterpret_cast<uint4*>(xs + (i / octs) * ld + 8 * (i % octs)) = o;
      }
      return;
    }
    for (int i = tid; i < m * pairs; i += 256) {
      const int row = i / pairs, c = 2 * (i % pairs);
      const size_t at = static_cast<size_t>(row) * f.gate_up_stride + k0 + c;
      const float2 g = Traits<T>::to_floats(*reinterpret_cast<const uint32_t*>(static_cast<const T*>(f.gate) + at));
      const float2 u = Traits<T>::to_floats(*reinterpret_cast<const uint32_t*>(static_cast<const T*>(f.up) + at));
      *reinterpret_cast<uint32_t*>(xs + row * ld + c) =
          Traits<T>::from_floats(g.x / (1.f + __expf(-g.x)) * u.x, g.y / (1.f + __expf(-g.y)) * u.y);
    }
  }
}

// FZ: float zero points (int4_int8_device.cuh): the MMAs see q, an all-ones MMA sums the activations.
// Its extra accumulators would cost a resident block per SM (92 registers: 2 blocks instead of 3);
// capped at 80 it keeps 3 without spilling (sm_90, nvcc 13). 0 = no minimum: the other kernels
// compile exactly as without the FZ parameter (a stated minimum of 1 changes their code).
// MT: n8 token tiles (M <= 8 * MT); MT > 1 keeps two blocks an SM resident (their accumulators
// and activation rows take what the third one would).
template <typename T, int BITS, int WT, bool FZ = false, bool BULK = false, int MT = 1>
__global__ void __launch_bounds__(256, MT > 1 ? 2 : (FZ ? 3 : 0)) gemv_kernel(const KernelArgs a) {
  if constexpr (BULK) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ < 900
    return;  // bulk copies need sm_90; the host never launches this kernel below it
#endif
  }
  constexpr int KP = 8 / WT;  // K-warps per tile
  constexpr int PC = 32 * BITS / 4;
  // Register ring slots (k64 chunks): 8 uint4 a lane either way; half that with four token tiles,
  // whose accumulators need the registers (and whose chunks take longer to use).
  constexpr int R = (BITS == 4 ? 8 : 4) / (MT == 4 ? 2 : 1);
  constexpr int BN = 16 * WT;
  constexpr int LD = BN + 4;
  __shared__ __align__(16) float red[KP][8 * MT * LD];
  __shared__ int last_flag;
  __shared__ uint64_t piece_bar[BULK ? KP : 1];
  __shared__ float row_inv[8 * 8];  // prologue 1: per-warp sums of squares, then each row's 1 / RMS
  extern __shared__ __align__(128) unsigned char dsm[];

  pdl_trigger();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int tl = warp % WT, kp = warp / WT;
  const int g = lane >> 2, q = lane & 3;
  const int n16_total = a.n >> 4;
  const int n16_first = blockIdx.x * WT;
  const int n16 = n16_first + tl;
  const bool tile_ok = n16 < n16_total;
  const int sp = blockIdx.y;
  const int kchunks = a.k >> 6;
  const int c_begin = sp * a.chunks_per_split;
  const int c_end = min(c_begin + a.chunks_per_split, kchunks);
  const bool grouped = a.group_size != 0;
  const int half_n = a.n >> 1;
  const uint4* wp = static_cast<const uint4*>(a.w) + static_cast<size_t>(tile_ok ? n16 : 0) * kchunks * PC;
  const GemvSmem L = gemv_smem(a.m, a.chunks_per_split, a.group_size, WT, a.zeros != nullptr, FZ, BULK ? BITS : 0);
  unsigned char* const xbase = dsm + L.weight_bytes;
  T* xs = reinterpret_cast<T*>(xbase);
  uint32_t* ss = reinterpret_cast<uint32_t*>(xbase + a.m * L.x_row_halves * 2);
  uint16_t* zs = reinterpret_cast<uint16_t*>(xbase + a.m * L.x_row_halves * 2 + L.scale_bytes);
  uint32_t* os = reinterpret_cast<uint32_t*>(xbase + a.m * L.x_row_halves * 2 + L.scale_bytes + L.zero_bytes);
  // BULK: K-warp kp owns the contiguous chunks [piece_begin, piece_end) of its tile.
  const int piece_chunks = (a.chunks_per_split + KP - 1) / KP;
  const int piece_begin = min(c_begin + kp * piece_chunks, c_end);
  const int piece_end = min(piece_begin + piece_chunks, c_end);
  const int g_lo = grouped ? ((c_begin * 64) >> a.log2_group) : 0;
  const int G = grouped ? (a.k >> a.log2_group) : 1;

  // The register ring: R slots of one k64 chunk each. A warp's chunks are c0, c0 + KP, ...; slot
  // r holds the chunk of index r (mod R). After a slot's chunk is used its next load goes out at
  // once, so R - 1 chunks stay in flight while one is dequantized.
  auto load = [&](uint4 (&wq)[BITS / 4], int cc) {
#pragma unroll
    for (int h = 0; h < BITS / 4; ++h)
      wq[h] = (tile_ok && cc < c_end) ? ldg_stream(wp + static_cast<size_t>(cc) * PC + h * 32 + lane)
                                      : make_uint4(0, 0, 0, 0);
  };
  uint4 ring[R][BITS / 4];
  const int c0 = c_begin + kp;
  if constexpr (BULK) {
    // One thread arms a barrier per piece and issues every copy of the block: (tile, piece) runs
    // are contiguous in the packed layout (a tile's chunks follow each other).
    if (tid == 0) {
      for (int p = 0; p < KP; ++p) mbar_init(&piece_bar[p], 1);
      for (int p = 0; p < KP; ++p) {
        const int pb = min(c_begin + p * piece_chunks, c_end), pe = min(pb + piece_chunks, c_end);
        if (pe <= pb) continue;
        const uint32_t run = static_cast<uint32_t>(pe - pb) * PC * 16;
        const int tiles = min(WT, n16_total - n16_first);
        mbar_arrive_expect_tx(&piece_bar[p], run * tiles);
        for (int t = 0; t < tiles; ++t)
          bulk_copy_g2s(dsm + (static_cast<size_t>(t) * a.chunks_per_split + (pb - c_begin)) * PC * 16,
                        static_cast<const uint4*>(a.w) + (static_cast<size_t>(n16_first + t) * kchunks + pb) * PC, run,
                        &piece_bar[p]);
      }
    }
  } else {
#pragma unroll
    for (int r = 0; r < R; ++r) load(ring[r], c0 + r * KP);
  }
  // The block's scales, zeros and offsets into shared memory: weights too, so they are in flight
  // with the codes before the wait (read from DRAM once a step, they would otherwise add a DRAM
  // round trip after it), as are a per-channel zero pair and scale.
  if (grouped) {
    const int ng = min(L.groups, G - g_lo);
    // Scales and float offsets share a layout: 8 words per n16 tile and group, copied 4 at a time.
    auto stage_words = [&](uint32_t* dst, const uint32_t* src) {
      for (int i = tid; i < ng * WT * 2; i += 256) {
        const int gi = i / (WT * 2), j = i % (WT * 2);
        const bool ok = n16_first + j / 2 < n16_total;
        cp_async16(dst + gi * WT * 8 + j * 4,
                   ok ? static_cast<const void*>(src + static_cast<size_t>(g_lo + gi) * half_n + n16_first * 8 + j * 4)
                      : src,
                   ok);
      }
    };
    stage_words(ss, a.scales);
    if (a.zeros)
      for (int i = tid; i < ng * WT; i += 256) {
        const int gi = i / WT, j = i % WT;
        const bool ok = n16_first + j < n16_total;
        cp_async16(zs + gi * WT * 8 + j * 8,
                   ok ? static_cast<const void*>(a.zeros + static_cast<size_t>(g_lo + gi) * half_n + (n16_first + j) * 8)
                      : a.zeros,
                   ok);
      }
    if constexpr (FZ) stage_words(os, a.offsets);
  }
  uint32_t zpair_pc = FZ ? 0u : (BITS == 4 ? 0x0808u : 0x8080u);
  if (a.zeros && !grouped && tile_ok) zpair_pc = a.zeros[n16 * 8 + g];
  const uint32_t pc_scale = !grouped && tile_ok ? __ldg(a.scales + n16 * 8 + g) : 0u;
  const uint32_t pc_offset = FZ && !grouped && tile_ok ? __ldg(a.offsets + n16 * 8 + g) : 0u;
  // The weights above do not depend on the kernel before this one; the activations, the split-K
  // workspace and y do.
  pdl_wait();

  // Stage the block's activations in shared memory while the first weights fly.
  {
    const int krange = (c_end - c_begin) * 64;
    if (MT > 1 || a.fused.prologue == 0) {
      const int xp = a.m * (krange / 8);
      for (int i = tid; i < xp; i += 256) {
        const int row = i / (krange / 8), c = i % (krange / 8);
        cp_async16(xs + row * L.x_row_halves + c * 8,
                   static_cast<const T*>(a.x) + static_cast<size_t>(row) * a.k + c_begin * 64 + c * 8, true);
      }
    }
    cp_async_commit();
    // The fused prologues build at most 8 rows (the host gives them only to MT = 1).
    if constexpr (MT == 1)
      if (a.fused.prologue != 0) stage_fused_input<T>(a.fused, a.m, a.k, xs, L.x_row_halves, c_begin * 64, krange, row_inv);
    cp_async_wait<0>();
    __syncthreads();
  }

  // Per token tile t: acc[t] the finished groups, gacc[t] the open group's sums, xacc[t] (FZ) the
  // open group's activation sums.
  float acc[MT][4] = {}, gacc[MT][4] = {};
  float xacc[MT][4] = {};

  // ov: the FZ offset pair of the group (unused otherwise).
  auto flush = [&](uint32_t sv, uint32_t ov) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&sv));
#pragma unroll
    for (int t = 0; t < MT; ++t) {
      acc[t][0] += f.x * gacc[t][0];
      acc[t][1] += f.x * gacc[t][1];
      acc[t][2] += f.y * gacc[t][2];
      acc[t][3] += f.y * gacc[t][3];
      gacc[t][0] = gacc[t][1] = gacc[t][2] = gacc[t][3] = 0.f;
    }
    if constexpr (FZ) {
      const float2 o = __half22float2(*reinterpret_cast<const __half2*>(&ov));
      const float ox = o.x * a.offset_ratio, oy = o.y * a.offset_ratio;
#pragma unroll
      for (int t = 0; t < MT; ++t) {
        acc[t][0] += ox * xacc[t][0];
        acc[t][1] += ox * xacc[t][1];
        acc[t][2] += oy * xacc[t][2];
        acc[t][3] += oy * xacc[t][3];
        xacc[t][0] = xacc[t][1] = xacc[t][2] = xacc[t][3] = 0.f;
      }
    }
  };
  // One k64 chunk cc of the warp's tile, its codes in wq. ZG: zero points per group (staged in
  // shared memory); GM: 0 = one scale per channel (applied once at the end), 1 = groups of 64 or
  // more (one group per chunk), 2 = groups of 32 (two per chunk). Both are fixed for a launch: the
  // loops below are compiled once per combination, so a chunk carries no per-launch branches.
  auto compute_chunk = [&](const uint4 (&wq)[BITS / 4], int cc, auto zg_tag, auto gm_tag) {
    constexpr bool ZG = decltype(zg_tag)::value;
    constexpr int GM = decltype(gm_tag)::value;
    const T* xrow = xs + g * L.x_row_halves + (cc - c_begin) * 64 + 8 * q;  // token tile t: + 8 t rows
    int gi = GM ? ((cc * 64) >> a.log2_group) - g_lo : 0;
    uint32_t zp = ZG ? zs[gi * WT * 8 + tl * 8 + g] : zpair_pc;
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      if (GM == 2 && s == 1) {
        ++gi;
        if (ZG) zp = zs[gi * WT * 8 + tl * 8 + g];
      }
      uint4 xa[MT];
#pragma unroll
      for (int t = 0; t < MT; ++t)
        xa[t] = g + 8 * t < a.m ? *reinterpret_cast<const uint4*>(xrow + 8 * t * L.x_row_halves + 32 * s)
                                : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        uint32_t af[4];
        if constexpr (BITS == 4) {
          const uint32_t word = (s == 0) ? (jj == 0 ? wq[0].x : wq[0].y) : (jj == 0 ? wq[0].z : wq[0].w);
          dequant4<T>(word, zero_magic4<T>(zp & 0xFFu), zero_magic4<T>(zp >> 8), af);
        } else {
          const uint4 v = wq[s];
          const float zr = 8388608.f + static_cast<float>(zp & 0xFFu);
          const float zr8 = 8388608.f + static_cast<float>(zp >> 8);
          if (jj == 0) dequant8<T>(v.x, v.y, zr, zr8, af);
          else dequant8<T>(v.z, v.w, zr, zr8, af);
        }
#pragma unroll
        for (int t = 0; t < MT; ++t) {
          MmaOp<T>::run(gacc[t], af, jj == 0 ? xa[t].x : xa[t].z, jj == 0 ? xa[t].y : xa[t].w);
          if constexpr (FZ) {
            const uint32_t ones[4] = {Traits<T>::kOnes, Traits<T>::kOnes, Traits<T>::kOnes, Traits<T>::kOnes};
            MmaOp<T>::run(xacc[t], ones, jj == 0 ? xa[t].x : xa[t].z, jj == 0 ? xa[t].y : xa[t].w);
          }
        }
      }
      if (GM == 2 || (GM == 1 && s == 1))
        flush(ss[gi * WT * 8 + tl * 8 + g], FZ ? os[gi * WT * 8 + tl * 8 + g] : 0u);
    }
  };
  auto run_tile = [&](auto zg_tag, auto gm_tag) {
    if constexpr (BULK) {
      if (piece_begin < piece_end) {
        mbar_wait(&piece_bar[kp], 0);
        const uint4* tile_w = reinterpret_cast<const uint4*>(dsm) + static_cast<size_t>(tl) * a.chunks_per_split * PC;
        for (int cc = piece_begin; cc < piece_end; ++cc) {
          uint4 wq[BITS / 4];
#pragma unroll
          for (int h = 0; h < BITS / 4; ++h) wq[h] = tile_w[(cc - c_begin) * PC + h * 32 + lane];
          compute_chunk(wq, cc, zg_tag, gm_tag);
        }
      }
    } else {
      for (int c = c0; c < c_end; c += R * KP) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int cc = c + r * KP;
          if (cc >= c_end) break;
          compute_chunk(ring[r], cc, zg_tag, gm_tag);
          load(ring[r], cc + R * KP);
        }
      }
    }
  };
  if (tile_ok) {
    using NoZ = std::integral_constant<bool, false>;
    using Z = std::integral_constant<bool, true>;
    using PerChannel = std::integral_constant<int, 0>;
    using Group64 = std::integral_constant<int, 1>;
    using Group32 = std::integral_constant<int, 2>;
    if (!grouped) {
      run_tile(NoZ{}, PerChannel{});  // a per-channel zero point sits in zpair_pc
      flush(pc_scale, pc_offset);
    } else if (a.group_size == 32) {
      if (!FZ && a.zeros) run_tile(Z{}, Group32{});
      else run_tile(NoZ{}, Group32{});
    } else {
      if (!FZ && a.zeros) run_tile(Z{}, Group64{});
      else run_tile(NoZ{}, Group64{});
    }
  }

  // Each K-warp writes its fragment; then a fixed-order sum over K-warps into red[0].
#pragma unroll
  for (int t = 0; t < MT; ++t)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int nl = tl * 16 + g + 8 * (i >> 1);
      const int tok = 8 * t + 2 * q + (i & 1);
      red[kp][tok * LD + nl] = acc[t][i];
    }
  __syncthreads();
  if (KP > 1) {
    for (int e = tid; e < 8 * MT * BN; e += 256) {
      const int tok = e / BN, nl = e % BN;
      float v = red[0][tok * LD + nl];
#pragma unroll
      for (int p = 1; p < KP; ++p) v += red[p][tok * LD + nl];
      red[0][tok * LD + nl] = v;
    }
    __syncthreads();
  }
  finish_tile<T, 8 * MT, BN, 256>(a, red[0], blockIdx.x, sp, 0, blockIdx.x * BN, &last_flag);
}

}  // namespace int4k

namespace {
using namespace int4k;
struct GemvEntry {
  bool bf16;
  int bits, wt;
  void* fn;
  bool fz;    // float zero points
  bool bulk;  // weights through bulk copies into shared memory (sm_90+)
  int mt;     // n8 token tiles: M <= 8 * mt
};
template <typename T, int BITS, int WT, bool FZ, bool BULK, int MT>
void* gemv_ptr() {
  return reinterpret_cast<void*>(&gemv_kernel<T, BITS, WT, FZ, BULK, MT>);
}
#define QRT_GEMV_ROWS(T, ISBF, BITS, FZ, BULK)                          \
  GemvEntry{ISBF, BITS, 2, gemv_ptr<T, BITS, 2, FZ, BULK, 1>(), FZ, BULK, 1}, \
      GemvEntry{ISBF, BITS, 4, gemv_ptr<T, BITS, 4, FZ, BULK, 1>(), FZ, BULK, 1}
#define QRT_GEMV_FAMILY(BULK)                                                                         \
  QRT_GEMV_ROWS(__half, false, 4, false, BULK), QRT_GEMV_ROWS(__nv_bfloat16, true, 4, false, BULK),   \
      QRT_GEMV_ROWS(__half, false, 8, false, BULK), QRT_GEMV_ROWS(__nv_bfloat16, true, 8, false, BULK), \
      QRT_GEMV_ROWS(__half, false, 4, true, BULK), QRT_GEMV_ROWS(__nv_bfloat16, true, 4, true, BULK)
// 9 to 32 rows: two or four token tiles, 2 n16 tiles a block, register ring only (few kernels:
// CI compiles this file for every architecture on two cores).
#define QRT_GEMV_TOKENS(MT)                                                                            \
  GemvEntry{false, 4, 2, gemv_ptr<__half, 4, 2, false, false, MT>(), false, false, MT},                 \
      GemvEntry{true, 4, 2, gemv_ptr<__nv_bfloat16, 4, 2, false, false, MT>(), false, false, MT},       \
      GemvEntry{false, 8, 2, gemv_ptr<__half, 8, 2, false, false, MT>(), false, false, MT},             \
      GemvEntry{true, 8, 2, gemv_ptr<__nv_bfloat16, 8, 2, false, false, MT>(), false, false, MT},       \
      GemvEntry{false, 4, 2, gemv_ptr<__half, 4, 2, true, false, MT>(), true, false, MT},               \
      GemvEntry{true, 4, 2, gemv_ptr<__nv_bfloat16, 4, 2, true, false, MT>(), true, false, MT}

const GemvEntry* gemv_table(size_t* n) {
  static const GemvEntry table[] = {QRT_GEMV_FAMILY(false), QRT_GEMV_FAMILY(true), QRT_GEMV_TOKENS(2),
                                    QRT_GEMV_TOKENS(4)};
  *n = sizeof(table) / sizeof(table[0]);
  return table;
}
// Float zero points (GGUF Q4_1 / Q4_K) only with 4-bit codes.
const GemvEntry* find_gemv(bool bf16, int bits, int wt, bool fz, bool bulk, int mt) {
  size_t n = 0;
  const GemvEntry* table = gemv_table(&n);
  for (size_t i = 0; i < n; ++i) {
    const GemvEntry& e = table[i];
    if (e.bf16 == bf16 && e.bits == bits && e.wt == wt && e.fz == fz && e.bulk == bulk && e.mt == mt) return &e;
  }
  return nullptr;
}
constexpr int kGemvMaxSmem = 64 * 1024;
// Two or four token tiles: activations of up to 32 rows (two blocks an SM).
constexpr int kGemvTokensMaxSmem = 96 * 1024;
// BULK: the weight slice of a block (4 blocks of 48 KB + their activations fit an SM's 228 KB).
constexpr int kGemvBulkBytes = 48 * 1024;
constexpr int kGemvBulkMaxSmem = kGemvBulkBytes + 16 * 1024;
// The automatic split leaves K whole where a block's slice (WT tiles x K) is at most this.
constexpr int64_t kGemvNoSplitSliceBytes = 32 * 1024;
int gemv_max_smem(const GemvEntry& e) {
  return e.bulk ? kGemvBulkMaxSmem : e.mt > 1 ? kGemvTokensMaxSmem : kGemvMaxSmem;
}
}  // namespace

bool gemv_config_instantiated(int wt) { return wt == 2 || wt == 4; }

bool gemv_bulk_supported(int device) { return device_is_sm90_or_newer(device); }

cudaError_t gemv_kernel_resources(std::vector<GemvKernelResources>* out) {
  out->clear();
  size_t n = 0;
  const GemvEntry* table = gemv_table(&n);
  for (size_t i = 0; i < n; ++i) {
    const GemvEntry& e = table[i];
    cudaFuncAttributes attr{};
    const cudaError_t err = cudaFuncGetAttributes(&attr, e.fn);
    if (err != cudaSuccess) return err;
    GemvKernelResources r;
    r.bf16 = e.bf16;
    r.bits = e.bits;
    r.wt = e.wt;
    r.fz = e.fz;
    r.bulk = e.bulk;
    r.mt = e.mt;
    r.registers = attr.numRegs;
    r.local_bytes = attr.localSizeBytes;
    out->push_back(r);
  }
  return cudaSuccess;
}

cudaError_t gemv_init_kernels() {
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  const bool bulk_ok = gemv_bulk_supported(dev);
  size_t n = 0;
  const GemvEntry* table = gemv_table(&n);
  for (size_t i = 0; i < n; ++i) {
    const GemvEntry& e = table[i];
    if (e.bulk && !bulk_ok) continue;
    err = cudaFuncSetAttribute(e.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, gemv_max_smem(e));
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

cudaError_t launch_int4_gemv(const Int4DeviceView& w, const void* x, void* y, int64_t m, bool bf16,
                             const GemvConfig& cfg, const Int4Workspace& ws, int sms, cudaStream_t stream,
                             const GemvFusion* fusion) {
  const bool fz = w.offsets != nullptr;
  if (m <= 0 || m > kGemvMaxRows) return cudaErrorInvalidValue;
  // More than 8 rows: two or four token tiles, instantiated with 2 n16 tiles a block and the
  // register ring only (GemvConfig says so).
  const int mt = m <= 8 ? 1 : m <= 16 ? 2 : 4;
  const int wt = mt > 1 ? 2 : cfg.wt;
  const bool bulk = mt == 1 && cfg.bulk;
  const GemvEntry* e = find_gemv(bf16, w.bits, wt, fz, bulk, mt);
  if (!e) return cudaErrorInvalidValue;
  if (fusion && (mt > 1 || w.perm || fusion->prologue < 0 || fusion->prologue > 2 ||
                 (fusion->prologue == 1 && (!fusion->norm_residual || !fusion->norm_weight)) ||
                 (fusion->norm_sumsq && (fusion->prologue != 1 || w.k % 16 != 0)) ||
                 (fusion->residual_sumsq_out && !fusion->residual_out) ||
                 (fusion->prologue == 2 && (!fusion->gate || !fusion->up || fusion->gate_up_stride % 2 != 0 ||
                                            fusion->gate_up_stride > 0x7FFFFFFF))))
    return cudaErrorInvalidValue;
  if (bulk && !device_is_sm90_or_newer()) return cudaErrorInvalidValue;
  KernelArgs a;
  a.x = x;
  a.y = y;
  a.w = static_cast<const uint4*>(w.words);
  a.scales = w.scales;
  a.zeros = w.zeros;
  a.offsets = w.offsets;
  a.offset_ratio = w.offset_mul / w.scale_mul;
  a.bias = w.bias;
  a.m = static_cast<int>(m);
  a.n = static_cast<int>(w.n);
  a.k = static_cast<int>(w.k);
  a.group_size = w.group_size;
  a.log2_group = w.group_size ? group_log2(w.group_size) : 0;
  a.scale_mul = w.scale_mul;
  if (fusion) a.fused = *fusion;
  const int64_t n16 = w.n / 16;
  const int64_t bx = (n16 + wt - 1) / wt;
  const int kchunks = static_cast<int>(w.k / 64);
  const int64_t tile_floats = int64_t(8) * mt * 16 * wt;
  const int64_t max_tiles =
      std::min<int64_t>(int4_max_partial_tiles(sms) * int4_max_tile_floats() / tile_floats, int4_counter_count(sms) - 64);
  const int bulk_bits = bulk ? w.bits : 0;
  const int max_smem = gemv_max_smem(*e);
  int split = cfg.split;
  // A block whose unsplit weight slice is this small streams it in about a microsecond; a K split
  // then only adds its partial tiles' round trip and the last block's reduction (the SmolLM2
  // layers, K = 576 and 1536, ran 6.0-6.9 us unsplit against 7.3-8.2 us split on the H200).
  const int64_t unsplit_slice_bytes = int64_t(16) * wt * w.k * w.bits / 8;
  if (split <= 0 && unsplit_slice_bytes <= kGemvNoSplitSliceBytes) split = 1;
  if (split <= 0) {
    // A streaming kernel wants every resident slot busy: the automatic split counts the blocks
    // that run at once on an SM (registers and shared memory of the unsplit launch, which needs
    // the most), not the SMs.
    int per_full = kchunks;
    while (gemv_smem(static_cast<int>(m), per_full, w.group_size, wt, w.zeros != nullptr, fz, bulk_bits).total >
               max_smem &&
           per_full > 1)
      per_full = (per_full + 1) / 2;
    const int smem_full =
        gemv_smem(static_cast<int>(m), per_full, w.group_size, wt, w.zeros != nullptr, fz, bulk_bits).total;
    const int slots = sms * resident_blocks_per_sm(e->fn, 256, smem_full);
    split = choose_split(bx, kchunks, slots, max_tiles, 8 / wt);
  }
  int per = (kchunks + split - 1) / split;
  if (bulk) {
    // The block's weight slice must fit its share of shared memory: split K until it does, with
    // the partitions as even as the chunk count allows.
    const int cap = kGemvBulkBytes / (wt * (32 * w.bits / 4) * 16);
    if (per > cap) {
      const int s2 = (kchunks + cap - 1) / cap;
      per = (kchunks + s2 - 1) / s2;
    }
  }
  // The block's activations live in shared memory: split further while they would not fit.
  while (gemv_smem(static_cast<int>(m), per, w.group_size, wt, w.zeros != nullptr, fz, bulk_bits).total >
             max_smem &&
         per > 1)
    per = (per + 1) / 2;
  split = (kchunks + per - 1) / per;
  const int smem = gemv_smem(static_cast<int>(m), per, w.group_size, wt, w.zeros != nullptr, fz, bulk_bits).total;
  a.split = split;
  a.chunks_per_split = per;
  a.m_tiles = 1;
  a.n_tiles = static_cast<int>(bx);
  if (split > 1) {
    if (!split_k_fits(bx, split, tile_floats, ws.partial_floats, ws.counter_count))
      return cudaErrorInvalidValue;
    a.partials = ws.partials;
    a.counters = ws.counters;
  }
  void* args[] = {&a};
  return launch_int4_family(e->fn, dim3(static_cast<unsigned>(bx), static_cast<unsigned>(split)), smem, args, cfg.pdl,
                            stream);
}

}  // namespace qrt::cuda
