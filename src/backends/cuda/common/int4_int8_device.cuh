// Device building blocks shared by qrt's int4/int8 weight-only kernels (cuda_marlin, cuda_gemv):
// PTX wrappers (cp.async, mma.sync m16n8k16), the dequantization of the packed fragments, and the
// tile epilogue with the split-K "last block reduces" protocol. Internal header for .cu files.
//
// Orientation (why weights are the MMA "A" operand): both kernels compute y^T = W * x^T, so the
// weight rows fill the 16-row side of m16n8k16 and the tokens the 8-column side. At M <= 8 that
// wastes nothing on the weight side, and a dequantized weight fragment is reused by every 8-token
// tile of the block.
//
// Packed layout (built by pack_int4_host, int4_int8_pack.cpp): the weight is cut into n16 x k64
// pieces; piece (t, c) holds 32 lanes x 16 bytes (4-bit) or 2 x 32 lanes x 16 bytes (8-bit), so
// one 16-byte load per lane is exactly its A fragments for the four k16 steps of the piece.
// Inside a 64-wide piece the k order is permuted (identically for weights and activations, which
// leaves the dot product unchanged) so that lane (g, q) of step j reads activation columns
//   kA0 = 32*(j/2) + 8*q + 4*(j%2)  ->  b0b1 = x[kA0, kA0+1], b2b3 = x[kA0+2, kA0+3]
// i.e. a lane's activations for two steps are 8 contiguous halves: one 16-byte load, and every
// 32-column half of the piece stays inside one 32-group.
// 4-bit word of step j for lane (g, q), row r = 16t + g: nibble 0/4 = W[r][kA0 + 0/1],
// nibble 1/5 = W[r+8][kA0 + 0/1], nibble 2/6 = W[r][kA0 + 2/3], nibble 3/7 = W[r+8][kA0 + 2/3],
// so (word >> 4i) & 0x000f000f gives the i-th A register as two 16-bit lanes.
// 8-bit: word A of a step = bytes W[r][kA0], W[r][kA0+1], W[r+8][kA0], W[r+8][kA0+1]; word B the
// same for kA0+2, kA0+3; a uint4 holds (A, B) of step 2s and (A, B) of step 2s+1.
//
// Float zero points (the FZ kernels; GGUF Q4_1 / Q4_K, W = s*q + b per group): the MMAs see the
// bare codes q (zero operand 0) and, in a second accumulator, the activation sums of the group
// (an MMA with an all-ones A fragment, so the sums come in the same fragment layout as the dot
// products); a group ends with acc += s * sum(q*x) + b * sum(x), all in fp32, so the offset costs no
// precision either. b is stored as fp16 pairs like the scales, with its own power of two.
#pragma once

#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "backends/cuda/common/int4_int8_kernels.h"
#include "gpu/pdl.cuh"

namespace qrt::cuda::int4k {

// ---- PTX wrappers ----
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared (L2 only); `valid == false` zero-fills the destination.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Streaming 16-byte load that does not pollute L1 (weights are read exactly once).
__device__ __forceinline__ uint4 ldg_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Bulk copies (sm_90+, the TMA unit): one instruction moves a contiguous run of bytes from global
// to shared memory and reports its arrival on an mbarrier as a transaction count, so a block can
// put its whole weight slice in flight at once without spending registers on it. The mbarrier
// completes its phase when the expected bytes have landed; each one here is used for one phase.
// Sizes and addresses are multiples of 16 bytes. On older architectures these compile to nothing
// and the host never launches a kernel that uses them (gemv_bulk_supported()).
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count));
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
#endif
}
__device__ __forceinline__ void bulk_copy_g2s(void* smem, const void* gmem, uint32_t bytes, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
          smem_addr(smem)),
      "l"(gmem), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}

// Programmatic dependent launch (pdl_wait / pdl_trigger of src/gpu/pdl.cuh): what these kernels do
// before pdl_wait() reads only the weights, never what the kernel before writes (activations, the
// split-K workspace, the output).

template <typename T>
struct MmaOp;
template <>
struct MmaOp<__half> {
  static __device__ __forceinline__ void run(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <>
struct MmaOp<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// (a & b) | c in one LOP3.
__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// ---- dtype traits: magic constants of the integer -> float trick ----
// OR-ing a 4-bit code q into the mantissa of 1024.0 (fp16, ulp 1) or 128.0 (bf16, ulp 1) gives the
// exact value base + q; subtracting base + z (built the same way from the zero code) leaves q - z
// exactly, so the tensor cores see exact small integers and every scale is applied in fp32.
template <typename T>
struct Traits;
template <>
struct Traits<__half> {
  static constexpr uint32_t kMagic = 0x64006400u;  // half2(1024, 1024)
  static __device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b) {
    __half2 r = __hsub2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
  static __device__ __forceinline__ uint32_t from_floats(float lo, float hi) {
    __half2 r = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&r);
  }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) { return from_floats(lo, hi); }
  static __device__ __forceinline__ float2 to_floats(uint32_t v) {
    return __half22float2(*reinterpret_cast<const __half2*>(&v));
  }
  static constexpr uint32_t kOnes = 0x3C003C00u;  // half2(1, 1)
};
template <>
struct Traits<__nv_bfloat16> {
  static constexpr uint32_t kMagic = 0x43004300u;  // bf162(128, 128)
  static constexpr uint32_t kOnes = 0x3F803F80u;   // bf162(1, 1)
  static __device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b) {
    __nv_bfloat162 r =
        __hsub2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
  static __device__ __forceinline__ uint32_t from_floats(float lo, float hi) {
    __nv_bfloat162 r = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&r);
  }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) { return from_floats(lo, hi); }
  static __device__ __forceinline__ float2 to_floats(uint32_t v) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v));
  }
};

// Zero operand of one row pair for the 4-bit path: z -> (base + z) in both 16-bit lanes.
template <typename T>
__device__ __forceinline__ uint32_t zero_magic4(uint32_t z) {
  const uint32_t h = (Traits<T>::kMagic & 0xFFFFu) | z;
  return h | (h << 16);
}

// 4-bit: one word -> the four A registers (q - z), zr for row r, zr8 for row r + 8 (zero_magic4).
// fp16: the row r + 8 registers take the codes where they lie, at bits 4-7 of each half (16 times
// the code above the magic), and one FMA with 1/16 both rescales and subtracts 64 + z: exact, as
// 1024 + 16 q and 64 + q fit fp16's mantissa. One shift a word instead of three. bf16's 7-bit
// mantissa has no room for that, so it shifts.
template <typename T>
__device__ __forceinline__ void dequant4(uint32_t q, uint32_t zr, uint32_t zr8, uint32_t* a) {
  const uint32_t m = Traits<T>::kMagic;
  if constexpr (std::is_same_v<T, __half>) {
    // half2(-(64 + z)) from half2(1024 + z): z < 64 moves up into the mantissa of -64.
    const uint32_t add8 = ((zr8 & 0x003F003Fu) << 4) + 0xD400D400u;
    const __half2 sixteenth = __half2half2(__ushort_as_half(0x2C00));
    auto fma16 = [&](uint32_t v) {
      __half2 r = __hfma2(*reinterpret_cast<const __half2*>(&v), sixteenth, *reinterpret_cast<const __half2*>(&add8));
      return *reinterpret_cast<uint32_t*>(&r);
    };
    a[0] = Traits<T>::sub2(lop3_and_or(q, 0x000f000fu, m), zr);
    a[1] = fma16(lop3_and_or(q, 0x00f000f0u, m));
    q >>= 8;
    a[2] = Traits<T>::sub2(lop3_and_or(q, 0x000f000fu, m), zr);
    a[3] = fma16(lop3_and_or(q, 0x00f000f0u, m));
  } else {
    a[0] = Traits<T>::sub2(lop3_and_or(q, 0x000f000fu, m), zr);
    a[1] = Traits<T>::sub2(lop3_and_or(q >> 4, 0x000f000fu, m), zr8);
    a[2] = Traits<T>::sub2(lop3_and_or(q >> 8, 0x000f000fu, m), zr);
    a[3] = Traits<T>::sub2(lop3_and_or(q >> 12, 0x000f000fu, m), zr8);
  }
}

// 8-bit: bytes -> fp32 through 2^23 + b (exact), minus 2^23 + z, then one packed convert (exact:
// |q - z| <= 255 fits both fp16 and bf16). zr/zr8 are the fp32 values 2^23 + z.
__device__ __forceinline__ float byte_as_f32(uint32_t w, uint32_t sel) {
  return __uint_as_float(__byte_perm(w, 0x4B000000u, sel));
}
template <typename T>
__device__ __forceinline__ void dequant8(uint32_t wa, uint32_t wb, float zr, float zr8, uint32_t* a) {
  a[0] = Traits<T>::pack2(byte_as_f32(wa, 0x7440) - zr, byte_as_f32(wa, 0x7441) - zr);
  a[1] = Traits<T>::pack2(byte_as_f32(wa, 0x7442) - zr8, byte_as_f32(wa, 0x7443) - zr8);
  a[2] = Traits<T>::pack2(byte_as_f32(wb, 0x7440) - zr, byte_as_f32(wb, 0x7441) - zr);
  a[3] = Traits<T>::pack2(byte_as_f32(wb, 0x7442) - zr8, byte_as_f32(wb, 0x7443) - zr8);
}

// ---- kernel arguments (plain data, filled by the launchers) ----
struct KernelArgs {
  const void* x = nullptr;        // [M][K] fp16/bf16 (already act-order permuted)
  void* y = nullptr;              // [M][N]
  const uint4* w = nullptr;       // packed codes
  const uint32_t* scales = nullptr;  // [G][N/16][8] half2 pairs (s[r], s[r+8]), fp16
  const uint16_t* zeros = nullptr;   // [G][N/16][8] byte pairs (z[r], z[r+8]); nullptr = symmetric
  const float* bias = nullptr;    // [N] or nullptr
  float* partials = nullptr;      // split-K workspace
  int* counters = nullptr;        // one per output tile, zero between launches
  int m = 0, n = 0, k = 0;
  int group_size = 0;             // 0 = one group over K (per-channel), else 32/64/128
  int log2_group = 0;
  float scale_mul = 1.f;          // power of two folded out of the fp16 scales
  int split = 1;                  // K partitions
  int chunks_per_split = 0;       // k64 chunks per partition (marlin: multiple of 2)
  int m_tiles = 1, n_tiles = 1;
  const uint32_t* offsets = nullptr; // FZ kernels: [G][N/16][8] half2 pairs (b[r], b[r+8]), fp16
  float offset_ratio = 1.f;          // FZ kernels: offsets' power of two / scale_mul (exact)
  // Stream-K (the wgmma kernel): the grid's blocks share the m_tiles x n_tiles x sk_iters k128
  // steps equally, in that order; 0 = one tile (and K partition) a block.
  int stream_k = 0;
  int sk_iters = 0;  // k128 steps a tile
  GemvFusion fused;  // the GEMV's fused decode work (int4_int8_kernels.h); finish_tile reads residual_out
};

// A k128 stage's group parameters into shared memory, as the mma.sync and wgmma kernels' rings
// hold them: for the gps groups from g0 of the N-tile at n0, 16-byte pieces taken by the block's
// 256 threads, zero-filled past the groups (G) and past N.
// fp16 pairs ([G][N/2] words, half_n = N / 2: the scales, or the FZ offsets), BN * 2 bytes a group.
template <int BN>
__device__ __forceinline__ void stage_group_pairs(unsigned char* dst, const uint32_t* pairs, const KernelArgs& a,
                                                  int half_n, int g0, int gps, int G, int n0, int tid) {
  constexpr int P = BN * 2 / 16;  // pieces a group
  for (int i = tid; i < gps * P; i += 256) {
    const int s = i / P, j = i % P;
    const int gi = g0 + s;
    const bool ok = gi < G && n0 + 8 * j < a.n;
    const uint32_t* src = pairs + static_cast<size_t>(gi) * half_n + (n0 >> 1) + 4 * j;
    cp_async16(dst + s * BN * 2 + j * 16, ok ? src : pairs, ok);
  }
}
// Integer zero points (a.zeros as [G][N] bytes), BN bytes a group.
template <int BN>
__device__ __forceinline__ void stage_group_zeros(unsigned char* dst, const KernelArgs& a, int g0, int gps, int G,
                                                  int n0, int tid) {
  constexpr int P = BN / 16;
  for (int i = tid; i < gps * P; i += 256) {
    const int s = i / P, j = i % P;
    const int gi = g0 + s;
    const bool ok = gi < G && n0 + 16 * j < a.n;
    const unsigned char* src = reinterpret_cast<const unsigned char*>(a.zeros) + static_cast<size_t>(gi) * a.n + n0 + 16 * j;
    cp_async16(dst + s * BN + j * 16, ok ? static_cast<const void*>(src) : a.zeros, ok);
  }
}

// The blocks that add to one output tile, in k order: contributor j's partial tile is workspace
// slot first + stride * j, plus first_extra for j = 0; this block is contributor `me`. Split-K:
// `split` contributors in consecutive slots; stream-K (the wgmma kernel): two slots a block.
struct TileParts {
  int count = 1;  // 1: this block holds the whole tile
  int me = 0;
  int64_t first = 0;
  int stride = 1;
  int first_extra = 0;
  __device__ __forceinline__ int64_t slot(int j) const { return first + int64_t(stride) * j + (j == 0 ? first_extra : 0); }
};

// Epilogue on a block's fp32 tile red[BM][BN + 4] (smem, token-major): scale_mul, bias, convert,
// store; with several contributors every one writes its tile to the workspace and the last one to
// arrive sums all of them in k order (deterministic, no float atomics) and stores.
template <typename T, int BM, int BN, int THREADS>
__device__ __forceinline__ void finish_tile_parts(const KernelArgs& a, const float* red, int tile_id,
                                                  const TileParts& parts, int m0, int n0, int* flag_smem) {
  constexpr int LD = BN + 4;
  constexpr int PIECES = BM * BN / 4;
  const int tid = threadIdx.x;
  if (parts.count > 1) {
    float4* dst = reinterpret_cast<float4*>(a.partials) + static_cast<size_t>(parts.slot(parts.me)) * PIECES;
    for (int i = tid; i < PIECES; i += THREADS) {
      const int row = i / (BN / 4), c4 = i % (BN / 4);
      dst[i] = *reinterpret_cast<const float4*>(red + row * LD + 4 * c4);
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      const int prev = atomicAdd(a.counters + tile_id, 1);
      *flag_smem = (prev == parts.count - 1);
    }
    __syncthreads();
    if (!*flag_smem) return;
    __threadfence();
  }
  // With residual_sumsq_out every thread runs the same number of rounds (the partials are summed
  // across the four lanes of each 16 columns by shuffles); a piece's row and 16 columns are those
  // of the four consecutive pieces starting at a multiple of 4 (BN is a multiple of 16).
  static_assert(BN % 16 == 0 && THREADS % 32 == 0, "pieces of 16 columns stay in one warp");
  float* const sumsq_out = a.fused.residual_sumsq_out;
  for (int base = 0; base < PIECES; base += THREADS) {
    const int i = base + tid;
    const int row = i / (BN / 4), c4 = i % (BN / 4);
    const int mm = m0 + row, nn = n0 + 4 * c4;
    const bool live = i < PIECES && mm < a.m && nn < a.n;
    float ss = 0.f;
    if (live) {
      float4 v;
      if (parts.count > 1) {
        const float4* src = reinterpret_cast<const float4*>(a.partials) + i;
        v = __ldcg(src + static_cast<size_t>(parts.slot(0)) * PIECES);
        for (int s = 1; s < parts.count; ++s) {
          const float4 u = __ldcg(src + static_cast<size_t>(parts.slot(s)) * PIECES);
          v.x += u.x, v.y += u.y, v.z += u.z, v.w += u.w;
        }
      } else {
        v = *reinterpret_cast<const float4*>(red + row * LD + 4 * c4);
      }
      v.x *= a.scale_mul, v.y *= a.scale_mul, v.z *= a.scale_mul, v.w *= a.scale_mul;
      if (a.bias) {
        const float4 b = *reinterpret_cast<const float4*>(a.bias + nn);
        v.x += b.x, v.y += b.y, v.z += b.z, v.w += b.w;
      }
      uint2 out;
      out.x = Traits<T>::from_floats(v.x, v.y);
      out.y = Traits<T>::from_floats(v.z, v.w);
      if (a.fused.residual_out) {
        // What the unfused step does: store T, then add it to the float residual.
        float4* r = reinterpret_cast<float4*>(a.fused.residual_out + static_cast<size_t>(mm) * a.n + nn);
        const float2 lo = Traits<T>::to_floats(out.x), hi = Traits<T>::to_floats(out.y);
        float4 rv = *r;
        rv.x += lo.x, rv.y += lo.y, rv.z += hi.x, rv.w += hi.y;
        *r = rv;
        ss = rv.x * rv.x + rv.y * rv.y + rv.z * rv.z + rv.w * rv.w;
      } else {
        *reinterpret_cast<uint2*>(static_cast<T*>(a.y) + static_cast<size_t>(mm) * a.n + nn) = out;
      }
    }
    if (sumsq_out) {  // a kernel argument: the same branch for every thread of the block
      ss += __shfl_xor_sync(0xffffffffu, ss, 1);
      ss += __shfl_xor_sync(0xffffffffu, ss, 2);
      if (live && (c4 & 3) == 0) sumsq_out[static_cast<size_t>(mm) * (a.n / 16) + nn / 16] = ss;
    }
  }
  if (parts.count > 1 && tid == 0) a.counters[tile_id] = 0;
}

// Split-K: partition sp of a.split, in slots tile_id * split + sp.
template <typename T, int BM, int BN, int THREADS>
__device__ __forceinline__ void finish_tile(const KernelArgs& a, const float* red, int tile_id, int sp,
                                            int m0, int n0, int* flag_smem) {
  TileParts parts;
  parts.count = a.split;
  parts.me = sp;
  parts.first = static_cast<int64_t>(tile_id) * a.split;
  finish_tile_parts<T, BM, BN, THREADS>(a, red, tile_id, parts, m0, n0, flag_smem);
}

}  // namespace qrt::cuda::int4k
