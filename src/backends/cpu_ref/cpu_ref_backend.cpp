// cpu_ref: the CPU reference backend, the oracle every other backend is tested against.
// Clarity over speed: prepare() dequantizes the canonical weight once with the reference
// dequantizer into float rows W[N][K]; forward() is a float32-accumulated dot product per
// (row of x, row of W), split over output features across the thread pool. It runs every
// QuantizedWeight kind, because it only ever sees dequantize_reference's floats.
#include <cmath>

#include "backends/backend_factories.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

inline float load_act(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::F16: return fp16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

inline void store_act(void* base, DType t, int64_t i, float v) {
  switch (t) {
    case DType::F16: static_cast<uint16_t*>(base)[i] = f32_to_fp16(v); break;
    case DType::BF16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(v); break;
    default: static_cast<float*>(base)[i] = v; break;
  }
}

class CpuRefPrepared final : public PreparedLinear {
 public:
  explicit CpuRefPrepared(const QuantizedWeight& w)
      : n_(w.N()), k_(w.K()), rows_(dequantize_reference(w)), bias_(w.bias) {}

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx) override {
    const int64_t m_rows = x.rows;
    if (m_rows <= 0) return;
    auto work = [&](int, int64_t n_begin, int64_t n_end) {
      for (int64_t n = n_begin; n < n_end; ++n) {
        const float* w = rows_.data() + n * k_;
        const float b = bias_.empty() ? 0.0f : bias_[n];
        for (int64_t m = 0; m < m_rows; ++m) {
          float acc = 0.0f;
          if (x.dtype == DType::F32) {
            // Eight independent float32 partial sums: the compiler can keep them in one vector
            // register (a strict left-to-right sum cannot be vectorized), and the result does not
            // depend on threads or on M.
            const float* xr = static_cast<const float*>(x.data) + m * k_;
            float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t k = 0;
            for (; k + 8 <= k_; k += 8)
              for (int j = 0; j < 8; ++j) part[j] += xr[k + j] * w[k + j];
            for (; k < k_; ++k) acc += xr[k] * w[k];
            acc += ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
          } else {
            for (int64_t k = 0; k < k_; ++k) acc += load_act(x.data, x.dtype, m * k_ + k) * w[k];
          }
          store_act(y.data, y.dtype, m * n_ + n, acc + b);
        }
      }
    };
    if (ctx.pool && ctx.pool->size() > 1 && n_ * k_ * m_rows >= (1 << 16))
      ctx.pool->parallel_for(n_, work);
    else
      work(0, 0, n_);
  }

  int64_t weight_bytes() const override {
    return static_cast<int64_t>(rows_.size() * sizeof(float) + bias_.size() * sizeof(float));
  }

 private:
  int64_t n_, k_;
  std::vector<float> rows_;  // [N][K], dequantized once
  std::vector<float> bias_;
};

class CpuRefBackend final : public Backend {
 public:
  CpuRefBackend() {
    cap_.device = DeviceKind::Cpu;
    cap_.encodings = {WeightEncoding::IntAffine, WeightEncoding::Fp8E4M3, WeightEncoding::Codebook,
                      WeightEncoding::RotatedCodebook};
    // Everything the canonical weight can express: any bits, group, zero kind, act-order, FP8 blocks,
    // code books.
    cap_.activation_dtypes = {DType::F32, DType::F16, DType::BF16};
  }
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return summary_; }
  const BackendCapability& capability() const override { return cap_; }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    const DeviceInfo& device = context.device;
    if (device.kind != DeviceKind::Cpu)
      throw Error(ErrorKind::Unsupported, weight.spec.name + ": cpu_ref runs on the CPU, not " + device.id);
    const Verdict v = validate_params(weight.spec, params);
    if (!v.ok) throw invalid_input(weight.spec.name + ": cpu_ref: " + v.reason);
    weight.validate();
    return std::make_unique<CpuRefPrepared>(weight);
  }

 private:
  std::string name_ = "cpu_ref";
  std::string summary_ = "reference: dequantize once to float rows, float32 dot products (every weight kind)";
  BackendCapability cap_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_ref_backend() { return std::make_unique<CpuRefBackend>(); }

}  // namespace qrt
