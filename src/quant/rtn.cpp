// Round-to-nearest quantizers (see rtn.h for the formulas and where they come from).
#include "quant/rtn.h"

#include <algorithm>
#include <cmath>

#include "qrt/dtype.h"
#include "qrt/error.h"

namespace qrt::quant {

QuantizedWeight rtn_quantize(const std::string& name, const float* w, int64_t n, int64_t k, int bits,
                             int group_size, bool sym, RtnStyle style) {
  if (bits < 2 || bits > 8) throw invalid_input(name + ": bits " + std::to_string(bits) + " outside 2..8");
  if (group_size == 0 || group_size < -1)
    throw invalid_input(name + ": group_size " + std::to_string(group_size) + " must be -1 or positive");
  if (n <= 0 || k <= 0) throw invalid_input(name + ": empty weight");
  QuantizedWeight q;
  q.spec.name = name;
  q.spec.in_features = k;
  q.spec.out_features = n;
  q.spec.bits = bits;
  q.spec.group_size = group_size;
  q.spec.zero_kind = sym ? ZeroKind::Symmetric : ZeroKind::Integer;
  q.spec.source_format = "rtn";
  const int64_t gs = q.spec.effective_group_size();
  const int64_t groups = q.spec.num_groups();
  const float maxq = static_cast<float>((1 << bits) - 1);
  q.codes.resize(static_cast<size_t>(n * k));
  q.scales.resize(static_cast<size_t>(n * groups));
  if (!sym) q.zeros.resize(static_cast<size_t>(n * groups));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * gs, c1 = std::min(k, c0 + gs);
      float lo = INFINITY, hi = -INFINITY;
      for (int64_t c = c0; c < c1; ++c) {
        const float v = w[r * k + c];
        if (!std::isfinite(v))
          throw invalid_input(name + ": weight [" + std::to_string(r) + ", " + std::to_string(c) + "] is not finite");
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      float scale, zero;
      if (sym) {
        const float amax = std::max(std::fabs(lo), std::fabs(hi));
        scale = amax == 0.0f ? 1.0f : 2.0f * amax / maxq;
        zero = static_cast<float>(1 << (bits - 1));
      } else if (style == RtnStyle::Gptq) {
        lo = std::min(lo, 0.0f);
        hi = std::max(hi, 0.0f);
        if (lo == 0.0f && hi == 0.0f) { lo = -1.0f; hi = 1.0f; }
        scale = (hi - lo) / maxq;
        zero = std::nearbyint(-lo / scale);
      } else {
        scale = std::max(hi - lo, 1e-5f) / maxq;
        zero = std::clamp(-std::nearbyint(lo / scale), 0.0f, maxq);
      }
      q.scales[r * groups + g] = scale;
      if (!sym) q.zeros[r * groups + g] = zero;
      for (int64_t c = c0; c < c1; ++c) {
        const float code = std::clamp(std::nearbyint(w[r * k + c] / scale) + zero, 0.0f, maxq);
        q.codes[r * k + c] = static_cast<uint8_t>(code);
      }
    }
  }
  return q;
}

QuantizedWeight fp8_quantize(const std::string& name, const float* w, int64_t n, int64_t k, int block_n, int block_k) {
  if (block_n <= 0 || block_k <= 0) throw invalid_input(name + ": fp8 block sizes must be positive");
  if (n <= 0 || k <= 0) throw invalid_input(name + ": empty weight");
  QuantizedWeight q;
  q.spec.name = name;
  q.spec.in_features = k;
  q.spec.out_features = n;
  q.spec.encoding = WeightEncoding::Fp8E4M3;
  q.spec.bits = 8;
  q.spec.group_size = -1;
  q.spec.scale_block_n = static_cast<int>(std::min<int64_t>(block_n, n));
  q.spec.scale_block_k = static_cast<int>(std::min<int64_t>(block_k, k));
  q.spec.source_format = "fp8";
  const int64_t bn = q.spec.scale_block_n, bk = q.spec.scale_block_k;
  const int64_t rows = (n + bn - 1) / bn, cols = (k + bk - 1) / bk;
  q.scales.resize(static_cast<size_t>(rows * cols));
  q.codes.resize(static_cast<size_t>(n * k));
  for (int64_t br = 0; br < rows; ++br)
    for (int64_t bc = 0; bc < cols; ++bc) {
      float amax = 0.0f;
      for (int64_t r = br * bn; r < std::min(n, (br + 1) * bn); ++r)
        for (int64_t c = bc * bk; c < std::min(k, (bc + 1) * bk); ++c) {
          const float v = w[r * k + c];
          if (!std::isfinite(v))
            throw invalid_input(name + ": weight [" + std::to_string(r) + ", " + std::to_string(c) + "] is not finite");
          amax = std::max(amax, std::fabs(v));
        }
      const float scale = amax == 0.0f ? 1.0f : amax / 448.0f;
      q.scales[br * cols + bc] = scale;
      for (int64_t r = br * bn; r < std::min(n, (br + 1) * bn); ++r)
        for (int64_t c = bc * bk; c < std::min(k, (bc + 1) * bk); ++c)
          q.codes[r * k + c] = f32_to_fp8_e4m3(w[r * k + c] / scale);
    }
  return q;
}

}  // namespace qrt::quant
