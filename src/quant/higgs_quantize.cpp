// HIGGS quantization (higgs_quantize.h has the steps). The grid search is exact for p = 1 (Lloyd-Max
// from the Gaussian density) and Lloyd's algorithm on fixed pseudo-random samples for p = 2; the
// per-weight work is the rotation (butterflies in double) and a nearest-point search over the grid.
#include "quant/higgs_quantize.h"

#include <atomic>
#include <cmath>
#include <limits>

#include "core/hadamard.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt::quant {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

// splitmix64: a small generator whose sequence is fixed by the seed on every platform.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }   // (0, 1)
};

// n standard Gaussian values (Box-Muller), n even.
std::vector<double> gaussian_samples(int64_t n, uint64_t seed) {
  SplitMix g{seed};
  std::vector<double> out(static_cast<size_t>(n));
  const double two_pi = 6.283185307179586476925286766559;
  for (int64_t i = 0; i + 1 < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(g.uniform())), a = two_pi * g.uniform();
    out[i] = r * std::cos(a);
    out[i + 1] = r * std::sin(a);
  }
  return out;
}

double normal_pdf(double x) { return std::exp(-0.5 * x * x) * 0.39894228040143267794; }
double normal_cdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752440); }

// Lloyd-Max levels of N(0, 1): centroids of the cells between midpoints, iterated to a fixed point
// (the Gaussian is log-concave, so there is one).
std::vector<double> lloyd_max_gaussian(int levels) {
  std::vector<double> c(static_cast<size_t>(levels));
  for (int i = 0; i < levels; ++i) c[i] = -2.0 + 4.0 * (i + 0.5) / levels;
  for (int it = 0; it < 5000; ++it) {
    double moved = 0;
    for (int i = 0; i < levels; ++i) {
      const double a = i == 0 ? -INFINITY : 0.5 * (c[i - 1] + c[i]);
      const double b = i + 1 == levels ? INFINITY : 0.5 * (c[i] + c[i + 1]);
      const double pa = std::isinf(a) ? 0.0 : normal_pdf(a), pb = std::isinf(b) ? 0.0 : normal_pdf(b);
      const double mass = (std::isinf(b) ? 1.0 : normal_cdf(b)) - (std::isinf(a) ? 0.0 : normal_cdf(a));
      const double next = (pa - pb) / mass;
      moved = std::max(moved, std::fabs(next - c[i]));
      c[i] = next;
    }
    if (moved < 1e-13) break;
  }
  return c;
}

float round_to(float v, DType dtype) {
  if (dtype == DType::F16) return fp16_to_f32(f32_to_fp16(v));
  if (dtype == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  return v;
}

// Index of the grid point nearest to x[0 .. p).
template <int P>
int nearest(const float* grid, int points, const double* x) {
  int best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int i = 0; i < points; ++i) {
    double d = 0;
    for (int j = 0; j < P; ++j) {
      const double t = x[j] - grid[i * P + j];
      d += t * t;
    }
    if (d < best_d) {
      best_d = d;
      best = i;
    }
  }
  return best;
}

int nearest_point(const std::vector<float>& grid, int p, const double* x) {
  const int points = static_cast<int>(grid.size()) / p;
  return p == 1 ? nearest<1>(grid.data(), points, x) : nearest<2>(grid.data(), points, x);
}

}  // namespace

std::vector<float> higgs_gaussian_grid(int bits, int p, DType dtype) {
  if (bits < 1 || bits > 4 || (p != 1 && p != 2))
    throw invalid_input("HIGGS grid: bits " + str(bits) + " and p " + str(p) + " (expected bits 1..4, p 1 or 2)");
  const int levels = 1 << bits;
  const std::vector<double> scalar = lloyd_max_gaussian(levels);
  std::vector<float> out;
  if (p == 1) {
    for (double v : scalar) out.push_back(round_to(static_cast<float>(v), dtype));
    return out;
  }
  // p = 2: start from the product of the scalar grids turned by half a radian (the unturned
  // product is a fixed point of Lloyd's algorithm, never the best 2-D grid), then iterate on the
  // samples.
  const int points = levels * levels;
  std::vector<double> c(static_cast<size_t>(points) * 2);
  const double cs = std::cos(0.5), sn = std::sin(0.5);
  for (int i = 0; i < levels; ++i)
    for (int j = 0; j < levels; ++j) {
      const double x = scalar[i], y = scalar[j];
      c[(i * levels + j) * 2] = cs * x - sn * y;
      c[(i * levels + j) * 2 + 1] = sn * x + cs * y;
    }
  constexpr int64_t kSamples = 32768;
  const std::vector<double> s = gaussian_samples(kSamples * 2, 0x48494747u);
  std::vector<float> cf(c.size());
  std::vector<int> owner(kSamples);
  std::vector<double> sum(c.size());
  std::vector<int64_t> count(points);
  for (int it = 0; it < 60; ++it) {
    for (size_t i = 0; i < c.size(); ++i) cf[i] = static_cast<float>(c[i]);
    for (int64_t i = 0; i < kSamples; ++i) owner[i] = nearest<2>(cf.data(), points, &s[i * 2]);
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(count.begin(), count.end(), 0);
    for (int64_t i = 0; i < kSamples; ++i) {
      sum[owner[i] * 2] += s[i * 2];
      sum[owner[i] * 2 + 1] += s[i * 2 + 1];
      ++count[owner[i]];
    }
    for (int i = 0; i < points; ++i)   // an empty cell keeps its point
      if (count[i]) {
        c[i * 2] = sum[i * 2] / count[i];
        c[i * 2 + 1] = sum[i * 2 + 1] / count[i];
      }
  }
  for (double v : c) out.push_back(round_to(static_cast<float>(v), dtype));
  return out;
}

double higgs_grid_mse(const std::vector<float>& grid, int p, int64_t samples) {
  const std::vector<double> s = gaussian_samples(samples * p + (samples * p) % 2, 0x6d7365u);
  double err = 0;
  for (int64_t i = 0; i < samples; ++i) {
    const double* x = &s[i * p];
    const int c = nearest_point(grid, p, x);
    for (int j = 0; j < p; ++j) err += (x[j] - grid[c * p + j]) * (x[j] - grid[c * p + j]);
  }
  return err / static_cast<double>(samples * p);
}

QuantizedWeight higgs_quantize(const std::string& name, const float* w, int64_t n, int64_t k,
                               const HiggsQuantizeSettings& s, ThreadPool* pool) {
  const int h = s.hadamard_size, gs = s.group_size, p = s.p;
  if ((s.bits != 2 && s.bits != 4) || (p != 1 && p != 2))
    throw invalid_input(name + ": HIGGS bits " + str(s.bits) + " p " + str(p) + " (qrt writes bits 2 or 4, p 1 or 2)");
  if (h < 2 || (h & (h - 1)) != 0 || k % h != 0)
    throw invalid_input(name + ": hadamard_size " + str(h) + " is not a power of 2 dividing in_features " + str(k));
  if (gs <= 0 || h % gs != 0 || gs % p != 0)
    throw invalid_input(name + ": group_size " + str(gs) + " does not divide hadamard_size " + str(h));
  if (s.grid.size() != (size_t{1} << (s.bits * p)) * p)
    throw invalid_input(name + ": the HIGGS grid has " + str(static_cast<int64_t>(s.grid.size())) +
                        " values, bits and p need " + str((int64_t{1} << (s.bits * p)) * p));
  for (int64_t i = 0; i < n * k; ++i)
    if (!std::isfinite(w[i]))
      throw invalid_input(name + ": weight element " + str(i) + " is " + (std::isnan(w[i]) ? "NaN" : "Inf"));

  QuantizedWeight q;
  q.spec.name = name;
  q.spec.in_features = k;
  q.spec.out_features = n;
  q.spec.encoding = WeightEncoding::RotatedCodebook;
  q.spec.bits = s.bits;
  q.spec.group_size = gs >= k ? -1 : gs;
  q.spec.zero_kind = ZeroKind::Symmetric;
  q.spec.codebook_dim = p;
  q.spec.hadamard_size = h;
  q.spec.source_format = "higgs";
  q.spec.codebook = s.grid;
  const int64_t groups = k / gs;
  q.codes.resize(static_cast<size_t>(n * k));
  q.scales.resize(static_cast<size_t>(n * groups));
  const int zero_point = [&] {
    const double zero[2] = {0, 0};
    return nearest_point(s.grid, p, zero);
  }();
  std::atomic<int64_t> overflow_row{-1};

  auto rows = [&](int64_t r0, int64_t r1) {
    std::vector<double> v(static_cast<size_t>(k));
    std::vector<int> code(static_cast<size_t>(gs / p));
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < k; ++c) v[c] = w[r * k + c];
      // V = W H, block by block (H symmetric).
      for (int64_t start = 0; start < k; start += h) hadamard_transform(v.data() + start, h);
      for (int64_t g = 0; g < groups; ++g) {
        const double* x = v.data() + g * gs;
        double ss = 0;
        for (int i = 0; i < gs; ++i) ss += x[i] * x[i];
        double scale = std::sqrt(ss / gs);
        if (!(scale > 0)) {
          std::fill(code.begin(), code.end(), zero_point);
          scale = 0;
        } else {
          // Round with the current scale, refit the scale to the chosen points; twice.
          for (int round = 0; round < 2; ++round) {
            double u[2];
            for (int i = 0; i < gs / p; ++i) {
              for (int j = 0; j < p; ++j) u[j] = x[i * p + j] / scale;
              code[i] = nearest_point(s.grid, p, u);
            }
            double num = 0, den = 0;
            for (int i = 0; i < gs / p; ++i)
              for (int j = 0; j < p; ++j) {
                const double gv = s.grid[code[i] * p + j];
                num += x[i * p + j] * gv;
                den += gv * gv;
              }
            if (!(num > 0 && den > 0)) break;
            scale = num / den;
          }
        }
        const float stored = round_to(static_cast<float>(scale), s.dtype);
        if (!std::isfinite(stored)) overflow_row.store(r);
        q.scales[r * groups + g] = stored;
        for (int i = 0; i < gs / p; ++i)
          for (int j = 0; j < p; ++j) q.codes[r * k + g * gs + i * p + j] = static_cast<uint8_t>(code[i]);
      }
    }
  };
  if (pool) pool->parallel_for(n, [&](int, int64_t a, int64_t b) { rows(a, b); });
  else rows(0, n);
  if (overflow_row.load() >= 0)
    throw invalid_input(name + ": row " + str(overflow_row.load()) + " needs a group scale beyond the range of " +
                        std::string(dtype_name(s.dtype)));
  q.validate();
  return q;
}

}  // namespace qrt::quant
