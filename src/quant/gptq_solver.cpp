// GPTQ solver. Linear algebra in double; the error propagation runs on the float weight rows in
// place (row-major [N][K], so every update is a contiguous, vectorizable row segment).
//
// The inverse-Hessian factor GPTQ needs is the upper-triangular U with U^T U = H^-1. With J the
// reversal permutation and L' the lower Cholesky factor of J H J, U = J L'^-1 J: one Cholesky and
// one triangular inverse instead of Cholesky, inverse, and a second Cholesky.
#include "quant/gptq_solver.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <numeric>

#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt::quant {
namespace {

double dot(const double* a, const double* b, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) acc[j] += a[i + j] * b[i + j];
  double s = acc[0] + acc[1] + acc[2] + acc[3];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// In place: A (K x K, symmetric) -> its lower Cholesky factor (upper part zeroed). False if not PD.
bool cholesky_lower(std::vector<double>& A, int64_t K) {
  for (int64_t i = 0; i < K; ++i) {
    double* Li = A.data() + i * K;
    for (int64_t j = 0; j <= i; ++j) {
      const double* Lj = A.data() + j * K;
      const double s = Li[j] - dot(Li, Lj, j);
      if (i == j) {
        if (!(s > 0) || !std::isfinite(s)) return false;
        Li[i] = std::sqrt(s);
      } else {
        Li[j] = s / Lj[j];
      }
    }
    for (int64_t j = i + 1; j < K; ++j) Li[j] = 0;
  }
  return true;
}

// X = L^-1 for lower-triangular L, row by row: X[i] = (e_i - sum_k<i L[i][k] X[k]) / L[i][i].
std::vector<double> lower_inverse(const std::vector<double>& L, int64_t K) {
  std::vector<double> X(static_cast<size_t>(K * K), 0.0);
  for (int64_t i = 0; i < K; ++i) {
    double* Xi = X.data() + i * K;
    for (int64_t k = 0; k < i; ++k) {
      const double l = L[i * K + k];
      if (l == 0) continue;
      const double* Xk = X.data() + k * K;
      for (int64_t c = 0; c <= k; ++c) Xi[c] -= l * Xk[c];
    }
    Xi[i] += 1.0;
    const double inv = 1.0 / L[i * K + i];
    for (int64_t c = 0; c <= i; ++c) Xi[c] *= inv;
  }
  return X;
}

}  // namespace

QuantizedWeight gptq_quantize(const std::string& name, const float* Wsrc, int64_t N, int64_t K,
                              const std::vector<double>& hessian, const GptqSolverOptions& o, ThreadPool* pool) {
  if (N <= 0 || K <= 0) throw invalid_input(fmt::format("{}: GPTQ needs a non-empty weight", name));
  if (static_cast<int64_t>(hessian.size()) != K * K)
    throw invalid_input(fmt::format("{}: Hessian has {} entries, expected {} x {}", name, hessian.size(), K, K));
  if (o.bits < 2 || o.bits > 8) throw invalid_input(fmt::format("{}: GPTQ bits {} outside 2..8", name, o.bits));
  if (o.group_size == 0 || o.group_size < -1 || (o.group_size > 0 && K % o.group_size != 0))
    throw invalid_input(fmt::format("{}: group size {} must be -1 or divide in_features {}", name, o.group_size, K));
  if (!(o.damp_percent > 0 && o.damp_percent < 1))
    throw invalid_input(fmt::format("{}: damp_percent {} must be in (0, 1)", name, o.damp_percent));
  const int maxq = (1 << o.bits) - 1;
  const int64_t gs = o.group_size > 0 ? o.group_size : K;
  const int64_t G = K / gs;
  const int64_t bs = std::max(1, o.block_size);

  // Column order: act-order sorts by decreasing diag(H) (stable, so ties keep their order).
  std::vector<int64_t> perm(K);
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return hessian[a * K + a] > hessian[b * K + b]; });

  // Permuted weight and Hessian; dead inputs (never active) get H = 1 and W = 0.
  std::vector<float> W(static_cast<size_t>(N * K));
  std::vector<double> H(static_cast<size_t>(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) H[i * K + j] = hessian[perm[i] * K + perm[j]];
  std::vector<bool> dead(K, false);
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) {
    if (H[i * K + i] == 0) {
      dead[i] = true;
      H[i * K + i] = 1;
    }
    mean_diag += H[i * K + i];
  }
  mean_diag /= static_cast<double>(K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < K; ++c) W[n * K + c] = dead[c] ? 0.0f : Wsrc[n * K + perm[c]];
  const double damp = o.damp_percent * mean_diag;
  for (int64_t i = 0; i < K; ++i) H[i * K + i] += damp;

  // U = J chol(J H J)^-1 J (upper, U^T U = H^-1).
  std::vector<double> R(static_cast<size_t>(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) R[i * K + j] = H[(K - 1 - i) * K + (K - 1 - j)];
  if (!cholesky_lower(R, K))
    throw invalid_input(fmt::format("{}: the calibration Hessian is not positive definite even after damping {}; "
                                    "use more calibration text or a larger damp",
                                    name, o.damp_percent));
  const std::vector<double> Rinv = lower_inverse(R, K);
  std::vector<double> U(static_cast<size_t>(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) U[i * K + j] = Rinv[(K - 1 - i) * K + (K - 1 - j)];
  R.clear();
  std::vector<float> Uf(U.begin(), U.end());  // float copy for the row updates

  QuantizedWeight q;
  q.spec.name = name;
  q.spec.in_features = K;
  q.spec.out_features = N;
  q.spec.bits = o.bits;
  q.spec.group_size = o.group_size;
  q.spec.zero_kind = o.sym ? ZeroKind::Symmetric : ZeroKind::Integer;
  q.spec.act_order = o.act_order;
  q.spec.source_format = "gptq";
  q.codes.assign(static_cast<size_t>(N * K), 0);
  q.scales.assign(static_cast<size_t>(N * G), 0.0f);
  if (!o.sym) q.zeros.assign(static_cast<size_t>(N * G), 0.0f);

  // Rows are independent (each row's rounding error moves only along that row), so threads take
  // ranges of rows and run the whole column sweep on them.
  auto solve_rows = [&](int64_t n0, int64_t n1) {
    const int64_t rows = n1 - n0;
    std::vector<float> scale(rows), zero(rows);
    auto find_params = [&](int64_t c0, int64_t cols) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* w = W.data() + (n0 + r) * K + c0;
        float xmin = 0, xmax = 0;
        for (int64_t i = 0; i < cols; ++i) {
          xmin = std::min(xmin, w[i]);
          xmax = std::max(xmax, w[i]);
        }
        if (o.sym) {
          xmax = std::max(std::abs(xmin), xmax);
          if (xmin < 0) xmin = -xmax;
        }
        if (xmin == 0 && xmax == 0) {
          xmin = -1;
          xmax = 1;
        }
        scale[r] = (xmax - xmin) / static_cast<float>(maxq);
        zero[r] = o.sym ? static_cast<float>((maxq + 1) / 2) : std::nearbyint(-xmin / scale[r]);
      }
    };
    if (o.group_size <= 0) find_params(0, K);
    std::vector<float> err(static_cast<size_t>(rows * bs));  // [rows][bs] scaled errors of the block
    std::vector<float> urow(K);
    for (int64_t b0 = 0; b0 < K; b0 += bs) {
      const int64_t b1 = std::min(K, b0 + bs), count = b1 - b0;
      for (int64_t c = b0; c < b1; ++c) {
        if (o.group_size > 0 && c % gs == 0) find_params(c, gs);
        const int64_t g = c / gs;
        const double d = U[c * K + c];
        for (int64_t j = c; j < b1; ++j) urow[j] = static_cast<float>(U[c * K + j] / d);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t n = n0 + r;
          float* w = W.data() + n * K;
          const float code = std::clamp(std::nearbyint(w[c] / scale[r]) + zero[r], 0.0f, static_cast<float>(maxq));
          const float deq = scale[r] * (code - zero[r]);
          q.codes[n * K + perm[c]] = static_cast<uint8_t>(code);
          // (w - q) / d pushed onto the rest of the block: w[j] -= (w - q) / d * U[c][j].
          const float e = w[c] - deq;
          err[r * bs + (c - b0)] = e / static_cast<float>(d);
          for (int64_t j = c + 1; j < b1; ++j) w[j] -= e * urow[j];
          w[c] = deq;
        }
        if (o.group_size <= 0 ? c == 0 : c % gs == 0)
          for (int64_t r = 0; r < rows; ++r) {
            q.scales[(n0 + r) * G + g] = scale[r];
            if (!o.sym) q.zeros[(n0 + r) * G + g] = zero[r];
          }
      }
      // Lazy batch update of the columns after the block: W[:, b1:] -= Err @ U[b0:b1, b1:].
      if (b1 < K)
        for (int64_t r = 0; r < rows; ++r) {
          float* w = W.data() + (n0 + r) * K;
          for (int64_t i = 0; i < count; ++i) {
            const float e = err[r * bs + i];
            if (e == 0) continue;
            const float* u = Uf.data() + (b0 + i) * K;
            for (int64_t j = b1; j < K; ++j) w[j] -= e * u[j];
          }
        }
    }
  };
  if (pool)
    pool->parallel_for(N, [&](int, int64_t n0, int64_t n1) { solve_rows(n0, n1); });
  else
    solve_rows(0, N);
  if (o.act_order) {
    q.g_idx.resize(K);
    for (int64_t c = 0; c < K; ++c) q.g_idx[perm[c]] = static_cast<int32_t>(c / gs);
  }
  q.validate();
  return q;
}

}  // namespace qrt::quant
