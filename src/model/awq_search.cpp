// AWQ scale search (see awq_search.h).
#include "model/awq_search.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "model/ops.h"
#include "qrt/error.h"
#include "qrt/quantized_weight.h"
#include "quant/rtn.h"

namespace qrt {

AwqScales awq_search_scales(const std::vector<AwqLinearView>& linears, int64_t K, const std::vector<float>& hessian,
                            const std::vector<double>& mean_abs, int bits, int group_size, int grid,
                            ThreadPool& pool) {
  if (K <= 0 || static_cast<int64_t>(hessian.size()) != K * K || static_cast<int64_t>(mean_abs.size()) != K)
    throw invalid_input(fmt::format("AWQ search: K {} with a Hessian of {} and {} channel means", K, hessian.size(),
                                    mean_abs.size()));
  if (grid < 1) throw invalid_input(fmt::format("AWQ search: grid {} must be >= 1", grid));
  int64_t max_n = 0;
  for (const AwqLinearView& l : linears) {
    if (!l.w || l.out <= 0) throw invalid_input("AWQ search: an empty linear");
    max_n = std::max(max_n, l.out);
  }
  std::vector<float> ws(static_cast<size_t>(max_n * K)), diff(ws.size()), dh(ws.size());
  std::vector<float> s(static_cast<size_t>(K));

  // Output error of the group for column scales s.
  auto error_for = [&](const std::vector<float>& sc) {
    double err = 0;
    for (const AwqLinearView& l : linears) {
      const int64_t N = l.out;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < K; ++c) ws[n * K + c] = l.w[n * K + c] * sc[c];
      const QuantizedWeight q = quant::rtn_quantize("awq search", ws.data(), N, K, bits, group_size, false,
                                                    quant::RtnStyle::Awq);
      const std::vector<float> d = dequantize_reference(q);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < K; ++c) diff[n * K + c] = l.w[n * K + c] - d[n * K + c] / sc[c];
      ops::dense_matmul(diff.data(), N, K, hessian.data(), K, nullptr, dh.data(), K, &pool);
      double e = 0;
      for (int64_t i = 0; i < N * K; ++i) e += static_cast<double>(diff[i]) * dh[i];
      err += e;
    }
    return err;
  };

  AwqScales best;
  best.scales.assign(static_cast<size_t>(K), 1.0f);
  for (int i = 0; i < grid; ++i) {
    const double alpha = static_cast<double>(i) / grid;
    double lo = INFINITY, hi = 0;
    for (int64_t c = 0; c < K; ++c) {
      s[c] = static_cast<float>(std::pow(std::max(mean_abs[c], 1e-4), alpha));
      lo = std::min(lo, static_cast<double>(s[c]));
      hi = std::max(hi, static_cast<double>(s[c]));
    }
    const double norm = std::sqrt(lo * hi);
    for (float& v : s) v = static_cast<float>(v / norm);
    const double e = error_for(s);
    if (i == 0) best.rtn_error = e;
    if (i == 0 || e < best.error) {
      best.error = e;
      best.alpha = static_cast<float>(alpha);
      best.scales = s;
    }
  }
  return best;
}

}  // namespace qrt
