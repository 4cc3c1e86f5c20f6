// cpu_higgs: HIGGS (rotated codebook) weights on the CPU without dequantizing them to float.
// W = V H (quantized_weight.h), so y = x W^T = (x H) V^T: forward() rotates a chunk of activation
// rows once (the orthonormal Hadamard butterflies per block), then every output row walks its codes
// through the grid, one group at a time, times the group scale. The weight stays one byte per grid
// vector (4 bits per value at 4-bit p = 2) instead of cpu_ref's 32.
//
// Kernel parameter: tile_n, the output rows that share one pass over a column chunk of the rotated
// activations (the cache blocking FLUTE's template tile is for a GPU block). A HIGGS checkpoint's
// tune_metadata sets it per layer: FLUTE's template packs tile_p words of 16 / bits values, that is
// tile_n = 16 / bits * tile_p rows (checkpoint_runtime turns the entry into this parameter).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "backends/backend_factories.h"
#include "core/hadamard.h"
#include "qrt/error.h"
#include "qrt/thread_pool.h"

namespace qrt {
namespace {

constexpr int64_t kRowChunk = 16;      // activation rows rotated and run together
constexpr int64_t kMaxColChunk = 256;  // grid values decoded at once (a stack buffer)
const std::vector<int64_t> kTileN = {8, 16, 32, 64, 128, 256, 512};

class CpuHiggsPrepared final : public PreparedLinear {
 public:
  CpuHiggsPrepared(const QuantizedWeight& w, int64_t tile_n)
      : n_(w.N()), k_(w.K()), d_(w.spec.codebook_dim), h_(w.spec.hadamard_size), tile_n_(tile_n),
        group_(w.spec.effective_group_size()), groups_(w.spec.num_groups()), codebook_(w.spec.codebook),
        scales_(w.scales), bias_(w.bias), rotated_(static_cast<size_t>(kRowChunk * w.K())) {
    // One code per grid vector: the d columns of a vector carry the same code.
    codes_.resize(static_cast<size_t>(n_ * (k_ / d_)));
    for (int64_t r = 0; r < n_; ++r)
      for (int64_t v = 0; v < k_ / d_; ++v) codes_[r * (k_ / d_) + v] = w.codes[r * k_ + v * d_];
    // A chunk lies inside one group and inside the row: a group wider than the row (one scale per
    // row) must not make the chunk run past the row's codes.
    col_chunk_ = std::gcd(std::gcd(group_, kMaxColChunk), k_);
  }

  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx) override {
    const float* xs = static_cast<const float*>(x.data);
    float* ys = static_cast<float*>(y.data);
    for (int64_t m0 = 0; m0 < x.rows; m0 += kRowChunk) {
      const int64_t rows = std::min(kRowChunk, x.rows - m0);
      rotate(xs + m0 * k_, rows);
      const int64_t tiles = (n_ + tile_n_ - 1) / tile_n_;
      auto work = [&](int, int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) run_tile(t * tile_n_, std::min(n_, (t + 1) * tile_n_), rows, ys + m0 * n_);
      };
      if (ctx.pool && ctx.pool->size() > 1 && n_ * k_ * rows >= (1 << 16)) ctx.pool->parallel_for(tiles, work);
      else work(0, 0, tiles);
    }
  }

  int64_t weight_bytes() const override {
    return static_cast<int64_t>(codes_.size() + (codebook_.size() + scales_.size() + bias_.size()) * sizeof(float));
  }

 private:
  // rotated_[r] = x[r] H, block by block (H symmetric: each block b becomes H b).
  void rotate(const float* x, int64_t rows) {
    std::copy(x, x + rows * k_, rotated_.begin());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t start = 0; start < k_; start += h_) hadamard_transform(rotated_.data() + r * k_ + start, h_);
  }

  // Output rows [n0, n1) for `rows` activation rows; y points at the chunk's first row.
  void run_tile(int64_t n0, int64_t n1, int64_t rows, float* y) const {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t m = 0; m < rows; ++m) y[m * n_ + n] = bias_.empty() ? 0.0f : bias_[n];
    float v[kMaxColChunk];
    const int64_t vecs = k_ / d_;
    for (int64_t c0 = 0; c0 < k_; c0 += col_chunk_) {
      const int64_t g = c0 / group_;
      for (int64_t n = n0; n < n1; ++n) {
        const uint8_t* code = codes_.data() + n * vecs + c0 / d_;
        if (d_ == 2) {
          for (int64_t i = 0; i < col_chunk_ / 2; ++i) {
            const float* point = codebook_.data() + 2 * static_cast<size_t>(code[i]);
            v[2 * i] = point[0];
            v[2 * i + 1] = point[1];
          }
        } else {
          for (int64_t i = 0; i < col_chunk_; ++i) v[i] = codebook_[code[i]];
        }
        const float s = scales_[n * groups_ + g];
        for (int64_t m = 0; m < rows; ++m) {
          const float* xr = rotated_.data() + m * k_ + c0;
          float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int64_t i = 0;
          for (; i + 8 <= col_chunk_; i += 8)
            for (int j = 0; j < 8; ++j) part[j] += xr[i + j] * v[i + j];
          float acc = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
          for (; i < col_chunk_; ++i) acc += xr[i] * v[i];
          y[m * n_ + n] += s * acc;
        }
      }
    }
  }

  int64_t n_, k_;
  int d_, h_;
  int64_t tile_n_, group_, groups_, col_chunk_ = 0;
  std::vector<float> codebook_, scales_, bias_;
  std::vector<uint8_t> codes_;     // [N][K / d]
  std::vector<float> rotated_;     // kRowChunk rows of x H
};

class CpuHiggsBackend final : public Backend {
 public:
  CpuHiggsBackend() {
    cap_.device = DeviceKind::Cpu;
    cap_.encodings = {WeightEncoding::RotatedCodebook};
    cap_.activation_dtypes = {DType::F32};
  }
  const std::string& name() const override { return name_; }
  const std::string& summary() const override { return summary_; }
  const BackendCapability& capability() const override { return cap_; }

  Verdict validate_params(const LayerSpec&, const KernelParams& params) const override {
    for (const auto& [key, value] : params.values) {
      if (key != "tile_n") return Verdict::no("unknown parameter '" + key + "': cpu_higgs takes tile_n");
      const auto* i = std::get_if<int64_t>(&value);
      if (!i) return Verdict::no("parameter 'tile_n' must be an integer");
      if (std::find(kTileN.begin(), kTileN.end(), *i) == kTileN.end())
        return Verdict::no("parameter 'tile_n' = " + std::to_string(*i) + ": expected one of 8, 16, 32, 64, 128, 256, 512");
    }
    return Verdict::yes();
  }

  KernelParams default_params(const LayerSpec&, int64_t, const DeviceInfo&) const override {
    KernelParams p;
    p.values["tile_n"] = int64_t{64};
    return p;
  }

  std::vector<KernelParams> tuning_space(const LayerSpec&, int64_t, const DeviceInfo&) const override {
    std::vector<KernelParams> out;
    for (int64_t t : {16, 32, 64, 128, 256}) {
      KernelParams p;
      p.values["tile_n"] = t;
      out.push_back(std::move(p));
    }
    return out;
  }

  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams& params,
                                          const PrepareContext& context) const override {
    if (context.device.kind != DeviceKind::Cpu)
      throw Error(ErrorKind::Unsupported, weight.spec.name + ": cpu_higgs runs on the CPU, not " + context.device.id);
    if (weight.spec.encoding != WeightEncoding::RotatedCodebook)
      throw unsupported(weight.spec.name + ": cpu_higgs runs rotated-codebook (HIGGS) weights only");
    const Verdict v = validate_params(weight.spec, params);
    if (!v.ok) throw invalid_input(weight.spec.name + ": cpu_higgs: " + v.reason);
    weight.validate();
    try {
      return std::make_unique<CpuHiggsPrepared>(weight, params.get_int("tile_n", 64));
    } catch (const std::bad_alloc&) {
      throw Error(ErrorKind::OutOfMemory, weight.spec.name + ": cpu_higgs: out of host memory while packing");
    }
  }

 private:
  std::string name_ = "cpu_higgs";
  std::string summary_ = "HIGGS rotated-codebook weights: activations rotated once, codes looked up in the grid per group";
  BackendCapability cap_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_higgs_backend() { return std::make_unique<CpuHiggsBackend>(); }

}  // namespace qrt
