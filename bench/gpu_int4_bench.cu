// Int4 weight-only GEMM benchmark on the four linear shapes of a Llama-2-7B block (docs/PERFORMANCE.md):
// qrt's cuda_gemv / cuda_marlin kernels (mma.sync and, on compute capability 9.0, wgmma) against fp16 cuBLAS timed in the same run, and against the
// int4 streaming floor = (int4 codes + fp16 g128 scales) / (the rate at which cuBLAS streams fp16
// weights at M = 1, measured here). CUDA-graph replay; every launch of a graph reads another copy
// of the weights, with more than 150 MB of copies per shape, so nothing is served from L2.
// Prints a table (ratio to fp16 and to the floor) and writes JSON (rows + summary).
//
//   gpu_int4_bench [--json out.json] [--tinygemm-m1-us T] [--quick] [--shape K N] [--m M] [--smollm2]
// --smollm2: the four linear shapes of a SmolLM2-135M block instead (K 576 / 1536, groups of 32),
// at M = 1 and 16 unless --m, where a decode step is a chain of short dependent launches: the M = 1
// rows also time the chain floors (chain_empty, chain_read) that say how much of a launch is the
// GEMV's own work.
// --tinygemm-m1-us: the summed M = 1 tinygemm time from peers/gemm_peers.py of the same run, for
// int4_m1_speedup_vs_tinygemm (scripts/gpu-check.sh passes it; otherwise the key is null).
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/common/int4_int8_kernels.h"
#include "backends/cuda/common/int4_int8_pack.h"
#include "gpu/pdl.cuh"
#include "qrt/quantized_weight.h"

using namespace qrt;
using namespace qrt::cuda;

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                           \
    }                                                                                         \
  } while (0)
#define CB(x)                                                                \
  do {                                                                       \
    cublasStatus_t s_ = (x);                                                 \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                       \
      std::fprintf(stderr, "%s:%d %s: status %d\n", __FILE__, __LINE__, #x, (int)s_); \
      std::exit(2);                                                          \
    }                                                                        \
  } while (0)

namespace {

constexpr size_t kRotateBytes = 160ull << 20;

__global__ void fill_random_half(__half* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    p[i] = __float2half(((h & 0xFFFF) / 65536.f - 0.5f) * 0.1f);
  }
}

// The read floor: a kernel that only streams the same bytes (16-byte non-caching loads, V of them
// in flight per thread) and folds them into one word, so the loads cannot be dropped. Its time
// per launch, in the same graph replay as the kernels, is what one launch that reads these bytes
// costs at least on this card: ramp-up, tail and launch gap included, which the bandwidth floor
// (bytes over cuBLAS's fp16 rate) leaves out.
template <int V>
__global__ void __launch_bounds__(256) stream_read_kernel(const uint4* p, size_t n16, uint32_t* sink) {
  uint32_t acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * 256 * V;
  for (size_t i = blockIdx.x * static_cast<size_t>(256) * V + threadIdx.x; i < n16; i += stride) {
    uint4 v[V];
#pragma unroll
    for (int u = 0; u < V; ++u) {
      const size_t j = i + static_cast<size_t>(u) * 256;
      if (j < n16)
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                     : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w)
                     : "l"(p + j));
      else
        v[u] = make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < V; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // practically never: keeps the loads live
}

// The dependent-chain floors of a GEMV launch, timed like the candidates (a graph of launches, each
// waiting for the one before through programmatic dependent launch). chain_read has cuda_gemv's
// grid (one block per 32 output channels) and moves what it moves: the block's share of the
// weight bytes loaded before the wait (up to 8 16-byte loads a thread, the rest after it), the k
// activations read and folded after it, one value per output channel written. chain_empty (the
// same grid: the wait and one write) is the bare cost of a dependent launch.
__global__ void __launch_bounds__(256) chain_read_kernel(const uint4* w, int64_t n16_block, const __half* x, int k,
                                                         __half* y, int n_block, int n) {
  qrt::cuda::pdl_trigger();
  const uint4* wb = w + blockIdx.x * n16_block;
  uint4 v[8];
#pragma unroll
  for (int u = 0; u < 8; ++u) {
    const int64_t j = threadIdx.x + u * 256;
    v[u] = j < n16_block ? __ldg(wb + j) : make_uint4(0, 0, 0, 0);
  }
  qrt::cuda::pdl_wait();
  uint32_t acc = 0;
  for (int64_t j = threadIdx.x + 8 * 256; j < n16_block; j += 256) {
    const uint4 t = __ldg(wb + j);
    acc ^= t.x ^ t.y ^ t.z ^ t.w;
  }
#pragma unroll
  for (int u = 0; u < 8; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  float s = acc == 0x9e3779b9u ? 1.f : 0.f;  // keeps the weight loads live
  const __half2* x2 = reinterpret_cast<const __half2*>(x);
  for (int i = threadIdx.x; i < k / 2; i += 256) {
    const float2 f = __half22float2(x2[i]);
    s += f.x + f.y;
  }
  for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
  __shared__ float part[8];
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
  __syncthreads();
  const int c = blockIdx.x * n_block + threadIdx.x;
  if (threadIdx.x < n_block && c < n) {
    float t = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) t += part[i];
    y[c] = __float2half(t * 1e-3f);
  }
}
__global__ void __launch_bounds__(256) chain_empty_kernel(__half* y) {
  qrt::cuda::pdl_trigger();
  qrt::cuda::pdl_wait();
  if (threadIdx.x == 0 && blockIdx.x == 0) y[0] = __float2half(0.f);
}

// Median time (µs) of one launch: a graph of `reps` launches (each on the next weight copy),
// replayed 7 times after a warm-up replay.
double time_graph(cudaStream_t s, int reps, const std::function<void(int)>& launch) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < reps; ++i) launch(i);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < 7; ++r) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return t[t.size() / 2] * 1000.0 / reps;
}

struct Row {
  int64_t k, n, m;
  double fp16_us, int4_us, floor_us, read_us = 0;  // read_us: stream_read_kernel (M = 1 rows)
  std::string kernel;
  std::map<std::string, double> candidates;
};

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  double tinygemm_m1 = -1;
  bool quick = false;
  int64_t only_k = 0, only_n = 0, only_m = 0;  // --shape K N / --m M: one case (for ncu)
  bool smollm2 = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--tinygemm-m1-us" && i + 1 < argc) tinygemm_m1 = std::atof(argv[++i]);
    else if (a == "--quick") quick = true;
    else if (a == "--shape" && i + 2 < argc) only_k = std::atol(argv[++i]), only_n = std::atol(argv[++i]);
    else if (a == "--m" && i + 1 < argc) only_m = std::atol(argv[++i]);
    else if (a == "--smollm2") smollm2 = true;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  std::printf("device: %s (sm_%d%d, %d SMs, L2 %d MB)\n", prop.name, prop.major, prop.minor, sms, prop.l2CacheSize >> 20);
  CK(qmm_init_kernels());
  const bool wgmma_here = wgmma_kernels_built() && prop.major == 9 && prop.minor == 0;
  std::printf("wgmma kernel: %s\n", wgmma_here ? "yes" : "no (needs sm_90a code and compute capability 9.0)");
  Int4Workspace ws;
  ws.partial_floats = int4_max_partial_tiles(sms) * int4_max_tile_floats();
  ws.counter_count = int4_counter_count(sms);
  CK(cudaMalloc(&ws.partials, ws.partial_floats * 4));
  CK(cudaMalloc(&ws.counters, ws.counter_count * 4));
  CK(cudaMemset(ws.counters, 0, ws.counter_count * 4));
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasHandle_t cublas;
  CB(cublasCreate(&cublas));
  CB(cublasSetStream(cublas, stream));

  const std::vector<std::array<int64_t, 2>> shapes =
      smollm2 ? std::vector<std::array<int64_t, 2>>{{576, 960}, {576, 576}, {576, 3072}, {1536, 576}}
              : std::vector<std::array<int64_t, 2>>{{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}};
  const int group = smollm2 ? 32 : 128;
  const char* shapes_name = smollm2 ? "SmolLM2-135M" : "Llama-2-7B";
  std::vector<int64_t> ms = {1, 4, 16, 32, 64, 128, 256, 1024, 4096};
  if (quick) ms = {1, 16, 64};
  if (smollm2) ms = {1, 16};
  if (only_m) ms = {only_m};
  const int64_t max_m = ms.back();
  __half *x = nullptr, *y = nullptr;
  CK(cudaMalloc(&x, max_m * 11008 * 2));
  ws.act_bytes = max_m * 11008 * 2;  // the wgmma kernel's reordered activations
  CK(cudaMalloc(&ws.act, ws.act_bytes));
  CK(cudaMalloc(&y, max_m * 22016 * 2));
  fill_random_half<<<1024, 256>>>(x, max_m * 11008, 7);
  CK(cudaGetLastError());
  uint32_t* sink = nullptr;
  CK(cudaMalloc(&sink, 4));

  std::vector<Row> rows;
  std::mt19937 rng(1);
  for (const auto& sh : shapes) {
    const int64_t K = sh[0], N = sh[1];
    if (only_k && (K != only_k || N != only_n)) continue;
    // One random symmetric 4-bit weight (groups of `group`), packed by the real repack, copied for rotation.
    QuantizedWeight w;
    w.spec.name = "bench";
    w.spec.in_features = K;
    w.spec.out_features = N;
    w.spec.bits = 4;
    w.spec.group_size = group;
    w.codes.resize(K * N);
    for (auto& c : w.codes) c = static_cast<uint8_t>(rng() & 15);
    w.scales.resize(N * (K / group));
    for (auto& s : w.scales) s = 0.001f + (rng() % 1000) * 1e-5f;
    Int4PackedHost p = pack_int4_host(w);
    const size_t wbytes = p.words.size() * 4, sbytes = p.scales.size() * 2;
    const int copies4 = std::max<int>(2, (int)((kRotateBytes + wbytes + sbytes - 1) / (wbytes + sbytes)));
    std::vector<void*> wcopies(copies4), scopies(copies4);
    for (int i = 0; i < copies4; ++i) {
      CK(cudaMalloc(&wcopies[i], wbytes));
      CK(cudaMalloc(&scopies[i], sbytes));
      CK(cudaMemcpy(wcopies[i], p.words.data(), wbytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(scopies[i], p.scales.data(), sbytes, cudaMemcpyHostToDevice));
    }
    const size_t hbytes = K * N * 2;
    const int copies16 = std::max<int>(2, (int)((kRotateBytes + hbytes - 1) / hbytes));
    std::vector<__half*> hcopies(copies16);
    for (int i = 0; i < copies16; ++i) {
      CK(cudaMalloc(&hcopies[i], hbytes));
      fill_random_half<<<1024, 256>>>(hcopies[i], K * N, 100 + i);
      CK(cudaGetLastError());
    }
    auto view = [&](int i) {
      Int4DeviceView v;
      v.words = wcopies[i % copies4];
      v.scales = static_cast<const uint32_t*>(scopies[i % copies4]);
      v.n = N;
      v.k = K;
      v.bits = 4;
      v.group_size = group;
      v.scale_mul = p.scale_mul;
      return v;
    };
    double m1_rate = 0;  // bytes/µs of fp16 cuBLAS at M = 1
    if (ms.front() != 1) {  // --m without 1: the floor still needs the M = 1 rate
      const int reps = std::max(copies4, copies16) < 12 ? 12 : std::max(copies4, copies16);
      const float alpha = 1.f, beta = 0.f;
      m1_rate = hbytes / time_graph(stream, reps, [&](int i) {
                  CB(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, 1, (int)K, &alpha, hcopies[i % copies16],
                                  CUDA_R_16F, (int)K, x, CUDA_R_16F, (int)K, &beta, y, CUDA_R_16F, (int)N,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                });
    }
    for (int64_t m : ms) {
      const int reps = std::max(copies4, copies16) < 12 ? 12 : std::max(copies4, copies16);
      const float alpha = 1.f, beta = 0.f;
      Row r{K, N, m, 0, 1e30, 0, 0, "", {}};
      r.fp16_us = time_graph(stream, reps, [&](int i) {
        CB(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)m, (int)K, &alpha, hcopies[i % copies16],
                        CUDA_R_16F, (int)K, x, CUDA_R_16F, (int)K, &beta, y, CUDA_R_16F, (int)N, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT));
      });
      if (m == 1) m1_rate = hbytes / r.fp16_us;
      r.floor_us = (wbytes + sbytes) / m1_rate;
      if (m == 1) {
        // The read floor of these bytes: best of a few grid shapes and loads in flight.
        r.read_us = 1e30;
        const size_t n16 = wbytes / 16;
        for (int v : {4, 8})
          for (bool persistent : {false, true}) {
            const unsigned blocks = persistent ? static_cast<unsigned>(sms * 8)
                                               : static_cast<unsigned>((n16 + 256 * v - 1) / (256 * v));
            const double t = time_graph(stream, reps, [&](int i) {
              const uint4* src = static_cast<const uint4*>(wcopies[i % copies4]);
              if (v == 4) stream_read_kernel<4><<<blocks, 256, 0, stream>>>(src, n16, sink);
              else stream_read_kernel<8><<<blocks, 256, 0, stream>>>(src, n16, sink);
              CK(cudaGetLastError());
            });
            char name[48];
            std::snprintf(name, sizeof name, "read_v%d_%s", v, persistent ? "persistent" : "onepass");
            r.candidates[name] = t;
            r.read_us = std::min(r.read_us, t);
          }
        // The dependent-chain floors with cuda_gemv's grid (32 output channels a block).
        const unsigned blocks = static_cast<unsigned>((N + 31) / 32);
        const int64_t n16_block = static_cast<int64_t>(wbytes / 16 / blocks);
        // Launched as the candidates are (launch_int4_family: 256 threads, PDL where asked).
        for (bool pdl : {true, false}) {
          const std::string sfx = pdl ? "" : "_nopdl";
          r.candidates["chain_read" + sfx] = time_graph(stream, reps, [&](int i) {
            const uint4* w = static_cast<const uint4*>(wcopies[i % copies4]);
            const __half* xc = x;
            int k = static_cast<int>(K), n_block = 32, n = static_cast<int>(N);
            int64_t per_block = n16_block;
            void* args[] = {&w, &per_block, &xc, &k, &y, &n_block, &n};
            CK(launch_int4_family(reinterpret_cast<void*>(&chain_read_kernel), dim3(blocks), 0, args, pdl, stream));
          });
          r.candidates["chain_empty" + sfx] = time_graph(stream, reps, [&](int) {
            void* args[] = {&y};
            CK(launch_int4_family(reinterpret_cast<void*>(&chain_empty_kernel), dim3(blocks), 0, args, pdl, stream));
          });
        }
        std::printf("K=%5ld N=%5ld M=    1  chain floors: read %.2f us (%.2f without PDL), empty %.2f us (%.2f)\n",
                    (long)K, (long)N, r.candidates["chain_read"], r.candidates["chain_read_nopdl"],
                    r.candidates["chain_empty"], r.candidates["chain_empty_nopdl"]);
      }
      std::vector<std::pair<std::string, std::function<cudaError_t(int)>>> cands;
      // Every candidate also runs without programmatic dependent launch ("_nopdl"): those rows
      // show what PDL buys and are never the reported choice (the backends launch with PDL).
      auto add_qmm = [&](int mt, int nt, int split) {
        for (bool pdl : {true, false}) {
          char name[64];
          std::snprintf(name, sizeof name, "qmm_m%d_%s_s%d%s", 8 * mt, nt == 2 ? "w4x2" : "w8x1", split,
                        pdl ? "" : "_nopdl");
          cands.emplace_back(name, [&, mt, nt, split, pdl](int i) {
            return launch_qmm(view(i), x, y, m, false, QmmConfig{mt, nt, split, pdl}, ws, sms, stream);
          });
        }
      };
      auto add_gemv = [&](int wt, int split, bool bulk) {
        for (bool pdl : {true, false}) {
          char name[64];
          std::snprintf(name, sizeof name, "gemv%s_t%d_s%d%s", bulk ? "_bulk" : "", wt, split, pdl ? "" : "_nopdl");
          cands.emplace_back(name, [&, wt, split, pdl, bulk](int i) {
            return launch_int4_gemv(view(i), x, y, m, false, GemvConfig{wt, split, pdl, bulk}, ws, sms, stream);
          });
        }
      };
      // The wgmma kernel (compute capability 9.0): the tile covering M and the next smaller one.
      // "_sk": its stream-K schedule (every SM the same share of the layer's k-steps).
      // stream_k: 1 stream-K ("_sk"), -1 tiles and split ("_sN"), 0 the automatic rule ("_auto",
      // cuda_marlin's default).
      auto add_wg = [&](int bt, int split, int stream_k = -1) {
        char name[64];
        if (stream_k > 0) std::snprintf(name, sizeof name, "wg_bt%d_sk", bt);
        else if (stream_k == 0) std::snprintf(name, sizeof name, "wg_bt%d_auto", bt);
        else std::snprintf(name, sizeof name, "wg_bt%d_s%d", bt, split);
        cands.emplace_back(name, [&, bt, split, stream_k](int i) {
          return launch_qmm_wgmma(view(i), x, y, m, false, WgmmaConfig{bt, split, true, stream_k}, ws, sms, stream);
        });
      };
      if (m >= 16 && wgmma_here) {
        const int want = m <= 16 ? 16 : m <= 32 ? 32 : m <= 64 ? 64 : 128;
        add_wg(want, 0);
        add_wg(want, 0, 0);
        if (want > 16) add_wg(want / 2, 0);
        for (int bt : {want, want / 2})
          if (bt >= 16 && wgmma_stream_k_fits(view(0), m, bt, false, ws, sms)) add_wg(bt, 0, 1);
        // Explicit K splits from 64 rows: few N-tiles leave SMs idle (96 blocks of 128 x 128 at
        // N = 12288, M = 128 on 132 SMs), more partitions fill them and add a reduction.
        if (m >= 64 && m <= 256)
          for (int split : {2, 4})
            if (split_k_fits(((m + want - 1) / want) * ((N + 127) / 128), split, int64_t(128) * want,
                             ws.partial_floats, ws.counter_count))
              add_wg(want, split);
      }
      if (m <= 8) {
        add_gemv(4, 0, false);
        add_gemv(2, 0, false);
        add_gemv(2, 1, false);
        if (gemv_bulk_supported(0)) {  // sm_90: weights through bulk copies, all in flight at once
          add_gemv(2, 0, true);
          add_gemv(4, 0, true);
        }
        add_qmm(1, 2, 0);
        add_qmm(1, 2, 8);
      } else if (m <= 16) {
        add_gemv(2, 0, false);  // two token tiles
        add_gemv(2, 2, false);
        add_qmm(2, 2, 0);
        add_qmm(2, 1, 0);
        add_qmm(4, 1, 0);
      } else if (m <= 256) {
        if (m <= 32) {  // four token tiles
          add_gemv(2, 0, false);
          add_gemv(2, 2, false);
        }
        add_qmm(4, 2, 0);
        add_qmm(4, 1, 0);
      } else {
        add_qmm(4, 2, 0);
      }
      // Every candidate's output on copy 0 against the first candidate's (the unit tests check
      // that one against the CPU reference): a variant that is fast and wrong is reported.
      std::vector<__half> ref_y, cand_y(m * N);
      for (auto& cand : cands) {
        const auto& fn = cand.second;
        CK(cudaMemsetAsync(y, 0xFF, m * N * 2, stream));
        CK(fn(0));
        CK(cudaStreamSynchronize(stream));
        CK(cudaMemcpy(cand_y.data(), y, m * N * 2, cudaMemcpyDeviceToHost));
        if (ref_y.empty()) {
          ref_y = cand_y;
        } else {
          double num = 0, den = 0;
          for (int64_t e = 0; e < m * N; ++e) {
            const double d = (double)__half2float(cand_y[e]) - (double)__half2float(ref_y[e]);
            num += d * d;
            den += (double)__half2float(ref_y[e]) * (double)__half2float(ref_y[e]);
          }
          if (!(num <= 1e-6 * den)) std::printf("MISMATCH %s: relative error %.3g\n", cand.first.c_str(), std::sqrt(num / den));
        }
        const double t = time_graph(stream, reps, [&](int i) { CK(fn(i)); });
        r.candidates[cand.first] = t;
        const bool nopdl = cand.first.size() > 6 && cand.first.compare(cand.first.size() - 6, 6, "_nopdl") == 0;
        if (!nopdl && t < r.int4_us) r.int4_us = t, r.kernel = cand.first;
      }
      const auto off = r.candidates.find(r.kernel + "_nopdl");
      const double nopdl_us = off == r.candidates.end() ? 0 : off->second;
      std::printf("K=%5ld N=%5ld M=%5ld  fp16 %9.1f us  int4 %9.1f us (%s; %.1f without PDL)  floor %7.1f us  "
                  "fp16/int4 %5.2fx  int4/floor %5.2f\n",
                  (long)K, (long)N, (long)m, r.fp16_us, r.int4_us, r.kernel.c_str(), nopdl_us, r.floor_us,
                  r.fp16_us / r.int4_us, r.int4_us / r.floor_us);
      std::fflush(stdout);
      rows.push_back(r);
    }
    for (auto* pnt : wcopies) CK(cudaFree(pnt));
    for (auto* pnt : scopies) CK(cudaFree(pnt));
    for (auto* pnt : hcopies) CK(cudaFree(pnt));
  }

  // Summary over the four shapes (times summed per M).
  std::map<int64_t, double> f16, i4, fl, rd;
  for (const Row& r : rows) f16[r.m] += r.fp16_us, i4[r.m] += r.int4_us, fl[r.m] += r.floor_us, rd[r.m] += r.read_us;
  std::printf("\n%-6s %10s %10s %10s %10s %10s   (%s, 4 %s shapes summed)\n", "M", "fp16_us", "int4_us",
              "floor_us", "fp16/int4", "int4/floor", prop.name, shapes_name);
  for (int64_t m : ms)
    std::printf("%-6ld %10.1f %10.1f %10.1f %10.2f %10.2f%s\n", (long)m, f16[m], i4[m], fl[m], f16[m] / i4[m], i4[m] / fl[m],
                rd[m] > 0 ? (" read floor " + std::to_string(rd[m]) + " us").c_str() : "");
  auto speedup = [&](int64_t m) { return i4.count(m) ? f16[m] / i4[m] : -1.0; };
  // The wgmma kernel's two schedules, best candidate of each per shape, summed where every shape
  // timed both: what decides stream_k's default; and that default (the automatic rule, at the
  // token tile covering M) against the best of both.
  std::map<int64_t, double> wg_split, wg_sk, wg_auto, wg_best;
  std::map<int64_t, int> wg_shapes;
  auto ends_with = [](const std::string& s, const char* t) {
    const size_t n = std::strlen(t);
    return s.size() > n && s.compare(s.size() - n, n, t) == 0;
  };
  for (const Row& r : rows) {
    double best_split = 1e30, best_sk = 1e30, automatic = 1e30;
    for (const auto& [name, t] : r.candidates) {
      if (name.rfind("wg_bt", 0) != 0 || name.find("nopdl") != std::string::npos) continue;
      if (ends_with(name, "_auto")) automatic = std::min(automatic, t);
      else if (ends_with(name, "_sk")) best_sk = std::min(best_sk, t);
      else best_split = std::min(best_split, t);
    }
    if (best_split < 1e30 && best_sk < 1e30 && automatic < 1e30) {
      wg_split[r.m] += best_split, wg_sk[r.m] += best_sk, wg_auto[r.m] += automatic;
      wg_best[r.m] += std::min(best_split, best_sk);
      ++wg_shapes[r.m];
    }
  }
  for (const auto& [m, n] : wg_shapes)
    if (n == 4)
      std::printf("wgmma M %-5ld tiles + split %8.1f us, stream-K %8.1f us: stream-K %.2fx; automatic %8.1f us, "
                  "%.2fx the best of both\n", (long)m, wg_split[m], wg_sk[m], wg_split[m] / wg_sk[m], wg_auto[m],
                  wg_auto[m] / wg_best[m]);
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 2;
    }
    std::fprintf(f, "{\n  \"card\": \"%s\",\n  \"rows\": [\n", prop.name);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f, "    {\"k\": %ld, \"n\": %ld, \"m\": %ld, \"fp16_us\": %.2f, \"int4_us\": %.2f, \"floor_us\": %.2f, "
                      "\"kernel\": \"%s\", \"candidates\": {",
                   (long)r.k, (long)r.n, (long)r.m, r.fp16_us, r.int4_us, r.floor_us, r.kernel.c_str());
      size_t j = 0;
      for (const auto& [name, t] : r.candidates)
        std::fprintf(f, "%s\"%s\": %.2f", j++ ? ", " : "", name.c_str(), t);
      std::fprintf(f, "}}%s\n", i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"summary\": {\n");
    std::fprintf(f, "    \"int4_m1_vs_floor\": %.3f,\n", i4.count(1) ? i4[1] / fl[1] : -1.0);
    std::fprintf(f, "    \"int4_m1_vs_read_floor\": %.3f,\n", rd[1] > 0 ? i4[1] / rd[1] : -1.0);
    std::fprintf(f, "    \"read_floor_m1_us\": %.2f,\n", rd[1]);
    double m1_nopdl = 0;
    for (const Row& r : rows)
      if (r.m == 1) {
        const auto it = r.candidates.find(r.kernel + "_nopdl");
        m1_nopdl += it == r.candidates.end() ? r.int4_us : it->second;
      }
    std::fprintf(f, "    \"int4_m1_vs_floor_without_pdl\": %.3f,\n", i4.count(1) ? m1_nopdl / fl[1] : -1.0);
    if (tinygemm_m1 > 0 && i4.count(1))
      std::fprintf(f, "    \"int4_m1_speedup_vs_tinygemm\": %.3f,\n", tinygemm_m1 / i4[1]);
    else
      std::fprintf(f, "    \"int4_m1_speedup_vs_tinygemm\": null,\n");
    for (int64_t m : {16, 32, 64, 128})
      std::fprintf(f, "    \"int4_m%ld_speedup_vs_fp16\": %.3f,\n", (long)m, speedup(m));
    for (const auto& [m, n] : wg_shapes)
      if (n == 4)
        std::fprintf(f, "    \"wgmma_m%ld_stream_k_speedup\": %.3f,\n    \"wgmma_m%ld_auto_vs_best\": %.3f,\n", (long)m,
                     wg_split[m] / wg_sk[m], (long)m, wg_auto[m] / wg_best[m]);
    std::fprintf(f, "    \"int4_m4096_vs_fp16\": %.3f\n  }\n}\n", speedup(4096));
    std::fclose(f);
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
