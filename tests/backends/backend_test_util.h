// Shared helpers of the backends tests: layer specs of the selection matrix, random canonical
// weights, and fake backends that can be told to fail or to time in a chosen way.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "qrt/backend.h"
#include "qrt/dtype.h"
#include "qrt/error.h"
#include "qrt/gguf.h"
#include "qrt/quantized_weight.h"
#include "quant/formats/gguf_blocks.h"

namespace qrt::test {

inline LayerSpec int_layer(const std::string& name, int64_t k, int64_t n, int bits, int group, ZeroKind zero,
                           bool act_order = false) {
  LayerSpec s;
  s.name = name;
  s.in_features = k;
  s.out_features = n;
  s.encoding = WeightEncoding::IntAffine;
  s.bits = bits;
  s.group_size = group;
  s.zero_kind = zero;
  s.act_order = act_order;
  s.source_format = "gptq";
  return s;
}

inline LayerSpec fp8_layer(const std::string& name, int64_t k, int64_t n, int bn, int bk) {
  LayerSpec s;
  s.name = name;
  s.in_features = k;
  s.out_features = n;
  s.encoding = WeightEncoding::Fp8E4M3;
  s.bits = 8;
  s.scale_block_n = bn;
  s.scale_block_k = bk;
  s.source_format = "fp8";
  return s;
}

// The 16 levels of the 4-bit code books qrt reads: bitsandbytes NF4 and FP4 (the quant_map that
// bitsandbytes wrote into tests/data/fixtures/bnb_nf4 / bnb_fp4) and GGUF's IQ4 grid (integers, so
// cpu_simd's int8 kernels take it; NF4 and FP4 are not).
inline const std::vector<float>& nf4_levels() {
  static const std::vector<float> v = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                       -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                       0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                       0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                       0.7229568362236023f, 1.0f};
  return v;
}
inline const std::vector<float>& fp4_levels() {
  static const std::vector<float> v = {0.0f, 0.0052083334885537624f, 0.6666666865348816f, 1.0f,
                                       0.3333333432674408f, 0.5f, 0.1666666716337204f, 0.25f,
                                       -0.0f, -0.0052083334885537624f, -0.6666666865348816f, -1.0f,
                                       -0.3333333432674408f, -0.5f, -0.1666666716337204f, -0.25f};
  return v;
}
inline const std::vector<float>& iq4_levels() {
  static const std::vector<float> v = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  return v;
}

// A code-book layer (WeightEncoding::Codebook): 2^bits `levels`, groups of `group` along K.
inline LayerSpec codebook_layer(const std::string& name, int64_t k, int64_t n, const std::vector<float>& levels,
                                int group, const std::string& source_format, bool act_order = false) {
  LayerSpec s;
  s.name = name;
  s.in_features = k;
  s.out_features = n;
  s.encoding = WeightEncoding::Codebook;
  int bits = 0;
  while ((size_t{1} << bits) < levels.size()) ++bits;
  s.bits = bits;
  s.group_size = group;
  s.zero_kind = ZeroKind::Symmetric;
  s.act_order = act_order;
  s.codebook = levels;
  s.source_format = source_format;
  return s;
}

// A valid random canonical weight for `spec` (fresh data from `seed`).
inline QuantizedWeight random_weight(const LayerSpec& spec, uint32_t seed, bool with_bias = false) {
  std::mt19937 rng(seed);
  QuantizedWeight w;
  w.spec = spec;
  const int64_t n = spec.out_features, k = spec.in_features;
  w.codes.resize(static_cast<size_t>(n * k));
  if (spec.encoding == WeightEncoding::Fp8E4M3) {
    std::uniform_int_distribution<int> code(0, 255);
    for (auto& c : w.codes) {
      int v = code(rng);
      if ((v & 0x7F) == 0x7F) v &= 0xFE;  // no NaN codes
      c = static_cast<uint8_t>(v);
    }
    const int64_t rows = (n + spec.scale_block_n - 1) / spec.scale_block_n;
    const int64_t cols = (k + spec.scale_block_k - 1) / spec.scale_block_k;
    std::uniform_real_distribution<float> sc(0.001f, 0.01f);
    w.scales.resize(static_cast<size_t>(rows * cols));
    for (auto& s : w.scales) s = sc(rng);
  } else if (spec.encoding == WeightEncoding::RotatedCodebook) {
    // One code per vector of codebook_dim columns, positive group scales (HIGGS has no zero points).
    const int d = spec.codebook_dim;
    std::uniform_int_distribution<int> code(0, (1 << (spec.bits * d)) - 1);
    for (int64_t i = 0; i < n * k; i += d) {
      const auto c = static_cast<uint8_t>(code(rng));
      for (int j = 0; j < d; ++j) w.codes[static_cast<size_t>(i + j)] = c;
    }
    std::uniform_real_distribution<float> sc(0.005f, 0.02f);
    w.scales.resize(static_cast<size_t>(n * spec.num_groups()));
    for (auto& s : w.scales) s = sc(rng);
  } else {
    std::uniform_int_distribution<int> code(0, (1 << spec.bits) - 1);
    for (auto& c : w.codes) c = static_cast<uint8_t>(code(rng));
    const int64_t g = spec.num_groups();
    std::uniform_real_distribution<float> sc(0.005f, 0.02f);
    w.scales.resize(static_cast<size_t>(n * g));
    for (auto& s : w.scales) s = sc(rng);
    if (spec.zero_kind == ZeroKind::Integer) {
      std::uniform_int_distribution<int> z(0, (1 << spec.bits) - 1);
      w.zeros.resize(static_cast<size_t>(n * g));
      for (auto& v : w.zeros) v = static_cast<float>(z(rng));
    } else if (spec.zero_kind == ZeroKind::Float) {
      std::uniform_real_distribution<float> z(-0.1f, 0.0f);
      w.zeros.resize(static_cast<size_t>(n * g));
      for (auto& v : w.zeros) v = z(rng);
    }
    if (spec.act_order) {
      // GPTQ act-order: column k belongs to group perm[k] / group_size for a random permutation.
      std::vector<int32_t> perm(static_cast<size_t>(k));
      for (int64_t i = 0; i < k; ++i) perm[i] = static_cast<int32_t>(i);
      std::shuffle(perm.begin(), perm.end(), rng);
      w.g_idx.resize(static_cast<size_t>(k));
      const int64_t gs = spec.effective_group_size();
      for (int64_t i = 0; i < k; ++i) w.g_idx[i] = static_cast<int32_t>(perm[i] / gs);
    }
  }
  if (with_bias) {
    std::uniform_real_distribution<float> b(-0.5f, 0.5f);
    w.bias.resize(static_cast<size_t>(n));
    for (auto& v : w.bias) v = b(rng);
  }
  w.validate();
  return w;
}

// Random blocks of a GGUF block type for an N x K matrix (K a multiple of the block size): random
// codes and sub-scales, fp16 scales of the sizes real files hold (a few 1e-3, Q4_1 / Q4_K minimums
// below zero), so every block decodes to finite values. Q4_0, Q4_1, Q8_0, Q4_K and Q6_K.
inline std::vector<uint8_t> random_gguf_blocks(GgmlType t, int64_t k, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t bs = ggml_block_size(t), ts = ggml_type_size(t);
  if (bs <= 0 || k % bs != 0) throw invalid_input("random_gguf_blocks: K must be a multiple of the block size");
  std::vector<uint8_t> out(static_cast<size_t>(n * (k / bs) * ts));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  auto put_f16 = [](uint8_t* p, float v) {
    const uint16_t h = f32_to_fp16(v);
    p[0] = static_cast<uint8_t>(h & 0xFF);
    p[1] = static_cast<uint8_t>(h >> 8);
  };
  std::uniform_real_distribution<float> mag(0.5f, 2.0f), sign(-1.f, 1.f);
  for (uint8_t* b = out.data(); b < out.data() + out.size(); b += ts) {
    const float d = 0.004f * mag(rng) * (sign(rng) < 0 ? -1.f : 1.f);  // Q4_0 / Q8_0 d may be negative
    switch (t) {
      case GgmlType::Q4_0: put_f16(b, d); break;
      case GgmlType::Q8_0: put_f16(b, d / 16); break;
      case GgmlType::Q4_1:
        put_f16(b, std::fabs(d));
        put_f16(b + 2, -8 * std::fabs(d) * mag(rng));  // the minimum: about -8 d
        break;
      case GgmlType::Q4_K:
        put_f16(b, std::fabs(d) / 16);      // d: times 6-bit sub-scales
        put_f16(b + 2, std::fabs(d) / 8);   // dmin: times 6-bit sub-minimums
        break;
      case GgmlType::Q6_K: put_f16(b + 208, d / 64); break;
      default: throw invalid_input("random_gguf_blocks: type " + ggml_type_name(t) + " not generated");
    }
  }
  return out;
}
// The canonical weight of such random blocks, decoded by the GGUF reader's codec.
inline QuantizedWeight random_gguf_weight(GgmlType t, int64_t k, int64_t n, uint32_t seed,
                                          const std::string& name = "gguf.random") {
  const std::vector<uint8_t> blocks = random_gguf_blocks(t, k, n, seed);
  return quant::gguf_to_quantized_weight(t, blocks, k, n, name);
}

// y = x * W^T (+ bias) in double from the reference dequantizer: the oracle of the oracle.
inline std::vector<double> reference_forward(const QuantizedWeight& w, const std::vector<float>& deq,
                                             const std::vector<float>& x, int64_t m) {
  const int64_t n = w.N(), k = w.K();
  std::vector<double> y(static_cast<size_t>(m * n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double acc = w.bias.empty() ? 0.0 : w.bias[c];
      for (int64_t i = 0; i < k; ++i) acc += static_cast<double>(x[r * k + i]) * deq[c * k + i];
      y[r * n + c] = acc;
    }
  return y;
}
inline std::vector<double> reference_forward(const QuantizedWeight& w, const std::vector<float>& x, int64_t m) {
  return reference_forward(w, dequantize_reference(w), x, m);
}

// ||y - ref|| / ||ref||; NaN anywhere gives +inf.
inline double relative_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(y[i])) return INFINITY;
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

// A CPU backend for tests: runs everything like the reference, takes one parameter "tile"
// (16, 32 or 64; default 32), and can be told to fail in prepare.
class FakeBackend final : public Backend {
 public:
  FakeBackend(std::string name, bool fail_prepare, int64_t max_m = INT64_MAX,
              ErrorKind fail_kind = ErrorKind::OutOfMemory)
      : name_(std::move(name)), fail_(fail_prepare), fail_kind_(fail_kind) {
    cap_.device = DeviceKind::Cpu;
    cap_.encodings = {WeightEncoding::IntAffine};
    cap_.bits = {4, 8};
    cap_.activation_dtypes = {DType::F32};
    cap_.max_m = max_m;
  }
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return summary_; }
  const BackendCapability& capability() const override { return cap_; }
  Verdict validate_params(const LayerSpec&, const KernelParams& p) const override {
    for (const auto& [k, v] : p.values) {
      if (k != "tile") return Verdict::no("unknown parameter '" + k + "': " + name_ + " takes tile");
      const auto* i = std::get_if<int64_t>(&v);
      if (!i || (*i != 16 && *i != 32 && *i != 64))
        return Verdict::no("parameter 'tile' must be 16, 32 or 64");
    }
    return Verdict::yes();
  }
  KernelParams default_params(const LayerSpec&, int64_t, const DeviceInfo&) const override {
    KernelParams p;
    p.values["tile"] = int64_t{32};
    return p;
  }
  std::vector<KernelParams> tuning_space(const LayerSpec&, int64_t, const DeviceInfo&) const override {
    std::vector<KernelParams> out;
    for (int64_t t : {16, 32, 64}) {
      KernelParams p;
      p.values["tile"] = t;
      out.push_back(p);
    }
    return out;
  }
  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& w, const KernelParams& params,
                                          const PrepareContext&) const override {
    ++prepare_calls;
    if (fail_) throw Error(fail_kind_, w.spec.name + ": " + name_ + ": injected prepare failure");
    return std::make_unique<Prepared>(w, params.get_int("tile", 32), wrong_tile);
  }
  mutable int prepare_calls = 0;
  int64_t wrong_tile = 0;  // a tile value whose output is deliberately wrong (tuner must reject it)

 private:
  struct Prepared final : PreparedLinear {
    Prepared(const QuantizedWeight& w, int64_t tile, int64_t wrong)
        : n(w.N()), k(w.K()), deq(dequantize_reference(w)), bias(w.bias), broken(tile == wrong) {}
    void forward(const ActTensor& x, const ActTensor& y, const ExecContext&) override {
      const float* xs = static_cast<const float*>(x.data);
      float* ys = static_cast<float*>(y.data);
      for (int64_t r = 0; r < x.rows; ++r)
        for (int64_t c = 0; c < n; ++c) {
          float acc = bias.empty() ? 0.f : bias[c];
          for (int64_t i = 0; i < k; ++i) acc += xs[r * k + i] * deq[c * k + i];
          ys[r * n + c] = broken ? acc + 1.0f : acc;
        }
    }
    int64_t weight_bytes() const override { return static_cast<int64_t>(deq.size() * 4); }
    int64_t n, k;
    std::vector<float> deq, bias;
    bool broken;
  };
  std::string name_, summary_ = "test backend";
  bool fail_;
  ErrorKind fail_kind_;
  BackendCapability cap_;
};

}  // namespace qrt::test
