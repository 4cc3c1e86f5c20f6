// Declared capabilities of the CUDA backends (see cuda_capabilities.h for why they live here).
// The limits of the kernels: Marlin-class kernels need sm_80 (mma.sync + cp.async) and
// N % 64 / K % 64 (the smallest thread tile); the GEMV streams 16-byte vectors of 4-bit codes
// along K (K % 32) and serves M <= 16; FP8 tensor-core GEMM needs sm_89 and cuBLASLt's
// multiple-of-16 shapes; the int8 tensor-core GEMM (cuda_int8) needs sm_80 and runs 8-bit per-row
// symmetric weights; dequant + cuBLAS runs anything on any GPU from sm_70 (Volta) on, it is
// the universal fallback (its kernels and the model's ops are plain CUDA, built for sm_70/75 too);
// HIGGS rotated codebooks run only on cuda_higgs (plain CUDA too, sm_70 on).
#include "cuda_capabilities.h"

#include <fmt/format.h>

#include "qrt/error.h"

namespace qrt {

std::string fp8_tensor_core_obstacle(const LayerSpec& s, int cc) {
  if (cc < 89) return "sm_" + std::to_string(cc) + " has no FP8 tensor cores";
  if (s.in_features % 16 || s.out_features % 16) return "K and N must be multiples of 16";
  const bool per_row_k = s.scale_block_k <= 0 || s.scale_block_k >= s.in_features;
  if (!per_row_k) return "block scales " + std::to_string(s.scale_block_n) + "x" + std::to_string(s.scale_block_k);
  return "";
}

std::string int4_float_zero_note(const LayerSpec& layer) {
  if (layer.encoding != WeightEncoding::IntAffine || layer.zero_kind != ZeroKind::Float) return "";
  return "GGUF float zero points: fp16 scale and offset per group, the offset times the group's activation sum "
         "in fp32 (exact for fp16 d, m as in Q4_1; Q4_K's d*sc, dmin*m round to fp16)";
}

std::string int8_path_note(const LayerSpec& layer) {
  const std::string t = fmt::format("{:g}", layer.llm_int8_threshold);
  const std::string gemv = "; up to gemv_max_m rows a weight-only GEMV (decode is memory-bound; qrt tune measures "
                           "the crossover)";
  if (!layer.is_llm_int8())
    return "W8A8: above gemv_max_m rows the activations are quantized to int8 per row for int8 tensor cores (the "
           "checkpoint is weight-only int8: no outlier decomposition)" + gemv;
  if (layer.llm_int8_threshold <= 0.f)
    return "LLM.int8 without decomposition (llm_int8_threshold 0): above gemv_max_m rows every activation column "
           "int8 per row on int8 tensor cores" + gemv;
  return "LLM.int8: above gemv_max_m rows int8 tensor cores, with the activation columns holding some |x| >= " + t +
         " (llm_int8_threshold) in fp32 (at most max_outliers per call, the largest kept)" + gemv;
}

namespace {
std::string int8_note(const LayerSpec& layer, const DeviceInfo&) { return int8_path_note(layer); }

std::string int4_path_note(const LayerSpec& layer, const DeviceInfo&) { return int4_float_zero_note(layer); }

}  // namespace

std::string dequant_path_note(const LayerSpec& layer, const DeviceInfo&) {
  if (layer.encoding != WeightEncoding::Codebook) return "";
  const std::string source = layer.source_format.empty() ? "" : " (" + layer.source_format + ")";
  std::string note = "code book" + source + ": each code maps through the " + std::to_string(1 << layer.bits) +
                     "-level table in shared memory, times its group scale, in both the fused GEMV (M <= gemv_max_m) "
                     "and the fp16/bf16 tiles for cuBLAS";
  // The unrolled run kernels exist for 4-bit code books in whole runs of 32; the rest decode code
  // by code (correct, slower).
  const int64_t g = layer.effective_group_size();
  if (layer.bits != 4 || layer.act_order || (g % 32 != 0 && g < layer.in_features))
    note += "; per-code kernels (" +
            std::string(layer.bits != 4 ? std::to_string(layer.bits) + "-bit codes"
                        : layer.act_order ? "act-order"
                                          : "group " + std::to_string(g) + " not a multiple of 32") +
            ")";
  return note;
}

std::string higgs_layer_obstacle(const LayerSpec& layer) {
  const int p = layer.codebook_dim;
  if (p < 1 || p > 2) return fmt::format("grid vectors of {} values unsupported: runs p = 1 or 2", p);
  if (layer.in_features % p != 0) return fmt::format("in_features {} is not a multiple of p = {}", layer.in_features, p);
  if (static_cast<int64_t>(layer.codebook.size()) > 256 * p)
    return fmt::format("a grid of {} vectors unsupported: at most 256 (one byte per code)", layer.codebook.size() / p);
  if (layer.hadamard_size > kHiggsMaxHadamard)
    return fmt::format("hadamard_size {} unsupported: at most {}", layer.hadamard_size, kHiggsMaxHadamard);
  return "";
}

namespace {
std::string fp8_path_note(const LayerSpec& layer, const DeviceInfo& device) {
  const std::string why = fp8_tensor_core_obstacle(layer, device.gpu.compute_capability());
  return why.empty() ? why : "M > gemv_max_m runs weight-only (dequant + cuBLAS), not on FP8 tensor cores: " + why;
}

std::vector<CudaBackendDeclaration> build_table() {
  std::vector<CudaBackendDeclaration> t;

  {  // Universal: dequantize tiles to fp16/bf16, then cuBLAS; fused dequant-GEMV at small M.
    CudaBackendDeclaration d;
    d.name = "cuda_dequant";
    d.summary = "dequantize to fp16/bf16 tiles + cuBLAS GEMM (any bits, group, zero kind, FP8, code books); "
                "universal fallback";
    auto& c = d.capability;
    c.device = DeviceKind::Cuda;
    c.encodings = {WeightEncoding::IntAffine, WeightEncoding::Fp8E4M3, WeightEncoding::Codebook};
    c.bits = {};  // any 1..8
    c.group_sizes = {};
    c.act_order = c.symmetric = c.integer_zero = c.float_zero = c.fp8_block_scales = true;
    c.min_compute_capability = 70;
    c.k_multiple = 1;
    c.n_multiple = 1;
    c.activation_dtypes = {DType::F16, DType::BF16};
    d.path_note = dequant_path_note;
    t.push_back(d);
  }
  {  // Native FP8 tensor-core GEMM (cuBLASLt), block scales through qrt's own kernel.
    CudaBackendDeclaration d;
    d.name = "cuda_fp8";
    d.summary = "e4m3 weights on FP8 tensor cores (cuBLASLt; per-tensor/channel/128x128 block scales), sm_89+";
    auto& c = d.capability;
    c.device = DeviceKind::Cuda;
    c.encodings = {WeightEncoding::Fp8E4M3};
    c.fp8_block_scales = true;
    c.min_compute_capability = 89;
    c.k_multiple = 16;
    c.n_multiple = 16;
    c.activation_dtypes = {DType::F16, DType::BF16};
    d.path_note = fp8_path_note;
    t.push_back(d);
  }
  {  // Marlin-class tensor-core int4/int8 GEMM.
    CudaBackendDeclaration d;
    d.name = "cuda_marlin";
    d.summary = "tensor-core int4/int8 x fp16/bf16 GEMM (Marlin-class, mma.sync), sm_80+";
    auto& c = d.capability;
    c.device = DeviceKind::Cuda;
    c.encodings = {WeightEncoding::IntAffine};
    c.bits = {4, 8};
    c.group_sizes = {-1, 32, 64, 128};
    c.act_order = true;
    c.symmetric = true;
    c.integer_zero = true;
    c.float_zero = true;  // 4-bit only (int4_pack_rejection)
    c.fp8_block_scales = false;
    c.min_compute_capability = 80;
    c.k_multiple = 64;
    c.n_multiple = 64;
    c.activation_dtypes = {DType::F16, DType::BF16};
    // Measured on H100 (qrt bench --device cuda, Llama-2-7B shapes, 2026-11-28): at M = 128 it ties
    // dequant + cuBLAS (36 vs ~37 us on 4096x4096), at 256 it is 1.6x slower and at 4096 takes
    // 5x fp16 cuBLAS, so the plan hands M > 128 to cuda_dequant (next in the auto list).
    c.max_m = 128;
    d.path_note = int4_path_note;
    t.push_back(d);
  }
  {  // Small-batch GEMV (ExLlama-class).
    CudaBackendDeclaration d;
    d.name = "cuda_gemv";
    d.summary = "small-batch int4/int8 GEMV for M <= 16 (ExLlama-class, 16-byte loads), sm_80+";
    auto& c = d.capability;
    c.device = DeviceKind::Cuda;
    c.encodings = {WeightEncoding::IntAffine};
    c.bits = {4, 8};
    c.group_sizes = {-1, 32, 64, 128};
    c.act_order = true;
    c.symmetric = true;
    c.integer_zero = true;
    c.float_zero = true;  // 4-bit only (int4_pack_rejection)
    c.fp8_block_scales = false;
    c.min_compute_capability = 80;
    c.k_multiple = 64;
    c.n_multiple = 16;
    c.activation_dtypes = {DType::F16, DType::BF16};
    // Two or four token tiles from 9 rows (gemv_kernels.cu). Measured against the tensor-core
    // kernels on four Llama-2-7B linears (H100): at 16 rows it wins three of the four shapes and
    // the sum; at 32 it loses three (docs/PERFORMANCE.md, "The GEMV up to 32 rows").
    c.max_m = 16;
    d.path_note = int4_path_note;
    t.push_back(d);
  }
  {  // HIGGS rotated codebooks: activations rotated, grid lookups for small M, fp16 V + cuBLAS above.
    CudaBackendDeclaration d;
    d.name = "cuda_higgs";
    d.summary = "HIGGS rotated-codebook weights: Hadamard-rotated activations, grid-lookup GEMV for small M, "
                "fp16 V + cuBLAS above";
    auto& c = d.capability;
    c.device = DeviceKind::Cuda;
    c.encodings = {WeightEncoding::RotatedCodebook};
    c.bits = {};  // any grid of at most 256 vectors (one byte per code)
    c.group_sizes = {};
    c.act_order = false;
    c.symmetric = true;
    c.integer_zero = c.float_zero = c.fp8_block_scales = false;
    c.min_compute_capability = 70;  // plain CUDA, built with the portable kernels
    c.k_multiple = 1;
    c.n_multiple = 1;
    c.activation_dtypes = {DType::F16, DType::BF16};
    d.layer_obstacle = higgs_layer_obstacle;
    t.push_back(d);
  }
  {  // bitsandbytes LLM.int8: int8 activations x int8 weights on tensor cores (cuBLASLt), outliers in fp32.
    CudaBackendDeclaration d;
    d.name = "cuda_int8";
    d.summary = "int8 x int8 tensor-core GEMM (cuBLASLt) with LLM.int8's outlier columns in fp32, per-row int8 "
                "weights, sm_80+";
    auto& c = d.capability;
    c.device = DeviceKind::Cuda;
    c.encodings = {WeightEncoding::IntAffine};
    c.bits = {8};
    c.group_sizes = {-1};   // one scale per output row: it multiplies the int32 result
    c.act_order = false;
    c.symmetric = true;
    c.integer_zero = false;  // a zero point would need the activations' row sums
    c.float_zero = false;
    c.fp8_block_scales = false;
    c.min_compute_capability = 80;
    // cuBLASLt's int8 GEMM wants K and N multiples of 4 (16 for aligned rows); prepare() pads both
    // to 16 with zero rows and columns, so no shape is refused.
    c.k_multiple = 1;
    c.n_multiple = 1;
    c.activation_dtypes = {DType::F16, DType::BF16};
    d.path_note = int8_note;
    t.push_back(d);
  }
  return t;
}
}  // namespace

const std::vector<CudaBackendDeclaration>& cuda_backend_declarations() {
  static const std::vector<CudaBackendDeclaration> table = build_table();
  return table;
}

const CudaBackendDeclaration& cuda_backend_declaration(const std::string& name) {
  for (const auto& d : cuda_backend_declarations())
    if (d.name == name) return d;
  throw internal_error("no CUDA backend declaration named '" + name + "'");
}

}  // namespace qrt
