// cuda_marlin's kernel: fp16/bf16 activations x 4/8-bit weights on tensor cores (mma.sync
// m16n8k16, sm_80+), Marlin-class: weights streamed once through a cp.async multi-stage ring in
// the fragment order of int4_int8_device.cuh, dequantized in registers to exact integers q - z, summed
// per group in fp32 and scaled in fp32 at each group end (so fp16 and bf16 lose nothing to the
// dequantization), split-K across blocks with a deterministic last-block reduction.
//
// Block: 256 threads, N-tile 128 = 4 N-warps x 2 K-warps (NT = 2: a warp owns 2 n16 tiles and one
// of the two k64 chunks of every k128 stage) or 8 N-warps (NT = 1: one n16 tile, both chunks);
// all warps share the block's M-tile (8*MT tokens). Grid =
// m_tiles x n_tiles x split with the M-tile index fastest, so blocks that read the same weights
// run together and the second..last read hits L2 (M > 32 costs L2 traffic, not DRAM traffic).
#include <algorithm>

#include "backends/cuda/common/int4_int8_kernels.h"
#include "gpu/runtime.h"
#include "backends/cuda/common/int4_int8_pack.h"
#include "backends/cuda/common/int4_int8_device.cuh"

namespace qrt::cuda {
namespace int4k {

template <int BITS, int MT, int NT, bool FZ = false>
struct QmmShape {
  static constexpr int kThreads = 256;
  // NT = 2: 4 N-warps x 2 K-warps (each warp one k64 chunk per stage); NT = 1: 8 N-warps, each
  // warp both chunks of a stage (twice the MMAs per barrier, twice the activation smem reads).
  static constexpr int kWN = NT == 2 ? 4 : 8;
  static constexpr int kWK = 8 / kWN;
  static constexpr int kBN = 16 * NT * kWN;
  static constexpr int kBM = 8 * MT;
  // Deeper rings for the small M-tiles: at M <= 16 the block's work per stage is small and the
  // stream needs more bytes in flight per SM to cover DRAM latency.
  static constexpr int kStages = BITS == 8 ? (MT == 1 ? 4 : 3) : (MT == 1 ? 8 : MT == 2 ? 6 : 4);
  static constexpr int kPerChunk = 32 * BITS / 4;  // uint4 per (n16 tile, k64 chunk)
  static constexpr int kWBytes = kBN / 16 * 2 * kPerChunk * 16;
  static constexpr int kABytes = kBM * 256;
  static constexpr int kSBytes = kBN * 2 * 4;  // up to 4 groups (g = 32) per stage
  // Float zero points (FZ) have no integer zeros; their fp16 offsets are staged like the scales.
  static constexpr int kZBytes = FZ ? 0 : kBN * 4;
  static constexpr int kOBytes = FZ ? kSBytes : 0;
  static constexpr int kStageBytes = kWBytes + kABytes + kSBytes + kZBytes + kOBytes;
  static constexpr int kRedBytes = kBM * (kBN + 4) * 4;
  static constexpr int kSmem = (kStages * kStageBytes > kRedBytes ? kStages * kStageBytes : kRedBytes);
};

template <typename T, int BITS, int MT, int NT, bool FZ = false>
__global__ void __launch_bounds__(256) qmm_kernel(const KernelArgs a) {
  using S = QmmShape<BITS, MT, NT, FZ>;
  constexpr int BN = S::kBN, BM = S::kBM, PC = S::kPerChunk;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int last_flag;
  pdl_trigger();

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  constexpr int WN = S::kWN, WK = S::kWK, CPW = 2 / WK;  // chunks per warp per stage
  const int wn = warp % WN, wk = warp / WN;
  const int g = lane >> 2, q = lane & 3;
  int bid = blockIdx.x;
  const int mt_idx = bid % a.m_tiles;
  bid /= a.m_tiles;
  const int nt_idx = bid % a.n_tiles;
  const int sp = bid / a.n_tiles;
  const int m0 = mt_idx * BM, n0 = nt_idx * BN;
  const int kchunks = a.k >> 6;
  const int c_begin = sp * a.chunks_per_split;
  const int c_end = min(c_begin + a.chunks_per_split, kchunks);
  const int iters = (c_end - c_begin + 1) >> 1;
  const int n16_total = a.n >> 4;
  const bool grouped = a.group_size != 0;
  const int G = grouped ? (a.k >> a.log2_group) : 1;
  const int half_n = a.n >> 1;

  auto load_stage = [&](int slot, int it) {
    unsigned char* base = smem + slot * S::kStageBytes;
    const int c0 = c_begin + 2 * it;
    constexpr int WP = S::kWBytes / 16;
#pragma unroll
    for (int i0 = 0; i0 < WP; i0 += 256) {
      const int i = i0 + tid;
      if (WP % 256 == 0 || i < WP) {
        const int t = i / (2 * PC), rem = i % (2 * PC);
        const int c = rem / PC, lv = rem % PC;
        const int n16 = (n0 >> 4) + t, ch = c0 + c;
        const bool ok = n16 < n16_total && ch < c_end;
        const uint4* src = static_cast<const uint4*>(a.w) + (static_cast<size_t>(n16) * kchunks + ch) * PC + lv;
        cp_async16(base + i * 16, ok ? src : a.w, ok);
      }
    }
    unsigned char* abase = base + S::kWBytes;
    constexpr int AP = BM * 16;
#pragma unroll
    for (int i0 = 0; i0 < AP; i0 += 256) {
      const int i = i0 + tid;
      if (AP % 256 == 0 || i < AP) {
        const int row = i >> 4, c16 = i & 15;
        const int mm = m0 + row, kk = c0 * 64 + c16 * 8;
        const bool ok = mm < a.m && kk < c_end * 64;
        const T* src = static_cast<const T*>(a.x) + static_cast<size_t>(mm) * a.k + kk;
        cp_async16(abase + row * 256 + ((c16 ^ ((row & 1) << 2)) << 4), ok ? src : a.x, ok);
      }
    }
    if (grouped) {
      const int gps = 128 >> a.log2_group;
      const int g0 = (c0 * 64) >> a.log2_group;
      unsigned char* sbase = abase + S::kABytes;
      stage_group_pairs<BN>(sbase, a.scales, a, half_n, g0, gps, G, n0, tid);
      if (a.zeros) stage_group_zeros<BN>(sbase + S::kSBytes, a, g0, gps, G, n0, tid);
      if constexpr (FZ) stage_group_pairs<BN>(sbase + S::kSBytes + S::kZBytes, a.offsets, a, half_n, g0, gps, G, n0, tid);
    }
  };

  float acc[NT][MT][4], gacc[NT][MT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[nt][mt][i] = gacc[nt][mt][i] = 0.f;
  // FZ: activation sums of the current group, per token (the 16 rows of the all-ones MMA agree).
  float xacc[MT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < 4; ++i) xacc[mt][i] = 0.f;

  // Zero operands: symmetric = 2^(bits-1); per-channel integer zeros are constant over K; float
  // zero points subtract nothing (the MMA sees q).
  uint32_t zpair_pc[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int n16 = (n0 >> 4) + wn * NT + nt;
    zpair_pc[nt] = FZ ? 0u : (BITS == 4 ? 0x0808u : 0x8080u);
    if (a.zeros && !grouped && n16 < n16_total) zpair_pc[nt] = a.zeros[n16 * 8 + g];
  }

  // opairs: the FZ offsets of the group (unused otherwise).
  auto flush = [&](const uint32_t* spairs, const uint32_t* opairs) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const uint32_t sv = spairs[nt];
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&sv));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        acc[nt][mt][0] += f.x * gacc[nt][mt][0];
        acc[nt][mt][1] += f.x * gacc[nt][mt][1];
        acc[nt][mt][2] += f.y * gacc[nt][mt][2];
        acc[nt][mt][3] += f.y * gacc[nt][mt][3];
#pragma unroll
        for (int i = 0; i < 4; ++i) gacc[nt][mt][i] = 0.f;
      }
      if constexpr (FZ) {
        const uint32_t ov = opairs[nt];
        const float2 o = __half22float2(*reinterpret_cast<const __half2*>(&ov));
        const float ox = o.x * a.offset_ratio, oy = o.y * a.offset_ratio;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          acc[nt][mt][0] += ox * xacc[mt][0];
          acc[nt][mt][1] += ox * xacc[mt][1];
          acc[nt][mt][2] += oy * xacc[mt][2];
          acc[nt][mt][3] += oy * xacc[mt][3];
        }
      }
    }
    if constexpr (FZ) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int i = 0; i < 4; ++i) xacc[mt][i] = 0.f;
    }
  };

  // The stages mix weights with activations: wait for the kernel before this one first.
  pdl_wait();
#pragma unroll
  for (int s = 0; s < S::kStages - 1; ++s) {
    if (s < iters) load_stage(s, s);
    cp_async_commit();
  }

  for (int it = 0; it < iters; ++it) {
    cp_async_wait<S::kStages - 2>();
    __syncthreads();
    {
      const int nx = it + S::kStages - 1;
      if (nx < iters) load_stage(nx % S::kStages, nx);
      cp_async_commit();
    }
    const unsigned char* base = smem + (it % S::kStages) * S::kStageBytes;
    const unsigned char* abase = base + S::kWBytes;
    const unsigned char* sbase = abase + S::kABytes;
    const unsigned char* zbase = sbase + S::kSBytes;
    const unsigned char* obase = zbase + S::kZBytes;
#pragma unroll
    for (int kc = 0; kc < CPW; ++kc) {
    const int cw = wk * CPW + kc;  // chunk of the stage this warp works on
    if (c_begin + 2 * it + cw >= c_end) break;  // warp-uniform: the odd last chunk of a partition

    uint4 wq[NT][BITS / 4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int h = 0; h < BITS / 4; ++h)
        wq[nt][h] = reinterpret_cast<const uint4*>(base)[((wn * NT + nt) * 2 + cw) * PC + h * 32 + lane];
    uint4 xa[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const int row = mt * 8 + g;
        const int c16 = 8 * cw + 4 * s + q;
        xa[mt][s] = *reinterpret_cast<const uint4*>(abase + row * 256 + ((c16 ^ ((row & 1) << 2)) << 4));
      }

#pragma unroll
    for (int s = 0; s < 2; ++s) {
      const int kin = 64 * cw + 32 * s;
      const int gi = grouped ? (kin >> a.log2_group) : 0;
      uint32_t zp[NT];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        zp[nt] = (a.zeros && grouped)
                     ? reinterpret_cast<const uint16_t*>(zbase)[gi * (BN / 2) + (wn * NT + nt) * 8 + g]
                     : zpair_pc[nt];
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          uint32_t af[4];
          if constexpr (BITS == 4) {
            const uint32_t word = (s == 0) ? (jj == 0 ? wq[nt][0].x : wq[nt][0].y)
                                           : (jj == 0 ? wq[nt][0].z : wq[nt][0].w);
            dequant4<T>(word, zero_magic4<T>(zp[nt] & 0xFFu), zero_magic4<T>(zp[nt] >> 8), af);
          } else {
            const uint4 v = wq[nt][s];
            const float zr = 8388608.f + static_cast<float>(zp[nt] & 0xFFu);
            const float zr8 = 8388608.f + static_cast<float>(zp[nt] >> 8);
            if (jj == 0) dequant8<T>(v.x, v.y, zr, zr8, af);
            else dequant8<T>(v.z, v.w, zr, zr8, af);
          }
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            const uint32_t b0 = jj == 0 ? xa[mt][s].x : xa[mt][s].z;
            const uint32_t b1 = jj == 0 ? xa[mt][s].y : xa[mt][s].w;
            MmaOp<T>::run(gacc[nt][mt], af, b0, b1);
          }
        }
        if constexpr (FZ) {
          const uint32_t ones[4] = {Traits<T>::kOnes, Traits<T>::kOnes, Traits<T>::kOnes, Traits<T>::kOnes};
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            const uint32_t b0 = jj == 0 ? xa[mt][s].x : xa[mt][s].z;
            const uint32_t b1 = jj == 0 ? xa[mt][s].y : xa[mt][s].w;
            MmaOp<T>::run(xacc[mt], ones, b0, b1);
          }
        }
      }
      // Group end: after each 32 columns when g = 32, after each chunk otherwise (flushing more
      // often than the group changes is exact; a warp's next chunk may be in a new group).
      if (grouped && (s == 1 || a.group_size == 32)) {
        uint32_t sp2[NT], op2[NT];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          sp2[nt] = reinterpret_cast<const uint32_t*>(sbase)[gi * (BN / 2) + (wn * NT + nt) * 8 + g];
          op2[nt] = FZ ? reinterpret_cast<const uint32_t*>(obase)[gi * (BN / 2) + (wn * NT + nt) * 8 + g] : 0u;
        }
        flush(sp2, op2);
      }
    }
    }  // kc
  }

  if (!grouped) {
    uint32_t sp2[NT], op2[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int n16 = (n0 >> 4) + wn * NT + nt;
      sp2[nt] = n16 < n16_total ? a.scales[n16 * 8 + g] : 0u;
      op2[nt] = FZ && n16 < n16_total ? a.offsets[n16 * 8 + g] : 0u;
    }
    flush(sp2, op2);
  }

  // In-block reduction of the two K-warps, then the shared epilogue.
  cp_async_wait<0>();
  __syncthreads();
  float* red = reinterpret_cast<float*>(smem);
  constexpr int LD = BN + 4;
#pragma unroll
  for (int pass = 0; pass < WK; ++pass) {
    if (wk == pass) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int nl = (wn * NT + nt) * 16 + g + 8 * (i >> 1);
            const int tok = mt * 8 + 2 * q + (i & 1);
            float* d = red + tok * LD + nl;
            if (pass == 0) *d = acc[nt][mt][i];
            else *d += acc[nt][mt][i];
          }
    }
    __syncthreads();
  }
  finish_tile<T, BM, BN, 256>(a, red, nt_idx * a.m_tiles + mt_idx, sp, m0, n0, &last_flag);
}

}  // namespace int4k

namespace {
using namespace int4k;

template <typename T, int BITS, int MT, int NT, bool FZ>
void* qmm_ptr() {
  return reinterpret_cast<void*>(&qmm_kernel<T, BITS, MT, NT, FZ>);
}

struct QmmEntry {
  bool bf16;
  int bits, mt, nt, smem, bn, bm;
  void* fn;
  bool fz;  // float zero points
};

#define QRT_QMM_ROW(T, ISBF, BITS, MT, NT, FZ)                                                         \
  QmmEntry{ISBF, BITS, MT, NT, QmmShape<BITS, MT, NT, FZ>::kSmem + 0, QmmShape<BITS, MT, NT, FZ>::kBN,     \
           QmmShape<BITS, MT, NT, FZ>::kBM, qmm_ptr<T, BITS, MT, NT, FZ>(), FZ}
#define QRT_QMM_CONFIGS(T, ISBF, BITS, FZ)                                                                  \
  QRT_QMM_ROW(T, ISBF, BITS, 1, 2, FZ), QRT_QMM_ROW(T, ISBF, BITS, 2, 2, FZ),                              \
      QRT_QMM_ROW(T, ISBF, BITS, 4, 2, FZ), QRT_QMM_ROW(T, ISBF, BITS, 2, 1, FZ),                          \
      QRT_QMM_ROW(T, ISBF, BITS, 4, 1, FZ)

// Float zero points (GGUF Q4_1 / Q4_K) only with 4-bit codes: no GGUF type needs 8-bit ones.
const QmmEntry* qmm_table(size_t* count) {
  static const QmmEntry table[] = {
      QRT_QMM_CONFIGS(__half, false, 4, false), QRT_QMM_CONFIGS(__nv_bfloat16, true, 4, false),
      QRT_QMM_CONFIGS(__half, false, 8, false), QRT_QMM_CONFIGS(__nv_bfloat16, true, 8, false),
      QRT_QMM_CONFIGS(__half, false, 4, true),  QRT_QMM_CONFIGS(__nv_bfloat16, true, 4, true),
  };
  *count = sizeof(table) / sizeof(table[0]);
  return table;
}

const QmmEntry* find_qmm(bool bf16, int bits, int mt, int nt, bool fz) {
  size_t n = 0;
  const QmmEntry* t = qmm_table(&n);
  for (size_t i = 0; i < n; ++i)
    if (t[i].bf16 == bf16 && t[i].bits == bits && t[i].mt == mt && t[i].nt == nt && t[i].fz == fz) return &t[i];
  return nullptr;
}

}  // namespace

bool qmm_config_instantiated(int mt, int nt) {
  return (nt == 2 && (mt == 1 || mt == 2 || mt == 4)) || (nt == 1 && (mt == 2 || mt == 4));
}

namespace {
int qmm_occupancy(bool bf16, int bits, int mt, int nt, bool fz);
}

cudaError_t qmm_init_kernels() {
  size_t n = 0;
  const QmmEntry* t = qmm_table(&n);
  for (size_t i = 0; i < n; ++i) {
    cudaError_t e = cudaFuncSetAttribute(t[i].fn, cudaFuncAttributeMaxDynamicSharedMemorySize, t[i].smem);
    if (e != cudaSuccess) return e;
    qmm_occupancy(t[i].bf16, t[i].bits, t[i].mt, t[i].nt, t[i].fz);
  }
  // The wgmma kernels hold sm_90a code, which runs on compute capability 9.0 alone.
  if (wgmma_kernels_built() && device_compute_capability() == 90) {
    const cudaError_t e = wgmma_init_kernels();
    if (e != cudaSuccess) return e;
  }
  return gemv_init_kernels();
}

namespace {
// Resident blocks per SM of the kernel (asked once per device and kept by the GPU runtime; the
// first ask happens at prepare time, through qmm_init_kernels).
int qmm_occupancy(bool bf16, int bits, int mt, int nt, bool fz) {
  const QmmEntry* e = find_qmm(bf16, bits, mt, nt, fz);
  return e ? resident_blocks_per_sm(e->fn, 256, e->smem) : 1;
}
}  // namespace

int qmm_auto_split(const Int4DeviceView& w, int64_t m, const QmmConfig& cfg, int sms) {
  const int64_t bn = 128, bm = 8 * cfg.mt;
  const int64_t base = ((w.n + bn - 1) / bn) * ((m + bm - 1) / bm);
  const int64_t max_tiles = int4_max_partial_tiles(sms) * int4_max_tile_floats() / (bn * bm);
  // Each resident block slot counts as a processor: blocks of one SM share its bandwidth, and a
  // second resident block keeps loads in flight while the first drains or reduces.
  const int slots = sms * std::min(qmm_occupancy(false, w.bits, cfg.mt, cfg.nt, w.offsets != nullptr), 4);
  return choose_split(base, w.k / 64, slots, std::min<int64_t>(max_tiles, int4_counter_count(sms) - 64), 2);
}

cudaError_t launch_qmm(const Int4DeviceView& w, const void* x, void* y, int64_t m, bool bf16,
                       const QmmConfig& cfg, const Int4Workspace& ws, int sms, cudaStream_t stream) {
  const QmmEntry* e = find_qmm(bf16, w.bits, cfg.mt, cfg.nt, w.offsets != nullptr);
  if (!e || m <= 0) return cudaErrorInvalidValue;
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
  a.m_tiles = static_cast<int>((m + e->bm - 1) / e->bm);
  a.n_tiles = static_cast<int>((w.n + e->bn - 1) / e->bn);
  const int kchunks = static_cast<int>(w.k / 64);
  int split = cfg.split > 0 ? cfg.split : qmm_auto_split(w, m, cfg, sms);
  int per = (kchunks + split - 1) / split;
  per = (per + 1) & ~1;
  split = (kchunks + per - 1) / per;
  a.split = split;
  a.chunks_per_split = per;
  const int64_t tiles = static_cast<int64_t>(a.m_tiles) * a.n_tiles;
  if (split > 1) {
    if (!split_k_fits(tiles, split, int64_t(e->bn) * e->bm, ws.partial_floats, ws.counter_count))
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
