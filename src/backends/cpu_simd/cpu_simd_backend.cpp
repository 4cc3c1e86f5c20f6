// cpu_simd: the x86 SIMD CPU backend (AVX2 / AVX-512 VNNI). First step: a plain scalar forward on
// dequantized weights so the registry links; the packed SIMD kernels replace it.
#include <cstring>

#include "backends/backend_factories.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

class CpuSimdPrepared final : public PreparedLinear {
 public:
  explicit CpuSimdPrepared(const QuantizedWeight& w)
      : n_(w.N()), k_(w.K()), weights_(dequantize_reference(w)), bias_(w.bias) {}

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx) override {
    const float* xs = static_cast<const float*>(x.data);
    float* ys = static_cast<float*>(y.data);
    for (int64_t m = 0; m < x.rows; ++m)
      for (int64_t n = 0; n < n_; ++n) {
        const float* wr = weights_.data() + n * k_;
        const float* xr = xs + m * k_;
        float acc = 0;
        for (int64_t k = 0; k < k_; ++k) acc += wr[k] * xr[k];
        ys[m * n_ + n] = acc + (bias_.empty() ? 0.f : bias_[n]);
      }
  }
  int64_t weight_bytes() const override { return static_cast<int64_t>(weights_.size() * sizeof(float)); }

 private:
  int64_t n_, k_;
  std::vector<float> weights_;
  std::vector<float> bias_;
};

class CpuSimdBackend final : public Backend {
 public:
  CpuSimdBackend() {
    cap_.device = DeviceKind::Cpu;
    cap_.encodings = {WeightEncoding::IntAffine, WeightEncoding::Fp8E4M3};
    cap_.activation_dtypes = {DType::F32};
  }
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return summary_; }
  const BackendCapability& capability() const override { return cap_; }
  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams&,
                                          const DeviceInfo&) const override {
    weight.validate();
    return std::make_unique<CpuSimdPrepared>(weight);
  }

 private:
  std::string name_ = "cpu_simd";
  std::string summary_ = "x86 SIMD int4/int8/fp8 kernels (AVX2, AVX-512 VNNI), repacked weights";
  BackendCapability cap_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_simd_backend() { return std::make_unique<CpuSimdBackend>(); }

}  // namespace qrt
