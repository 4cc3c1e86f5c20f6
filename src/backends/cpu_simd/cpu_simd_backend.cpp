// cpu_simd: the x86 SIMD CPU backend. Repacks the canonical QuantizedWeight into 16-row x 32-k
// interleaved tiles (layout in cpu_simd_kernels.h), prepares activations once per call (act-order
// permutation, padding, quantization per 32-block: by default to 15 bits held as two int8 halves,
// "int8x2"; plain int8 and float activations on request) and runs the AVX-512 VNNI, AVX2 or scalar
// kernel chosen at run time from cpuid. This file is compiled without ISA flags: it must run on any
// x86-64 CPU, so every SIMD instruction lives in the *_avx2.cpp / *_avx512.cpp files.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "backends/backend_factories.h"
#include "backends/cpu_simd/cpu_simd_kernels.h"
#include "core/parallel_tasks.h"
#include "qrt/device.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#else
#include <thread>
#endif

namespace qrt {
namespace cpu_simd {

// ---------------------------------------------------------------------------------------------
// Scalar kernels on the packed layout: the baseline path and the oracle of the SIMD ones.

namespace {

// e4m3fn byte -> float without a table (no NaN handling: validate() rejects NaN codes).
float fp8_e4m3_value(uint8_t b) {
  const int e = (b >> 3) & 0xF, m = b & 7;
  float v = e == 0 ? static_cast<float>(m) * (1.0f / 512.0f)
                   : (1.0f + static_cast<float>(m) * 0.125f) * static_cast<float>(1 << e) * (1.0f / 128.0f);
  return (b & 0x80) ? -v : v;
}

inline int code_at(const PackedView& w, const uint8_t* block, int row, int kk) {
  if (w.kind == CodeKind::U4) {
    const int c = (kk & 15) >> 2, j = kk & 3;
    const uint8_t byte = block[c * 64 + 4 * row + j];
    return kk < 16 ? (byte & 0xF) : (byte >> 4);
  }
  return block[(kk >> 2) * 64 + 4 * row + (kk & 3)];
}

// Scale (i < 16) or min (i >= 16) of row i % 16 of (tile, group).
inline float scale_at(const PackedView& w, int64_t tile, int32_t group, int i) {
  const int64_t off = (tile * w.groups + group) * 2 * kTileRows + i;
  return w.scales16 ? fp16_to_f32(w.scales16[off]) : w.scales[off];
}

void store_tile(const GemmArgs& a, int64_t m, int64_t tile, const float* acc) {
  const int64_t n0 = tile * kTileRows;
  const int64_t cols = std::min<int64_t>(kTileRows, a.n - n0);
  float* out = a.y + m * a.ldy + n0;
  for (int64_t i = 0; i < cols; ++i) out[i] = acc[i] + (a.bias ? a.bias[n0 + i] : 0.f);
}

}  // namespace

void gemm_int8_scalar(const GemmArgs& a) {
  const PackedView& w = a.w;
  for (int64_t t = a.tile_begin; t < a.tile_end; ++t) {
    const uint8_t* tcodes = w.codes + t * w.tile_code_bytes();
    for (int64_t m = a.m_begin; m < a.m_end; ++m) {
      const int8_t* q = a.a.q + m * a.a.row_stride;
      const float* d = a.a.d + m * a.a.block_stride;
      const float* ds = a.a.sum + m * a.a.block_stride;
      float acc[kTileRows] = {};
      for (int64_t b = 0; b < w.blocks; ++b) {
        const uint8_t* blk = tcodes + b * w.block_bytes();
        float s[2 * kTileRows];
        for (int i = 0; i < 2 * kTileRows; ++i) s[i] = scale_at(w, t, w.block_group[b], i);
        for (int r = 0; r < kTileRows; ++r) {
          int32_t dot = 0;
          for (int kk = 0; kk < kBlockK; ++kk) dot += code_at(w, blk, r, kk) * q[b * kBlockK + kk];
          acc[r] += static_cast<float>(dot) * (s[r] * d[b]) + s[kTileRows + r] * ds[b];
        }
      }
      store_tile(a, m, t, acc);
    }
  }
}

void gemm_int8x2_scalar(const GemmArgs& a) {
  const PackedView& w = a.w;
  for (int64_t t = a.tile_begin; t < a.tile_end; ++t) {
    const uint8_t* tcodes = w.codes + t * w.tile_code_bytes();
    for (int64_t m = a.m_begin; m < a.m_end; ++m) {
      const int8_t* q = a.a.q + m * a.a.row_stride;
      const int8_t* q2 = a.a.q2 + m * a.a.row_stride;
      const float* d = a.a.d + m * a.a.block_stride;
      const float* ds = a.a.sum + m * a.a.block_stride;
      float acc[kTileRows] = {};
      for (int64_t b = 0; b < w.blocks; ++b) {
        const uint8_t* blk = tcodes + b * w.block_bytes();
        float s[2 * kTileRows];
        for (int i = 0; i < 2 * kTileRows; ++i) s[i] = scale_at(w, t, w.block_group[b], i);
        for (int r = 0; r < kTileRows; ++r) {
          int32_t hi = 0, lo = 0;
          for (int kk = 0; kk < kBlockK; ++kk) {
            const int c = code_at(w, blk, r, kk);
            hi += c * q[b * kBlockK + kk];
            lo += c * q2[b * kBlockK + kk];
          }
          const int32_t dot = kSplitRatio * hi + lo;
          acc[r] += static_cast<float>(dot) * (s[r] * d[b]) + s[kTileRows + r] * ds[b];
        }
      }
      store_tile(a, m, t, acc);
    }
  }
}

void gemm_f32_scalar(const GemmArgs& a) {
  const PackedView& w = a.w;
  for (int64_t t = a.tile_begin; t < a.tile_end; ++t) {
    const uint8_t* tcodes = w.codes + t * w.tile_code_bytes();
    for (int64_t m = a.m_begin; m < a.m_end; ++m) {
      const float* x = a.a.x + m * a.a.row_stride;
      const float* xs = a.a.sum + m * a.a.block_stride;
      float acc[kTileRows] = {};
      for (int64_t b = 0; b < w.blocks; ++b) {
        const uint8_t* blk = tcodes + b * w.block_bytes();
        float s[2 * kTileRows];
        for (int i = 0; i < 2 * kTileRows; ++i) s[i] = scale_at(w, t, w.block_group[b], i);
        for (int r = 0; r < kTileRows; ++r) {
          float dot = 0;
          for (int kk = 0; kk < kBlockK; ++kk) {
            const int c = code_at(w, blk, r, kk);
            const float v = w.kind == CodeKind::Fp8 ? fp8_e4m3_value(static_cast<uint8_t>(c)) : static_cast<float>(c);
            dot += v * x[b * kBlockK + kk];
          }
          acc[r] += dot * s[r] + s[kTileRows + r] * xs[b];
        }
      }
      store_tile(a, m, t, acc);
    }
  }
}

void quantize_row_scalar(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q,
                         float* d, float* dsum) {
  float tmp[kBlockK];
  for (int64_t b = 0; b < blocks; ++b) {
    const float* x = activation_block(src, map, k, b, tmp);
    float amax = 0;
    for (int i = 0; i < kBlockK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float step = amax / 127.f;
    const float inv = amax > 0 ? 127.f / amax : 0.f;
    int sum = 0;
    for (int i = 0; i < kBlockK; ++i) {
      const int v = static_cast<int>(std::nearbyint(x[i] * inv));
      q[b * kBlockK + i] = static_cast<int8_t>(v);
      sum += v;
    }
    d[b] = step;
    dsum[b] = step * static_cast<float>(sum);
  }
}

void quantize_row_x2_scalar(const float* src, const int32_t* map, int64_t k, int64_t blocks, int8_t* q,
                            int8_t* q2, float* d, float* dsum) {
  float tmp[kBlockK];
  for (int64_t b = 0; b < blocks; ++b) {
    const float* x = activation_block(src, map, k, b, tmp);
    float amax = 0;
    for (int i = 0; i < kBlockK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float inv = amax > 0 ? kSplitLevels / amax : 0.f;
    int32_t sum = 0;
    for (int i = 0; i < kBlockK; ++i) {
      const float f = std::clamp(std::nearbyint(x[i] * inv), -kSplitLevels, kSplitLevels);
      const int32_t v = static_cast<int32_t>(f);
      // v / 255 is never a tie (255 is odd), so rounding its float quotient is exact.
      const int32_t hi = static_cast<int32_t>(std::nearbyint(f * (1.f / kSplitRatio)));
      q[b * kBlockK + i] = static_cast<int8_t>(hi);
      q2[b * kBlockK + i] = static_cast<int8_t>(v - kSplitRatio * hi);
      sum += v;
    }
    const float step = amax / kSplitLevels;
    d[b] = step;
    dsum[b] = step * static_cast<float>(sum);
  }
}

void pack_dense(const float* w, int64_t n, int64_t k, float* out) {
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t kk = 0; kk < k; ++kk)
      for (int r = 0; r < kTileRows; ++r) {
        const int64_t row = t * kTileRows + r;
        out[(t * k + kk) * kTileRows + r] = row < n ? w[row * k + kk] : 0.f;
      }
}

void dense_sgemm_scalar(const DenseArgs& a) {
  for (int64_t t = a.tile_begin; t < a.tile_end; ++t)
    for (int64_t m = a.m_begin; m < a.m_end; ++m) {
      float acc[kTileRows] = {};
      const float* x = a.x + m * a.k;
      const float* wt = a.w_packed + t * a.k * kTileRows;
      for (int64_t kk = 0; kk < a.k; ++kk)
        for (int r = 0; r < kTileRows; ++r) acc[r] += wt[kk * kTileRows + r] * x[kk];
      const int64_t n0 = t * kTileRows;
      for (int r = 0; r < kTileRows && n0 + r < a.n; ++r) a.y[m * a.n + n0 + r] = acc[r];
    }
}

void dense_sgemm(Isa isa, ThreadPool* pool, const float* w_packed, int64_t n, int64_t k, const float* x,
                 int64_t m, float* y) {
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  auto run = [&](int, int64_t t0, int64_t t1) {
    DenseArgs a{w_packed, k, n, x, 0, m, t0, t1, y};
    switch (isa) {
      case Isa::Avx512: dense_sgemm_avx512(a); break;
      case Isa::Avx2: dense_sgemm_avx2(a); break;
      default: dense_sgemm_scalar(a);
    }
  };
  if (pool) pool->parallel_for(tiles, run);
  else run(0, 0, tiles);
}

}  // namespace cpu_simd

// ---------------------------------------------------------------------------------------------
namespace {

using namespace cpu_simd;

enum class ActMode : uint8_t { Int8, Int8x2, F32 };

bool parse_act(const std::string& s, ActMode* out) {
  if (s == "int8") *out = ActMode::Int8;
  else if (s == "int8x2") *out = ActMode::Int8x2;
  else if (s == "f32") *out = ActMode::F32;
  else return false;
  return true;
}

// A spin-wait's pause between two looks at an atomic.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Below this many multiply-adds a call runs on the calling thread. With the pool's workers spinning
// between jobs a split costs less than the second core's share of a SmolLM2 projection: on the
// 2-core Xeon VM (2026-12-07, bench_batch_decode, two alternating runs of each) the one-row step
// took 3.0-3.1 ms with q/o/gate/up/down split (this value) against 3.6-4.3 ms with only the head
// split (2 M MACs), and 3.4 ms with k/v split too (128 K).
constexpr int64_t kMinParallelMacs = int64_t{1} << 18;
// From this many rows a product of a quarter of kMinParallelMacs runs split (k_proj and v_proj of
// SmolLM2, 192 x 576, from 2 rows: the 2-row step 4.1-4.3 ms against 5.2-5.7 when 2 rows ran
// every projection on one thread).
constexpr int64_t kManyRows = 2;

std::string param_string(const KernelParams& p, const std::string& key, const std::string& fallback) {
  auto it = p.values.find(key);
  if (it == p.values.end()) return fallback;
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return fallback;
}

// Zeroed bytes on 2 MiB-aligned memory marked for transparent huge pages: a decode step streams
// every packed weight once, and with 4 KiB pages that is one TLB miss per 16 blocks of 256 bytes.
class HugeBuffer {
 public:
  HugeBuffer() = default;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
  ~HugeBuffer() { std::free(data_); }
  void allocate(size_t bytes) {
    constexpr size_t kHuge = size_t{2} << 20;
    std::free(data_);
    size_ = bytes;
    const size_t rounded = bytes >= kHuge / 2 ? (bytes + kHuge - 1) / kHuge * kHuge : (bytes + 63) / 64 * 64;
    data_ = static_cast<uint8_t*>(std::aligned_alloc(bytes >= kHuge / 2 ? kHuge : 64, std::max<size_t>(rounded, 64)));
    if (!data_) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (bytes >= kHuge / 2) madvise(data_, rounded, MADV_HUGEPAGE);
#endif
    std::memset(data_, 0, bytes);
  }
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Per-call scratch of the calling thread, grown to the largest call seen and then reused: the hot
// path allocates only the first time a layer shape/M exceeds what the thread has seen.
struct Scratch {
  std::vector<int8_t> q, q2;
  std::vector<float> x, d, sum;
  template <typename T>
  static T* grow(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};
thread_local Scratch t_scratch;

class CpuSimdPrepared final : public PreparedLinear {
 public:
  CpuSimdPrepared(const QuantizedWeight& w, Isa isa, ActMode act, int m_tile, int m_block)
      : n_(w.N()), k_(w.K()), isa_(isa), act_(act), m_tile_(m_tile), m_block_(m_block), bias_(w.bias) {
    if (w.spec.encoding == WeightEncoding::Fp8E4M3) act_ = ActMode::F32;  // fp8 codes: float path only
    build_column_map(w);
    pack(w);
  }

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx) override {
    const int64_t M = x.rows;
    if (M <= 0) return;
    // The plan's parameters for this M range (one packed weight serves every range: the layout does
    // not depend on any parameter). Map lookups with short keys: no allocation.
    Isa isa = isa_;
    ActMode act = act_;
    int m_tile = m_tile_, m_block_rows = m_block_;
    if (const KernelParams* p = ctx.call_params) {
      m_tile = static_cast<int>(p->get_int("m_tile", m_tile));
      m_block_rows = static_cast<int>(p->get_int("m_block", m_block_rows));
      auto it = p->values.find("activations");
      if (it != p->values.end() && kind_ != CodeKind::Fp8)
        if (const auto* s = std::get_if<std::string>(&it->second)) parse_act(*s, &act);
      it = p->values.find("isa");
      Isa requested;
      if (it != p->values.end())
        if (const auto* s = std::get_if<std::string>(&it->second); s && parse_cpu_isa(*s, &requested))
          isa = std::min(requested, best_cpu_isa());
    }
    CallState st;
    st.xs = static_cast<const float*>(x.data);
    st.M = M;
    st.kp = blocks_ * kBlockK;
    st.map = map_.empty() ? nullptr : map_.data();
    st.act = act;
    st.isa = isa;
    Scratch& s = t_scratch;
    ActView av;
    av.row_stride = st.kp;
    av.block_stride = blocks_;
    st.sums = Scratch::grow(s.sum, static_cast<size_t>(M * blocks_));
    av.sum = st.sums;
    if (act != ActMode::F32) {
      st.q = Scratch::grow(s.q, static_cast<size_t>(M * st.kp));
      st.d = Scratch::grow(s.d, static_cast<size_t>(M * blocks_));
      if (act == ActMode::Int8x2) st.q2 = Scratch::grow(s.q2, static_cast<size_t>(M * st.kp));
      av.q = st.q;
      av.q2 = st.q2;
      av.d = st.d;
    } else {
      st.direct = st.map == nullptr && st.kp == k_;
      st.xb = st.direct ? nullptr : Scratch::grow(s.x, static_cast<size_t>(M * st.kp));
      av.x = st.direct ? st.xs : st.xb;
    }
    ThreadPool* pool = ctx.pool;
    CallState* call = &st;
    // Waking the pool costs microseconds: small products (SmolLM2 decode layers) run faster on the
    // calling thread alone. Rows of several sequences (the batched server) make a product dense in
    // work per weight byte, and there a quarter of that size already pays for the split.
    const int64_t macs = M * n_ * k_;
    const bool parallel = pool && pool->size() > 1 &&
                          (macs >= kMinParallelMacs || (M >= kManyRows && macs >= kMinParallelMacs / 4));
    // A parallel product prepares its rows inside the same job (see run_parallel); otherwise the
    // rows get a job of their own when there are enough of them.
    if (!parallel) {
      if (pool && pool->size() > 1 && M > 1 && M * k_ >= kMinParallelMacs / 64)
        pool->run_on_all(
            [this, call](int t, int nt) { prepare_rows(*call, call->M * t / nt, call->M * (t + 1) / nt); });
      else
        prepare_rows(st, 0, M);
    }

    GemmArgs& base = st.base;
    base.w = view();
    base.a = av;
    base.y = static_cast<float*>(y.data);
    base.ldy = n_;
    base.n = n_;
    base.bias = bias_.empty() ? nullptr : bias_.data();
    base.m_tile = m_tile;
    using Kernel = void (*)(const GemmArgs&);
    static constexpr Kernel kKernels[3][3] = {
        // Int8, Int8x2, F32
        {gemm_int8_scalar, gemm_int8x2_scalar, gemm_f32_scalar},
        {gemm_int8_avx2, gemm_int8x2_avx2, gemm_f32_avx2},
        {gemm_int8_avx512, gemm_int8x2_avx512, gemm_f32_avx512},
    };
    st.kernel = kKernels[static_cast<int>(isa)][static_cast<int>(act)];
    // Work units: (block of M rows) x (weight tile). Threads take chunks of consecutive units from an
    // atomic counter (ggml-style), so a thread that is descheduled or slower does not hold the others
    // back; inside a chunk, consecutive tiles of one M block run in one kernel call (weights stream,
    // activations stay hot).
    st.m_block = std::max<int64_t>(1, M <= 2 * m_block_rows ? M : m_block_rows);
    const int64_t m_blocks = (M + st.m_block - 1) / st.m_block;
    st.units = m_blocks * n_tiles_;
    if (!parallel) {
      run_units(st, 0, st.units);
      return;
    }
    st.chunk = std::max<int64_t>(1, st.units / (8 * pool->size()));
    pool->run_on_all([this, call](int, int) { run_parallel(*call); });
  }

  int64_t weight_bytes() const override {
    return static_cast<int64_t>(codes_.size() + scales_.size() * sizeof(float) + scales16_.size() * 2 +
                                block_group_.size() * 4 +
                                map_.size() * 4);
  }

 private:
  // Everything one forward() call shares with its worker threads (lives on the caller's stack).
  struct CallState {
    const float* xs = nullptr;
    const int32_t* map = nullptr;
    int64_t M = 0, kp = 0;
    ActMode act = ActMode::F32;
    Isa isa = Isa::Scalar;
    int8_t *q = nullptr, *q2 = nullptr;
    float *d = nullptr, *sums = nullptr, *xb = nullptr;
    bool direct = false;
    GemmArgs base;
    void (*kernel)(const GemmArgs&) = nullptr;
    int64_t m_block = 1, units = 0, chunk = 1;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> next_row{0}, rows_ready{0};
  };

  // One thread's part of a parallel forward(): it takes activation rows to prepare one at a time,
  // waits until every row is ready (every product reads all of them), then takes chunks of units.
  // One job instead of two saves a wake-up of the pool per call, and the rows no longer wait on the
  // caller alone (at 8 rows that was a few microseconds per linear, with the other thread idle).
  // The wait cannot hang: a row is counted ready by the thread that took it, which is running.
  void run_parallel(CallState& st) const {
    for (int64_t r = st.next_row.fetch_add(1, std::memory_order_relaxed); r < st.M;
         r = st.next_row.fetch_add(1, std::memory_order_relaxed)) {
      prepare_rows(st, r, r + 1);
      st.rows_ready.fetch_add(1, std::memory_order_release);
    }
    while (st.rows_ready.load(std::memory_order_acquire) < st.M) cpu_relax();
    for (;;) {
      const int64_t u0 = st.next.fetch_add(st.chunk, std::memory_order_relaxed);
      if (u0 >= st.units) break;
      run_units(st, u0, std::min(st.units, u0 + st.chunk));
    }
  }

  // Activation rows [r0, r1): gathered through the column map, padded, and quantized per 32-block
  // (int8 and int8x2 paths) or summed per block (float path).
  void prepare_rows(const CallState& st, int64_t r0, int64_t r1) const {
    const int64_t kp = st.kp;
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = st.xs + r * k_;
      if (st.act == ActMode::Int8) {
        if (st.isa != Isa::Scalar)
          quantize_row_avx2(src, st.map, k_, blocks_, st.q + r * kp, st.d + r * blocks_, st.sums + r * blocks_);
        else
          quantize_row_scalar(src, st.map, k_, blocks_, st.q + r * kp, st.d + r * blocks_, st.sums + r * blocks_);
        continue;
      }
      if (st.act == ActMode::Int8x2) {
        int8_t* q = st.q + r * kp;
        int8_t* q2 = st.q2 + r * kp;
        if (st.isa != Isa::Scalar)
          quantize_row_x2_avx2(src, st.map, k_, blocks_, q, q2, st.d + r * blocks_, st.sums + r * blocks_);
        else
          quantize_row_x2_scalar(src, st.map, k_, blocks_, q, q2, st.d + r * blocks_, st.sums + r * blocks_);
        continue;
      }
      float* dst = st.direct ? nullptr : st.xb + r * kp;
      if (dst)
        for (int64_t p = 0; p < kp; ++p) {
          const int64_t col = st.map ? st.map[p] : (p < k_ ? p : -1);
          dst[p] = col >= 0 ? src[col] : 0.f;
        }
      const float* row = st.direct ? src : dst;
      for (int64_t b = 0; b < blocks_; ++b) {
        float acc = 0;
        for (int i = 0; i < kBlockK; ++i) acc += row[b * kBlockK + i];
        st.sums[r * blocks_ + b] = acc;
      }
    }
  }

  // Units [u0, u1) of (M block, tile), consecutive tiles of one M block per kernel call.
  void run_units(const CallState& st, int64_t u0, int64_t u1) const {
    int64_t u = u0;
    while (u < u1) {
      const int64_t mb = u / n_tiles_;
      const int64_t t0 = u % n_tiles_;
      const int64_t t1 = std::min(n_tiles_, t0 + (u1 - u));
      GemmArgs a = st.base;
      a.m_begin = mb * st.m_block;
      a.m_end = std::min(st.M, a.m_begin + st.m_block);
      a.tile_begin = t0;
      a.tile_end = t1;
      st.kernel(a);
      u += t1 - t0;
    }
  }

  PackedView view() const {
    PackedView v;
    v.kind = kind_;
    v.n_tiles = n_tiles_;
    v.blocks = blocks_;
    v.groups = groups_;
    v.codes = codes_.data();
    v.scales = scales_.data();
    v.scales16 = scales16_.empty() ? nullptr : scales16_.data();
    v.block_group = block_group_.data();
    v.runs = runs_.data();
    v.n_runs = static_cast<int64_t>(runs_.size() / 2);
    return v;
  }

  // Decides where each input column goes. Identity (plus zero padding of K to 32) when every block
  // of 32 columns lies in one group; otherwise columns are ordered by group and every group padded
  // to a multiple of 32, and forward() gathers the activations through map_.
  void build_column_map(const QuantizedWeight& w) {
    const bool fp8 = w.spec.encoding == WeightEncoding::Fp8E4M3;
    std::vector<int32_t> group(k_);
    int64_t g_size = fp8 ? std::max<int64_t>(1, std::min<int64_t>(w.spec.scale_block_k, k_)) : w.spec.effective_group_size();
    for (int64_t k = 0; k < k_; ++k) group[k] = fp8 ? static_cast<int32_t>(k / g_size) : w.group_of(k);
    groups_ = fp8 ? (k_ + g_size - 1) / g_size : std::max<int64_t>(1, w.spec.num_groups());
    bool trivial = true;
    for (int64_t k = 0; k < k_ && trivial; ++k) trivial = group[k] == k / g_size;
    const int64_t padded = (k_ + kBlockK - 1) / kBlockK * kBlockK;
    if (trivial && (g_size % kBlockK == 0 || groups_ == 1)) {
      blocks_ = padded / kBlockK;
      block_group_.resize(blocks_);
      for (int64_t b = 0; b < blocks_; ++b)
        block_group_[b] = static_cast<int32_t>(std::min<int64_t>(groups_ - 1, b * kBlockK / g_size));
      return;
    }
    std::vector<int32_t> order(k_);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return group[a] < group[b]; });
    for (size_t i = 0; i < order.size();) {
      const int32_t g = group[order[i]];
      size_t j = i;
      while (j < order.size() && group[order[j]] == g) map_.push_back(order[j++]);
      while (map_.size() % kBlockK) map_.push_back(-1);
      for (size_t b = block_group_.size(); b < map_.size() / kBlockK; ++b) block_group_.push_back(g);
      i = j;
    }
    blocks_ = static_cast<int64_t>(block_group_.size());
  }

  void build_runs() {
    for (int64_t b = 0; b < blocks_; ++b) {
      if (!runs_.empty() && runs_[runs_.size() - 2] == block_group_[b]) ++runs_.back();
      else runs_.insert(runs_.end(), {block_group_[b], 1});
    }
  }

  void pack(const QuantizedWeight& w) {
    build_runs();
    const LayerSpec& sp = w.spec;
    const bool fp8 = sp.encoding == WeightEncoding::Fp8E4M3;
    // An int8 code book (GGUF IQ4) packs each code's level + 128 as an 8-bit code: the kernels then
    // compute (level + 128 - 128) * scale with the symmetric-zero correction, exactly the grid value.
    const bool grid = sp.encoding == WeightEncoding::Codebook;
    kind_ = fp8 ? CodeKind::Fp8 : (sp.bits <= 4 && !grid ? CodeKind::U4 : CodeKind::U8);
    uint8_t level_code[256] = {};
    if (grid)
      for (size_t c = 0; c < sp.codebook.size(); ++c)
        level_code[c] = static_cast<uint8_t>(static_cast<int>(sp.codebook[c]) + 128);
    n_tiles_ = (n_ + kTileRows - 1) / kTileRows;
    const PackedView v0 = [&] {
      PackedView v;
      v.kind = kind_;
      v.blocks = blocks_;
      return v;
    }();
    const int64_t bb = v0.block_bytes();
    codes_.allocate(static_cast<size_t>(n_tiles_ * blocks_ * bb));
    scales_.assign(static_cast<size_t>(n_tiles_ * groups_ * 2 * kTileRows), 0.f);
    const int64_t G = sp.num_groups();
    const int64_t fp8_cols = fp8 ? (k_ + sp.scale_block_k - 1) / sp.scale_block_k : 0;
    // Tiles are independent: 16 at a time on several threads (a 7B model has 6.5 G codes).
    run_parallel_ranges(n_tiles_, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int r = 0; r < kTileRows; ++r) {
          const int64_t n = t * kTileRows + r;
          if (n >= n_) break;
          const uint8_t* src = w.codes.data() + n * k_;
          uint8_t* tile = codes_.data() + t * blocks_ * bb;
          // One 32-column block at a time: gather the row's codes (through the column map, zero past
          // K), then scatter them to their interleaved byte positions.
          uint8_t gathered[kBlockK];
          for (int64_t b = 0; b < blocks_; ++b) {
            const int64_t p0 = b * kBlockK;
            if (map_.empty() && p0 + kBlockK <= k_) {
              std::memcpy(gathered, src + p0, kBlockK);
            } else {
              for (int kk = 0; kk < kBlockK; ++kk) {
                const int64_t col = map_.empty() ? (p0 + kk < k_ ? p0 + kk : -1) : map_[p0 + kk];
                gathered[kk] = col >= 0 ? src[col] : 0;
              }
            }
            // Padding columns meet zero activations, so their code does not matter.
            if (grid)
              for (uint8_t& g : gathered) g = level_code[g & 15];
            uint8_t* blk = tile + b * bb + 4 * r;
            if (kind_ == CodeKind::U4) {
              for (int c = 0; c < 4; ++c)
                for (int j = 0; j < 4; ++j)
                  blk[c * 64 + j] = static_cast<uint8_t>((gathered[4 * c + j] & 0xF) | (gathered[16 + 4 * c + j] << 4));
            } else {
              for (int q = 0; q < 8; ++q) std::memcpy(blk + q * 64, gathered + 4 * q, 4);
            }
          }
          float* ts = scales_.data() + t * groups_ * 2 * kTileRows;
          for (int64_t g = 0; g < groups_; ++g) {
            double scale, min = 0;
            if (fp8) {
              scale = w.scales[static_cast<size_t>((n / sp.scale_block_n) * fp8_cols + g)];
            } else {
              scale = w.scales[static_cast<size_t>(n * G + g)];
              switch (sp.zero_kind) {
                case ZeroKind::Symmetric: min = -std::ldexp(1.0, grid ? 7 : sp.bits - 1) * scale; break;
                case ZeroKind::Integer: min = -static_cast<double>(w.zeros[n * G + g]) * scale; break;
                case ZeroKind::Float: min = w.zeros[n * G + g]; break;
              }
            }
            ts[g * 2 * kTileRows + r] = static_cast<float>(scale);
            ts[g * 2 * kTileRows + kTileRows + r] = static_cast<float>(min);
          }
        }
    });
    // Halve the scale bytes when that loses nothing (fp16 checkpoints, symmetric or float zeros).
    bool exact = true;
    for (float v : scales_) exact = exact && fp16_to_f32(f32_to_fp16(v)) == v;
    if (exact) {
      scales16_.resize(scales_.size());
      for (size_t i = 0; i < scales_.size(); ++i) scales16_[i] = f32_to_fp16(scales_[i]);
      std::vector<float>().swap(scales_);
    }
  }

  int64_t n_, k_;
  Isa isa_;
  ActMode act_;
  int m_tile_, m_block_;
  CodeKind kind_ = CodeKind::U4;
  int64_t n_tiles_ = 0, blocks_ = 0, groups_ = 0;
  HugeBuffer codes_;
  std::vector<float> scales_;      // empty when scales16_ holds them
  std::vector<uint16_t> scales16_;
  std::vector<int32_t> block_group_;
  std::vector<int32_t> runs_;  // (group, blocks) pairs covering the blocks in order
  std::vector<int32_t> map_;   // empty = identity (with zero padding past K)
  std::vector<float> bias_;
};

const std::vector<int64_t> kMTiles = {1, 2, 4, 8};
constexpr ActMode kDefaultAct = ActMode::Int8x2;
constexpr const char* kDefaultActName = "int8x2";
const std::vector<int64_t> kMBlocks = {16, 32, 64, 128, 256};

// The sizes and indices packing relies on (checkpoint codecs already ran QuantizedWeight::validate,
// whose per-code scan is the slow part of loading; repeating it here doubled it).
void check_structure(const QuantizedWeight& w) {
  const LayerSpec& s = w.spec;
  auto fail = [&](const std::string& what) { throw invalid_input(s.name + ": cpu_simd: " + what); };
  const int64_t n = s.out_features, k = s.in_features;
  if (n <= 0 || k <= 0) fail("in/out features must be positive");
  if (static_cast<int64_t>(w.codes.size()) != n * k) fail("codes size is not out_features x in_features");
  if (!w.bias.empty() && static_cast<int64_t>(w.bias.size()) != n) fail("bias size != out_features");
  if (s.encoding == WeightEncoding::Codebook && (s.bits > 4 || !s.codebook_is_int8()))
    fail("only 4-bit code books with integer levels in [-128, 127] run here");
  if (s.encoding == WeightEncoding::Fp8E4M3) {
    if (s.scale_block_n <= 0 || s.scale_block_k <= 0) fail("fp8 scale block sizes must be positive");
    const int64_t rows = (n + s.scale_block_n - 1) / s.scale_block_n, cols = (k + s.scale_block_k - 1) / s.scale_block_k;
    if (static_cast<int64_t>(w.scales.size()) != rows * cols) fail("fp8 scales size mismatch");
    return;
  }
  const int64_t groups = std::max<int64_t>(1, s.num_groups());
  if (static_cast<int64_t>(w.scales.size()) != n * groups) fail("scales size is not out_features x groups");
  if (s.zero_kind != ZeroKind::Symmetric && static_cast<int64_t>(w.zeros.size()) != n * groups)
    fail("zeros size is not out_features x groups");
  if (!w.g_idx.empty()) {
    if (static_cast<int64_t>(w.g_idx.size()) != k) fail("g_idx size != in_features");
    for (int32_t g : w.g_idx)
      if (g < 0 || g >= groups) fail("g_idx value " + std::to_string(g) + " out of range [0, " + std::to_string(groups) + ")");
  }
}

class CpuSimdBackend final : public Backend {
 public:
  CpuSimdBackend() {
    cap_.device = DeviceKind::Cpu;
    cap_.encodings = {WeightEncoding::IntAffine, WeightEncoding::Fp8E4M3, WeightEncoding::Codebook};
    cap_.bits = {2, 3, 4, 5, 6, 8};
    cap_.group_sizes = {};  // any: blocks of 32 never straddle a group (column map)
    cap_.cpu_features = {"avx2", "fma", "f16c"};
    cap_.activation_dtypes = {DType::F32};
  }
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return summary_; }
  const BackendCapability& capability() const override { return cap_; }
  int kernel_version() const override { return 1; }
  // The packed layout is the same for every parameter set: one prepared weight serves all M ranges,
  // forward() reads the range's parameters from ExecContext::call_params.
  KernelParams packing_params(const KernelParams&) const override { return {}; }
  bool reads_call_params() const override { return true; }

  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    Verdict v = check_capability(layer, device);
    if (!v.ok) return v;
    if (layer.encoding == WeightEncoding::Fp8E4M3 && (layer.scale_block_n <= 0 || layer.scale_block_k <= 0))
      return Verdict::no("fp8 scale block sizes must be positive");
    if (layer.encoding == WeightEncoding::Codebook && (layer.bits > 4 || !layer.codebook_is_int8()))
      return Verdict::no("code book with non-integer levels (" + layer.source_format +
                         "): the int8 kernels run only integer grids such as GGUF IQ4's; cpu_ref runs it");
    return Verdict::yes();
  }

  Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const override {
    for (const auto& [key, value] : params.values) {
      if (key == "isa" || key == "activations") {
        const auto* s = std::get_if<std::string>(&value);
        if (!s) return Verdict::no("parameter '" + key + "' must be a string");
        Isa isa;
        ActMode act;
        if (key == "isa" && *s != "auto" && !parse_cpu_isa(*s, &isa))
          return Verdict::no("parameter 'isa' = '" + *s + "': expected auto, avx512_vnni, avx2 or scalar");
        if (key == "activations" && !parse_act(*s, &act))
          return Verdict::no("parameter 'activations' = '" + *s + "': expected int8x2, f32 or int8");
      } else if (key == "m_tile" || key == "m_block") {
        const auto* i = std::get_if<int64_t>(&value);
        if (!i) return Verdict::no("parameter '" + key + "' must be an integer");
        const auto& allowed = key == "m_tile" ? kMTiles : kMBlocks;
        if (std::find(allowed.begin(), allowed.end(), *i) == allowed.end()) {
          std::string list;
          for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::to_string(a);
          return Verdict::no("parameter '" + key + "' = " + std::to_string(*i) + ": expected one of " + list);
        }
      } else {
        return Verdict::no("unknown parameter '" + key + "': cpu_simd takes isa, activations, m_tile, m_block");
      }
    }
    return Verdict::yes();
  }

  KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    KernelParams p;
    // Two-level int8 activations by default: 15-bit per 32-block, two VNNI / maddubs dots sharing
    // one weight unpack. Plain int8 activations are faster still at prefill but flip near-tied
    // greedy tokens (SmolLM2 answered "What is the capital of France?" with "L'Etoile..." instead
    // of "Paris"; +0.36% perplexity); int8x2 is as accurate as float activations (docs/QUALITY.md)
    // at near-int8 decode speed. int8 is an explicit parameter only, never chosen silently.
    p.values["activations"] = std::string(kDefaultActName);
    // m_tile is an upper bound (fewer rows run the matching smaller tile), so one value serves all M
    // and a plan needs a single range per layer.
    p.values["m_tile"] = int64_t{8};
    p.values["m_block"] = int64_t{64};
    return p;
  }

  std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const override {
    std::vector<KernelParams> out;
    for (int64_t mt : kMTiles) {
      if (mt > std::max<int64_t>(1, m)) continue;
      for (int64_t mb : kMBlocks) {
        if (mb > 2 * std::max<int64_t>(m, 16) && mb != kMBlocks.front()) continue;
        // Only the modes that keep the float-activation accuracy: the tuner picks the fastest
        // candidate within its error bound, which plain int8 would pass while flipping answers.
        for (const char* act : {"int8x2", "f32"}) {
          KernelParams p;
          p.values["activations"] = std::string(act);
          p.values["m_tile"] = mt;
          p.values["m_block"] = mb;
          out.push_back(std::move(p));
        }
      }
    }
    return out;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext&) const override {
    check_structure(weight);
    const Verdict v = validate_params(weight.spec, params);
    if (!v.ok) throw invalid_input(weight.spec.name + ": cpu_simd: " + v.reason);
    if (weight.spec.encoding == WeightEncoding::IntAffine && (weight.spec.bits < 1 || weight.spec.bits > 8))
      throw unsupported(weight.spec.name + ": cpu_simd runs 1..8-bit integer weights, got " +
                        std::to_string(weight.spec.bits));
    const Isa isa = resolve_cpu_isa(param_string(params, "isa", "auto"));
    ActMode act = kDefaultAct;
    parse_act(param_string(params, "activations", ""), &act);
    const int m_tile = static_cast<int>(params.get_int("m_tile", 8));
    const int m_block = static_cast<int>(params.get_int("m_block", 64));
    try {
      return std::make_unique<CpuSimdPrepared>(weight, isa, act, m_tile, m_block);
    } catch (const std::bad_alloc&) {
      throw Error(ErrorKind::OutOfMemory, weight.spec.name + ": cpu_simd: out of host memory while repacking");
    }
  }

 private:
  std::string name_ = "cpu_simd";
  std::string summary_ = "x86 SIMD int2-8/fp8 kernels (AVX-512 VNNI, AVX2), 16-row interleaved repack, two-level int8 activations";
  BackendCapability cap_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_simd_backend() { return std::make_unique<CpuSimdBackend>(); }

}  // namespace qrt
