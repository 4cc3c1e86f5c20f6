// Standalone correctness check of qrt's int4/int8 CUDA kernels (cuda_marlin's qmm, cuda_gemv),
// for a GPU machine without the project's -dev libraries. Build (one line, no CMake):
//   nvcc -std=c++20 -O2 -arch=sm_90 -Iinclude -Isrc --expt-relaxed-constexpr \
//     tools/cuda_kernel_selftest.cu src/backends/cuda/marlin/marlin_kernels.cu \
//     src/backends/cuda/gemv/gemv_kernels.cu src/backends/cuda/common/int4_int8_launch.cu \
//     src/backends/cuda/common/int4_int8_pack.cpp \
//     src/core/dtype.cpp src/core/quantized_weight.cpp src/core/error.cpp -o cuda_kernel_selftest
// Every case: fresh random weights/activations, CPU reference in double, output poisoned (NaN)
// before the call, relative error beyond the output rounding (||y - ref|| - ||round(ref) - ref||)
// / ||ref|| < 1e-3.
// Exit code 0 only when every case passes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/common/int4_int8_kernels.h"
#include "backends/cuda/common/int4_int8_pack.h"
#include "qrt/dtype.h"
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

namespace {

struct Case {
  int64_t m, k, n;
  int bits, group;  // group -1 = per-channel
  bool asym, act, bf16;
  int kind;         // 0 = qmm, 1 = gemv
  int mt, nt, wt, split;
  bool fz = false;  // float zero points (GGUF Q4_1 / Q4_K: W = s*q + b), 4-bit
};

QuantizedWeight random_weight(const Case& c, std::mt19937& rng) {
  QuantizedWeight w;
  w.spec.name = "selftest";
  w.spec.in_features = c.k;
  w.spec.out_features = c.n;
  w.spec.bits = c.bits;
  w.spec.group_size = c.group;
  w.spec.zero_kind = c.fz ? ZeroKind::Float : c.asym ? ZeroKind::Integer : ZeroKind::Symmetric;
  w.spec.act_order = c.act;
  const int64_t G = w.spec.num_groups();
  std::uniform_int_distribution<int> code(0, (1 << c.bits) - 1);
  std::uniform_real_distribution<float> sc(0.002f, 0.02f);
  w.codes.resize(c.n * c.k);
  for (auto& v : w.codes) v = static_cast<uint8_t>(code(rng));
  w.scales.resize(c.n * G);
  for (auto& v : w.scales) v = sc(rng);
  if (c.asym) {
    w.zeros.resize(c.n * G);
    for (auto& v : w.zeros) v = static_cast<float>(code(rng));
  }
  if (c.fz) {  // fp16 numbers, as GGUF stores d and m
    std::uniform_real_distribution<float> mins(-0.2f, 0.05f);
    w.zeros.resize(c.n * G);
    for (auto& v : w.scales) v = fp16_to_f32(f32_to_fp16(v));
    for (auto& v : w.zeros) v = fp16_to_f32(f32_to_fp16(mins(rng)));
  }
  if (c.act) {
    std::vector<int32_t> p(c.k);
    for (int64_t i = 0; i < c.k; ++i) p[i] = static_cast<int32_t>(i);
    std::shuffle(p.begin(), p.end(), rng);
    w.g_idx.resize(c.k);
    for (int64_t i = 0; i < c.k; ++i) w.g_idx[p[i]] = static_cast<int32_t>(i / c.group);
  }
  if (rng() % 2) {
    w.bias.resize(c.n);
    std::uniform_real_distribution<float> b(-1.f, 1.f);
    for (auto& v : w.bias) v = b(rng);
  }
  w.spec.has_bias = !w.bias.empty();
  return w;
}

template <typename T>
T* upload(const std::vector<T>& v) {
  T* d = nullptr;
  if (v.empty()) return nullptr;
  CK(cudaMalloc(&d, v.size() * sizeof(T)));
  CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

float to_f(uint16_t h, bool bf16) { return bf16 ? bf16_to_f32(h) : fp16_to_f32(h); }
uint16_t from_f(float f, bool bf16) { return bf16 ? f32_to_bf16(f) : f32_to_fp16(f); }

int g_sms = 0;
Int4Workspace g_ws;

double run_case(const Case& c, std::mt19937& rng, std::string* what) {
  QuantizedWeight w = random_weight(c, rng);
  Int4PackedHost p = pack_int4_host(w);
  std::vector<float> deq = dequantize_reference(w);
  std::uniform_real_distribution<float> xd(-1.f, 1.f);
  std::vector<uint16_t> x(c.m * c.k);
  for (auto& v : x) v = from_f(xd(rng), c.bf16);
  // Reference in double on the dtype-rounded activations.
  std::vector<double> ref(c.m * c.n);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double s = 0;
      for (int64_t kk = 0; kk < c.k; ++kk) s += static_cast<double>(to_f(x[i * c.k + kk], c.bf16)) * deq[j * c.k + kk];
      if (!w.bias.empty()) s += w.bias[j];
      ref[i * c.n + j] = s;
    }
  Int4DeviceView v;
  void* dw = upload(p.words);
  v.words = dw;
  v.scales = reinterpret_cast<const uint32_t*>(upload(p.scales));
  v.zeros = p.has_zero ? reinterpret_cast<const uint16_t*>(upload(p.zeros)) : nullptr;
  v.offsets = p.float_zero ? reinterpret_cast<const uint32_t*>(upload(p.offsets)) : nullptr;
  v.offset_mul = p.offset_mul;
  v.bias = upload(p.bias);
  v.perm = upload(p.perm);
  v.n = p.n;
  v.k = p.k;
  v.bits = p.bits;
  v.group_size = p.group_size;
  v.scale_mul = p.scale_mul;
  uint16_t* dx = upload(x);
  uint16_t* dxp = nullptr;
  uint16_t* dy = nullptr;
  CK(cudaMalloc(&dy, c.m * c.n * 2));
  CK(cudaMemset(dy, 0xFF, c.m * c.n * 2));  // NaN poison
  const void* xin = dx;
  if (v.perm) {
    CK(cudaMalloc(&dxp, c.m * c.k * 2));
    CK(launch_permute_cols(dx, dxp, v.perm, c.m, c.k, 0));
    xin = dxp;
  }
  cudaError_t e;
  if (c.kind == 0) {
    QmmConfig qc{c.mt, c.nt, c.split};
    e = launch_qmm(v, xin, dy, c.m, c.bf16, qc, g_ws, g_sms, 0);
  } else {
    GemvConfig gc{c.wt, c.split};
    e = launch_int4_gemv(v, xin, dy, c.m, c.bf16, gc, g_ws, g_sms, 0);
  }
  CK(e);
  CK(cudaDeviceSynchronize());
  std::vector<uint16_t> y(c.m * c.n);
  CK(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost));
  // Error beyond the rounding of the output to its dtype (bf16 rounding alone is ~1.5e-3):
  // ||y - ref|| - ||round(ref) - ref||, relative to ||ref||.
  double num = 0, den = 0, rnd = 0;
  bool nan = false;
  for (size_t i = 0; i < y.size(); ++i) {
    const double a = to_f(y[i], c.bf16);
    if (!std::isfinite(a)) nan = true;
    const double r = to_f(from_f(static_cast<float>(ref[i]), c.bf16), c.bf16);
    num += (a - ref[i]) * (a - ref[i]);
    rnd += (r - ref[i]) * (r - ref[i]);
    den += ref[i] * ref[i];
  }
  num = std::pow(std::max(0.0, std::sqrt(num) - std::sqrt(rnd)), 2);
  for (void* ptr : {dw, (void*)v.scales, (void*)v.zeros, (void*)v.offsets, (void*)v.bias, (void*)v.perm, (void*)dx,
                    (void*)dxp, (void*)dy})
    if (ptr) CK(cudaFree(ptr));
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s m=%ld k=%ld n=%ld w%d g%d %s%s %s cfg=(%d,%d,%d) split=%d",
                c.kind == 0 ? "qmm " : "gemv", (long)c.m, (long)c.k, (long)c.n, c.bits, c.group,
                c.fz ? "float-zero" : c.asym ? "asym" : "sym", c.act ? " act" : "", c.bf16 ? "bf16" : "fp16", c.mt, c.nt, c.wt, c.split);
  *what = buf;
  return nan ? 1e30 : std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace

int main(int argc, char** argv) {
  int dev = 0;
  if (cudaGetDeviceCount(&dev) != cudaSuccess || dev == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, g_sms);
  CK(qmm_init_kernels());
  g_ws.partial_floats = int4_max_partial_tiles(g_sms) * int4_max_tile_floats();
  g_ws.counter_count = int4_counter_count(g_sms);
  CK(cudaMalloc(&g_ws.partials, g_ws.partial_floats * 4));
  CK(cudaMalloc(&g_ws.counters, g_ws.counter_count * 4));
  CK(cudaMemset(g_ws.counters, 0, g_ws.counter_count * 4));
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";

  std::mt19937 rng(12345);
  std::vector<Case> cases;
  const int64_t ms[] = {1, 2, 3, 8, 16, 17, 64, 129, 1024};
  const int64_t kn[][2] = {{64, 16}, {128, 64}, {192, 80}, {640, 208}, {4096, 1024}};
  const int groups[] = {-1, 32, 64, 128};
  int idx = 0;
  for (auto& s : kn)
    for (int bits : {4, 8})
      for (int g : groups)
        for (int asym = 0; asym < 2; ++asym)
          for (int act = 0; act < 2; ++act)
            for (int bf = 0; bf < 2; ++bf) {
              if (g > 0 && s[0] % g) continue;
              if (act && (g < 0 || g >= s[0])) continue;
              ++idx;
              if (quick && idx % 5) continue;
              // Rotate M and configs over the cases so every combination is exercised somewhere.
              const int64_t m = ms[idx % 9];
              if (m * s[0] * s[1] > (int64_t)1 << 27 && m > 64) continue;
              const int cfgs[5][2] = {{1, 2}, {2, 2}, {4, 2}, {4, 1}, {2, 1}};
              Case c{m, s[0], s[1], bits, g, asym != 0, act != 0, bf != 0, 0, cfgs[idx % 5][0], cfgs[idx % 5][1], 4, 0};
              if (idx % 3 == 0) c.split = 3;
              cases.push_back(c);
              if (m <= 8) {
                Case gc = c;
                gc.kind = 1;
                gc.wt = (idx % 2) ? 2 : 4;
                gc.split = idx % 3 == 1 ? 2 : 0;
                cases.push_back(gc);
              }
            }
  // Float zero points (4-bit), every group, act-order on/off, both dtypes, rotated over M and tiles.
  for (auto& s : kn)
    for (int g : groups)
      for (int act = 0; act < 2; ++act)
        for (int bf = 0; bf < 2; ++bf) {
          if (g > 0 && s[0] % g) continue;
          if (act && (g < 0 || g >= s[0])) continue;
          ++idx;
          if (quick && idx % 3) continue;
          const int64_t m = ms[idx % 9];
          if (m * s[0] * s[1] > (int64_t)1 << 27 && m > 64) continue;
          const int cfgs[5][2] = {{1, 2}, {2, 2}, {4, 2}, {4, 1}, {2, 1}};
          Case c{m, s[0], s[1], 4, g, false, act != 0, bf != 0, 0, cfgs[idx % 5][0], cfgs[idx % 5][1], 4, 0, true};
          if (idx % 3 == 0) c.split = 3;
          cases.push_back(c);
          Case gc = c;
          gc.kind = 1;
          gc.m = m <= 8 ? m : ms[idx % 4];
          gc.wt = (idx % 2) ? 2 : 4;
          gc.split = idx % 3 == 1 ? 2 : 0;
          cases.push_back(gc);
        }
  // Every M with the default-ish configs on one mid shape.
  for (int64_t m : ms)
    for (int bf = 0; bf < 2; ++bf) {
      const int64_t kbig = m > 64 ? 1024 : 4096;
      cases.push_back(Case{m, kbig, 1024, 4, 128, false, false, bf != 0, 0, m <= 8 ? 1 : m <= 16 ? 2 : 4, 2, 4, 0});
      cases.push_back(Case{m, 640, 208, 4, 64, true, true, bf != 0, 0, m <= 16 ? 2 : 4, 1, 4, 0});
      if (m <= 8) cases.push_back(Case{m, 4096, 1024, 4, 128, true, false, bf != 0, 1, 0, 0, 4, 0});
      // GGUF Q4_1 on the default model's widths (SmolLM2: 576, 1536).
      cases.push_back(Case{m, 1536, 576, 4, 32, false, false, bf != 0, 0, m <= 8 ? 1 : m <= 16 ? 2 : 4, 2, 4, 0, true});
      if (m <= 8) cases.push_back(Case{m, 576, 1536, 4, 32, false, false, bf != 0, 1, 0, 0, 2, 0, true});
    }
  int fails = 0;
  double worst = 0;
  for (const Case& c : cases) {
    std::string what;
    double err = 1e30;
    try {
      err = run_case(c, rng, &what);
    } catch (const std::exception& ex) {
      what = std::string("exception: ") + ex.what();
    }
    worst = std::max(worst, err);
    const bool ok = err < 1e-3;
    if (!ok) ++fails;
    if (!ok || !quick) std::printf("%s %-90s rel_err=%.3g\n", ok ? "ok  " : "FAIL", what.c_str(), err);
    std::fflush(stdout);
  }
  std::printf("selftest: %zu cases, %d failed, worst rel err %.3g\n", cases.size(), fails, worst);
  return fails ? 1 : 0;
}
