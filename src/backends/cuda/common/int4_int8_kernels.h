// Launch interface of qrt's int4/int8 tensor-core kernels: cuda_marlin's (marlin/marlin_kernels.cu),
// cuda_gemv's (gemv/gemv_kernels.cu) and what both launch through (int4_int8_launch.cu). The Int4*
// names stand for the packed 4- and 8-bit layout. Internal header: includes CUDA headers.
//
// Instantiated tile configurations (few on purpose: CI compiles four architectures on two cores):
//   cuda_marlin  qmm_<dtype>_w<bits>_m<8*mt>_nt<nt>: 256 threads, N-tile 128, k128 stages
//                (4-bit: 8/6/4 stages for M-tile 8/16/32; 8-bit: 4/3/3), (mt, nt) in
//                {(1,2), (2,2), (4,2)} with 4 N-warps x 2 K-warps and {(2,1), (4,1)} with 8 N-warps
//   cuda_marlin  qmm_wgmma_<dtype>_bt<bt> (sm_90a, 4-bit): 2 warpgroups x 64 weight rows, bt in
//                {16, 32, 64, 128} tokens, k128 stages (7/6/8/5 deep)
//   cuda_gemv    gemv_<dtype>_w<bits>_t<wt>: 256 threads, wt n16 tiles per block (2 or 4),
//                8/wt K-warps, 16-byte streaming loads straight to registers (two buffers of 4
//                k64 chunks), activations/scales/zeros staged in shared memory; for 9-16 and
//                17-32 rows the same with two and four n8 token tiles, wt 2 only
// for dtype in {fp16, bf16}, bits in {4, 8}; and the same tiles with float zero points (`_fz`,
// GGUF Q4_1 / Q4_K: W = s*q + b) for bits 4.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace qrt::cuda {

// Device pointers of one packed weight (Int4PackedHost uploaded).
struct Int4DeviceView {
  const void* words = nullptr;       // uint4-aligned
  const uint32_t* scales = nullptr;
  const uint16_t* zeros = nullptr;   // nullptr = symmetric
  const uint32_t* offsets = nullptr; // float zero points (fp16 pairs like the scales); selects the FZ kernels
  const float* bias = nullptr;
  const int32_t* perm = nullptr;     // act-order column permutation or nullptr
  int64_t n = 0, k = 0;
  int bits = 4;
  int group_size = 0;                // 0 = per-channel
  float scale_mul = 1.f;
  float offset_mul = 1.f;            // offsets' power of two
};

// Split-K scratch: partial fp32 tiles and per-tile arrival counters (zero between launches; the
// kernels reset them). Shared by launches that run one after another on one stream.
struct Int4Workspace {
  float* partials = nullptr;
  int64_t partial_floats = 0;
  int* counters = nullptr;
  int64_t counter_count = 0;
  // A copy of the activations for kernels that read them reordered (the wgmma kernel); nullptr
  // where the caller reserved none.
  void* act = nullptr;
  int64_t act_bytes = 0;
};

struct QmmConfig {
  int mt = 2;      // 8-token MMA tiles per block: 1, 2 or 4
  int nt = 2;      // n16 tiles per N-warp: 2 (4x2 warps) or 1 (8x1 warps, mt = 2 or 4); N-tile 128
  int split = 0;   // K partitions; 0 = automatic
  bool pdl = true; // programmatic dependent launch where the GPU has it (sm_90+)
};
// cuda_marlin's Hopper kernel (wgmma, built for sm_90a: runs on compute capability 9.0 only), 4-bit
// weights with symmetric or integer zeros: 2 warpgroups x 64 weight rows, bt tokens a block.
struct WgmmaConfig {
  int bt = 64;     // tokens per block: 16, 32, 64 or 128
  int split = 0;   // K partitions; 0 = automatic (ignored when stream-K runs)
  bool pdl = true;
  // Stream-K: one block per resident slot, every block the same number of k128 steps of the
  // layer's tiles, a tile that blocks share summed by the last one to finish (split unused);
  // tiles and split where the workspace cannot hold its partial tiles (wgmma_stream_k_fits).
  // 1 = stream-K, -1 = tiles and split, 0 = automatic: stream-K where prefer_stream_k says (the
  // blocks take several waves), tiles and split otherwise or when `split` is given.
  int stream_k = 0;
};
// Rows of one cuda_gemv launch.
constexpr int kGemvMaxRows = 32;
// wt and bulk choose among the kernels for up to 8 rows; 9 to 32 rows run the wt 2 register-ring
// kernel with two or four token tiles whatever they say.
struct GemvConfig {
  int wt = 4;      // n16 tiles per block: 2 or 4
  int split = 0;   // 0 = automatic
  bool pdl = true; // programmatic dependent launch (sm_90+): the weight stream starts while the
                   // kernel before it on the stream finishes
  bool bulk = false;  // sm_90+: the block's weights through bulk copies into shared memory, all
                      // in flight at once (K is split until a slice fits 48 KB)
};

// cuda_gemv's fused decode work (qrt::LinearFusion in kernel terms, carried in KernelArgs):
// prologue 0 reads x, 1 the RMS norm of the float residual rows [M][K] times norm_weight (its sum
// of squares from the K / 16 partials norm_sumsq [M][K / 16] when set, else from the rows), 2
// silu(gate) * up with rows gate_up_stride elements apart; residual_out set: the output (rounded to
// the activation dtype) is added into those float rows [M][N] instead of written to y, and with
// residual_sumsq_out each 16 columns' sum of squares of the updated rows goes to [M][N / 16].
struct GemvFusion {
  int prologue = 0;
  const float* norm_residual = nullptr;
  const float* norm_weight = nullptr;
  float norm_eps = 0.f;
  const float* norm_sumsq = nullptr;
  float* residual_sumsq_out = nullptr;
  const void* gate = nullptr;
  const void* up = nullptr;
  int64_t gate_up_stride = 0;
  float* residual_out = nullptr;
};

// Launches `fn` (256 threads a block) with the programmatic-serialization attribute when `pdl`
// and the current device is sm_90 or newer, as a plain launch otherwise.
cudaError_t launch_int4_family(void* fn, dim3 grid, int smem, void** args, bool pdl, cudaStream_t stream);

bool qmm_config_instantiated(int mt, int nt);
bool gemv_config_instantiated(int wt);
// Whether `device` runs the bulk-copy GEMV (GemvConfig::bulk): sm_90 or newer.
bool gemv_bulk_supported(int device);

// Largest split-K partial tile count a launch may use (workspace sizing: floats =
// int4_max_partial_tiles(sms) * int4_max_tile_floats()).
int64_t int4_max_partial_tiles(int sms);
int64_t int4_max_tile_floats();
int64_t int4_counter_count(int sms);

// What the compiler gave each instantiated cuda_gemv kernel (cudaFuncGetAttributes on the current
// device), so that a test notices when a change costs the GEMV its resident blocks: the
// one-token-tile kernels are written for at most 80 registers (three 256-thread blocks an SM) and
// no local memory.
struct GemvKernelResources {
  bool bf16 = false;
  int bits = 0, wt = 0;
  bool fz = false, bulk = false;
  int mt = 1;
  int registers = 0;
  size_t local_bytes = 0;  // spills and stack
};
cudaError_t gemv_kernel_resources(std::vector<GemvKernelResources>* out);

// Raise the dynamic shared-memory limits of both kernel families (once per process and device;
// call at prepare time; qmm_init_kernels also calls gemv_init_kernels).
cudaError_t qmm_init_kernels();
cudaError_t gemv_init_kernels();

// y[M][N] = x[M][K] W^T (+ bias); x, y fp16 (bf16 when `bf16`), row-major, contiguous; x must be
// already permuted for act-order (launch_permute_cols). M > 0 of any size (M-tiles in the grid).
// Returns the launch error; never allocates, never synchronizes.
cudaError_t launch_qmm(const Int4DeviceView& w, const void* x, void* y, int64_t m, bool bf16,
                       const QmmConfig& cfg, const Int4Workspace& ws, int sms, cudaStream_t stream);
// The split launch_qmm would use (for plans and tests).
int qmm_auto_split(const Int4DeviceView& w, int64_t m, const QmmConfig& cfg, int sms);

// Same contract as launch_qmm for the wgmma kernel, plus ws.act (at least m x k x 2 bytes: the
// activations reordered into the packed k order by a pass before the GEMM); cudaErrorInvalidValue
// for 8-bit codes, float zero points, an unknown bt or too small a ws.act, cudaErrorNotSupported
// when this binary has no sm_90a code.
cudaError_t launch_qmm_wgmma(const Int4DeviceView& w, const void* x, void* y, int64_t m, bool bf16,
                             const WgmmaConfig& cfg, const Int4Workspace& ws, int sms, cudaStream_t stream);
int wgmma_auto_split(const Int4DeviceView& w, int64_t m, int bt, int sms);
// Whether launch_qmm_wgmma with WgmmaConfig::stream_k runs stream-K for these m rows (its partial
// tiles and counters fit `ws`) rather than tiles and split.
bool wgmma_stream_k_fits(const Int4DeviceView& w, int64_t m, int bt, bool bf16, const Int4Workspace& ws, int sms);
// Whether this binary holds the wgmma kernels (QRT_CUDA_ARCHS named 90 at build time).
bool wgmma_kernels_built();
// Raises the kernels' dynamic shared-memory limits (qmm_init_kernels calls it on sm_90 devices).
cudaError_t wgmma_init_kernels();

// Same contract for M <= kGemvMaxRows, with the fused work of `fusion` when given (M <= 8, no
// act-order then).
cudaError_t launch_int4_gemv(const Int4DeviceView& w, const void* x, void* y, int64_t m, bool bf16,
                             const GemvConfig& cfg, const Int4Workspace& ws, int sms, cudaStream_t stream,
                             const GemvFusion* fusion = nullptr);

// xp[m][i] = x[m][perm[i]] (2-byte elements).
cudaError_t launch_permute_cols(const void* x, void* xp, const int32_t* perm, int64_t m, int64_t k,
                                cudaStream_t stream);

}  // namespace qrt::cuda
