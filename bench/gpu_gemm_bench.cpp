// GPU GEMM benchmark for scripts/gpu-check.sh: cuda_dequant (int4 g128) and cuda_fp8 (per-tensor
// e4m3) on the four Llama-2-7B linear shapes of docs/PERFORMANCE.md, next to an in-process fp16 cuBLAS GEMM.
// Method as bench/peers/gemm_peers.py: CUDA-graph replay of `iters` calls cycling through enough
// prepared copies of the weight to exceed L2, median of 5 replays. Writes JSON (argv[1] or stdout).
// Env: MS=1,16,... (rows), ITERS (default 200), SHAPES=K:N,... to override the shapes.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "backends/backend_factories.h"
#include "gpu/runtime.h"
#include "gpu/cublas.h"
#include "qrt/backend.h"
#include "qrt/device.h"

using namespace qrt;

namespace {

std::vector<int64_t> env_list(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  std::string s = v ? v : def;
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

int copies_for(int64_t bytes) { return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(16, ((256ll << 20) + bytes - 1) / bytes))); }

// Median time of one call in microseconds (graph replay of iters calls).
double gtime(const std::vector<std::function<void(cudaStream_t)>>& fns, int iters, cudaStream_t st) {
  for (int i = 0; i < 3; ++i) fns[i % fns.size()](st);
  QRT_CUDA_CHECK(cudaStreamSynchronize(st));
  cudaGraph_t g;
  cudaGraphExec_t exec;
  QRT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  try {
    for (int i = 0; i < iters; ++i) fns[i % fns.size()](st);
  } catch (...) {
    g = nullptr;
    cudaStreamEndCapture(st, &g);  // leave the stream usable for the next candidate
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    throw;
  }
  QRT_CUDA_CHECK(cudaStreamEndCapture(st, &g));
  QRT_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
  QRT_CUDA_CHECK(cudaGraphLaunch(exec, st));
  QRT_CUDA_CHECK(cudaStreamSynchronize(st));
  cuda::EventTimer t;
  std::vector<double> ts;
  for (int r = 0; r < 5; ++r) {
    t.start(st);
    QRT_CUDA_CHECK(cudaGraphLaunch(exec, st));
    ts.push_back(t.stop_ms(st) * 1e3 / iters);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  std::sort(ts.begin(), ts.end());
  return ts[2];
}

QuantizedWeight random_int4(int64_t n, int64_t k, std::mt19937& rng) {
  QuantizedWeight w;
  w.spec.name = fmt::format("bench.int4.{}x{}", n, k);
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.bits = 4;
  w.spec.group_size = 128;
  w.spec.zero_kind = ZeroKind::Integer;
  w.codes.resize(static_cast<size_t>(n * k));
  uint32_t s = rng();
  for (auto& c : w.codes) {
    s = s * 1664525u + 1013904223u;
    c = static_cast<uint8_t>(s >> 28);
  }
  const int64_t g = k / 128;
  w.scales.assign(static_cast<size_t>(n * g), 0.01f);
  w.zeros.assign(static_cast<size_t>(n * g), 8.f);
  for (size_t i = 0; i < w.scales.size(); ++i) w.scales[i] = 0.005f + 0.01f * float((i * 2654435761u) % 1000) / 1000.f;
  return w;
}

QuantizedWeight random_fp8(int64_t n, int64_t k, std::mt19937& rng) {
  QuantizedWeight w;
  w.spec.name = fmt::format("bench.fp8.{}x{}", n, k);
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::Fp8E4M3;
  w.spec.bits = 8;
  w.spec.scale_block_n = static_cast<int>(n);
  w.spec.scale_block_k = static_cast<int>(k);
  w.codes.resize(static_cast<size_t>(n * k));
  uint32_t s = rng();
  for (auto& c : w.codes) {
    s = s * 1664525u + 1013904223u;
    uint8_t b = static_cast<uint8_t>(s >> 24);
    if ((b & 0x7F) == 0x7F) b &= 0xFE;  // no NaN codes
    c = b;
  }
  w.scales = {0.001f};
  return w;
}

struct Prepared {
  std::vector<std::unique_ptr<PreparedLinear>> copies;
};

double time_backend(const Backend& be, const QuantizedWeight& w, const KernelParams& p, const PrepareContext& dev,
                    int64_t m, void* x, void* y, int iters, cudaStream_t st, int copies,
                    std::vector<std::unique_ptr<PreparedLinear>>* cache) {
  if (cache->empty())
    for (int i = 0; i < copies; ++i) cache->push_back(be.prepare(w, p, dev));
  ActTensor ax{x, DType::BF16, m, w.K(), DeviceKind::Cuda};
  ActTensor ay{y, DType::BF16, m, w.N(), DeviceKind::Cuda};
  std::vector<std::function<void(cudaStream_t)>> fns;
  for (auto& lin : *cache)
    fns.push_back([&lin, ax, ay](cudaStream_t s) {
      ExecContext ec;
      ec.cuda_stream = s;
      lin->forward(ax, ay, ec);
    });
  return gtime(fns, iters, st);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto devs = probe_cuda_devices();
    if (devs.empty()) {
      std::fprintf(stderr, "gpu_gemm_bench: no CUDA device (%s)\n", cuda_unavailable_reason().c_str());
      return 2;
    }
    const DeviceInfo dev = devs[0];
    const std::vector<int64_t> ms = env_list("MS", "1,16,64,256,4096");
    const int iters = static_cast<int>(env_list("ITERS", "200")[0]);
    std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}};
    if (const char* s = std::getenv("SHAPES")) {
      shapes.clear();
      std::stringstream ss(s);
      std::string item;
      while (std::getline(ss, item, ',')) {
        auto c = item.find(':');
        shapes.emplace_back(std::stoll(item.substr(0, c)), std::stoll(item.substr(c + 1)));
      }
    }
    const int64_t max_m = *std::max_element(ms.begin(), ms.end());
    const PrepareContext prep(dev, max_m);  // workspaces for the largest M of the sweep
    cuda::DeviceContext& ctx = cuda::DeviceContext::get(dev.gpu.index);
    cuda::Stream stream;
    auto dequant = make_cuda_dequant_backend();
    auto fp8 = make_cuda_fp8_backend();
    nlohmann::json out;
    out["gpu"] = dev.gpu.name;
    out["device"] = dev.describe();
    out["iters"] = iters;
    out["rows"] = nlohmann::json::array();
    std::mt19937 rng(42);
    for (auto [K, N] : shapes) {
      // Activations (bf16 like the fp8 peer; fp16 for the fp16 baseline), filled with random values.
      const int64_t xn = max_m * K, yn = max_m * N;
      cuda::DeviceBuffer x(static_cast<size_t>(xn * 2), "bench x"), y(static_cast<size_t>(yn * 2), "bench y");
      cuda::DeviceBuffer x16(static_cast<size_t>(xn * 2), "bench x fp16");
      {
        std::vector<uint16_t> hx(static_cast<size_t>(xn)), hx16(static_cast<size_t>(xn));
        std::normal_distribution<float> nd(0.f, 1.f);
        for (size_t i = 0; i < hx.size(); ++i) {
          const float v = nd(rng);
          hx[i] = f32_to_bf16(v);
          hx16[i] = f32_to_fp16(v);
        }
        QRT_CUDA_CHECK(cudaMemcpy(x.get(), hx.data(), hx.size() * 2, cudaMemcpyHostToDevice));
        QRT_CUDA_CHECK(cudaMemcpy(x16.get(), hx16.data(), hx16.size() * 2, cudaMemcpyHostToDevice));
      }
      // fp16 cuBLAS baseline: copies of a random fp16 weight.
      const int fp16_copies = copies_for(N * K * 2);
      std::vector<cuda::DeviceBuffer> w16;
      {
        std::vector<uint16_t> hw(static_cast<size_t>(N * K));
        std::normal_distribution<float> nd(0.f, 0.02f);
        for (auto& v : hw) v = f32_to_fp16(nd(rng));
        for (int i = 0; i < fp16_copies; ++i) w16.push_back(cuda::DeviceBuffer::upload(hw, "bench fp16 weight"));
      }
      cublasHandle_t h = ctx.cublas();
      QuantizedWeight wi4 = random_int4(N, K, rng);
      QuantizedWeight wf8 = random_fp8(N, K, rng);
      std::vector<std::unique_ptr<PreparedLinear>> dq_cache, f8_cache;
      std::map<std::string, std::vector<std::unique_ptr<PreparedLinear>>> f8_variants;  // by params JSON
      for (int64_t M : ms) {
        nlohmann::json row = {{"K", K}, {"N", N}, {"M", M}};
        std::vector<std::function<void(cudaStream_t)>> fns;
        for (auto& wb : w16) {
          void* wp = wb.get();
          void* xp = x16.get();
          void* yp = y.get();
          fns.push_back([=](cudaStream_t s) { cuda::gemm_xwt(h, xp, wp, K, yp, N, M, N, K, DType::F16, s); });
        }
        row["qrt_fp16_cublas_us"] = gtime(fns, iters, stream.get());
        row["cuda_dequant_int4_us"] =
            time_backend(*dequant, wi4, {}, prep, M, x.get(), y.get(), iters, stream.get(), copies_for(N * K / 2), &dq_cache);
        const LayerSpec& fs = wf8.spec;
        row["cuda_fp8_us"] = time_backend(*fp8, wf8, fp8->default_params(fs, M, dev), prep, M, x.get(), y.get(), iters,
                                          stream.get(), copies_for(N * K), &f8_cache);
        // Tuning: what `qrt tune` would choose among the backend's candidates for this M.
        double best = row["cuda_fp8_us"].get<double>();
        std::string best_params = fp8->default_params(fs, M, dev).to_json();
        for (const KernelParams& p : fp8->tuning_space(fs, M, dev)) {
          auto& cache = f8_variants[p.to_json()];
          try {
            double t = time_backend(*fp8, wf8, p, prep, M, x.get(), y.get(), iters, stream.get(), copies_for(N * K), &cache);
            row["cuda_fp8_candidates"][p.to_json()] = t;
            if (t < best) best = t, best_params = p.to_json();
          } catch (const std::exception& e) {
            row["cuda_fp8_candidates"][p.to_json()] = std::string("error: ") + e.what();
          }
        }
        row["cuda_fp8_tuned_us"] = best;
        row["cuda_fp8_tuned_params"] = best_params;
        std::printf("%s\n", row.dump().c_str());
        std::fflush(stdout);
        out["rows"].push_back(row);
      }
      // Rewrite the file after every shape: a run cut short by its time limit still leaves rows.
      if (argc > 1) std::ofstream(argv[1]) << out.dump(1) << "\n";
    }
    const std::string text = out.dump(1);
    if (argc > 1) {
      std::ofstream f(argv[1]);
      f << text << "\n";
    } else {
      std::printf("%s\n", text.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_gemm_bench: %s\n", e.what());
    return 1;
  }
}
