// Canonical quantized weight: invariants and the reference dequantizer.
#include "qrt/quantized_weight.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/hadamard.h"
#include "qrt/dtype.h"
#include "qrt/error.h"

namespace qrt {

const char* weight_encoding_name(WeightEncoding e) {
  switch (e) {
    case WeightEncoding::IntAffine: return "int";
    case WeightEncoding::Fp8E4M3: return "fp8_e4m3";
    case WeightEncoding::Codebook: return "codebook";
    case WeightEncoding::RotatedCodebook: return "rotated-codebook";
  }
  return "?";
}

const char* zero_kind_name(ZeroKind z) {
  switch (z) {
    case ZeroKind::Symmetric: return "sym";
    case ZeroKind::Integer: return "asym";
    case ZeroKind::Float: return "float-min";
  }
  return "?";
}

int64_t LayerSpec::num_groups() const {
  if (encoding == WeightEncoding::Fp8E4M3) return 0;
  const int64_t g = effective_group_size();
  return g <= 0 ? 0 : (in_features + g - 1) / g;
}

bool LayerSpec::codebook_is_int8() const {
  if (encoding != WeightEncoding::Codebook || codebook.empty()) return false;
  for (float v : codebook)
    if (!(v >= -128.0f && v <= 127.0f) || v != std::nearbyint(v)) return false;
  return true;
}

std::string LayerSpec::describe() const {
  std::ostringstream os;
  if (encoding == WeightEncoding::Fp8E4M3) {
    os << "fp8 ";
    if (scale_block_n >= out_features && scale_block_k >= in_features)
      os << "per-tensor";
    else if (scale_block_n == 1 && scale_block_k >= in_features)
      os << "per-channel";
    else
      os << "block " << scale_block_n << "x" << scale_block_k;
  } else {
    os << bits << "-bit ";
    if (group_size <= 0 || group_size >= in_features)
      os << "per-row";
    else
      os << "g" << group_size;
    if (encoding == WeightEncoding::RotatedCodebook)
      os << " codebook p" << codebook_dim << " hadamard " << hadamard_size;
    else
      os << " " << (encoding == WeightEncoding::Codebook ? "codebook" : zero_kind_name(zero_kind));
    if (act_order) os << " act-order";
  }
  return os.str();
}

void QuantizedWeight::validate() const {
  const auto& s = spec;
  auto fail = [&](const std::string& what) { throw invalid_input(s.name + ": " + what); };
  if (s.in_features <= 0 || s.out_features <= 0) fail("in/out features must be positive");
  if (s.in_features > (int64_t{1} << 31) || s.out_features > (int64_t{1} << 31))
    fail("dimensions too large");
  const int64_t n = s.out_features, k = s.in_features;
  if (static_cast<int64_t>(codes.size()) != n * k)
    fail("codes hold " + std::to_string(codes.size()) + " values, expected " + std::to_string(n * k));
  if (!bias.empty() && static_cast<int64_t>(bias.size()) != n) fail("bias size != out_features");
  auto check_finite = [&](const std::vector<float>& v, const char* what) {
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        fail(std::string(what) + "[" + std::to_string(i) + "] is " + (std::isnan(v[i]) ? "NaN" : "Inf"));
  };
  // Values are checked after every size: a tensor of the wrong size is named as such, not blamed
  // on the garbage its wrong size makes of the values.
  auto check_values = [&] {
    check_finite(scales, "scales");
    check_finite(zeros, "zeros");
    check_finite(bias, "bias");
  };
  if (s.encoding == WeightEncoding::Fp8E4M3) {
    if (s.scale_block_n <= 0 || s.scale_block_k <= 0) fail("fp8 scale block sizes must be positive");
    const int64_t rows = (n + s.scale_block_n - 1) / s.scale_block_n;
    const int64_t cols = (k + s.scale_block_k - 1) / s.scale_block_k;
    if (static_cast<int64_t>(scales.size()) != rows * cols)
      fail("fp8 scales hold " + std::to_string(scales.size()) + " values, expected " +
           std::to_string(rows * cols));
    check_values();
    for (size_t i = 0; i < codes.size(); ++i)
      if ((codes[i] & 0x7F) == 0x7F) fail("fp8 code at " + std::to_string(i) + " is NaN");
    return;
  }
  if (s.bits < 1 || s.bits > 8) fail("bits " + std::to_string(s.bits) + " outside 1..8");
  if (s.encoding == WeightEncoding::Codebook) {
    if (static_cast<int64_t>(s.codebook.size()) != (int64_t{1} << s.bits))
      fail("codebook holds " + std::to_string(s.codebook.size()) + " values, expected 2^" + std::to_string(s.bits));
    check_finite(s.codebook, "codebook");
    if (s.zero_kind != ZeroKind::Symmetric) fail("a codebook weight has no zero points");
  } else if (s.encoding == WeightEncoding::RotatedCodebook) {
    const int d = s.codebook_dim;
    if (d < 1 || s.bits * d > 8)
      fail("codebook_dim " + std::to_string(d) + " at " + std::to_string(s.bits) + " bits: a code must fit 8 bits");
    if (s.hadamard_size < 2 || (s.hadamard_size & (s.hadamard_size - 1)) != 0 || k % s.hadamard_size != 0)
      fail("hadamard_size " + std::to_string(s.hadamard_size) + " must be a power of 2 dividing in_features " +
           std::to_string(k));
    if (s.effective_group_size() % d != 0) fail("group size is not a multiple of codebook_dim");
    if (static_cast<int64_t>(s.codebook.size()) != (int64_t{d} << (s.bits * d)))
      fail("codebook holds " + std::to_string(s.codebook.size()) + " values, expected " +
           std::to_string(int64_t{d} << (s.bits * d)));
    check_finite(s.codebook, "codebook");
    if (s.zero_kind != ZeroKind::Symmetric) fail("a codebook weight has no zero points");
    if (!g_idx.empty()) fail("a rotated codebook weight has no act-order permutation");
  } else if (!s.codebook.empty()) {
    fail("only codebook weights carry a codebook");
  }
  if (s.encoding != WeightEncoding::RotatedCodebook && (s.codebook_dim != 1 || s.hadamard_size != 0))
    fail("only rotated codebook weights carry codebook_dim / hadamard_size");
  const int64_t groups = s.num_groups();
  if (static_cast<int64_t>(scales.size()) != n * groups)
    fail("scales hold " + std::to_string(scales.size()) + " values, expected " + std::to_string(n * groups));
  if (s.zero_kind == ZeroKind::Symmetric) {
    if (!zeros.empty()) fail("symmetric weight must not carry zeros");
  } else if (static_cast<int64_t>(zeros.size()) != n * groups) {
    fail("zeros hold " + std::to_string(zeros.size()) + " values, expected " + std::to_string(n * groups));
  }
  check_values();
  const bool rotated = s.encoding == WeightEncoding::RotatedCodebook;
  const int code_bits = rotated ? s.bits * s.codebook_dim : s.bits;
  const unsigned limit = 1u << code_bits;
  // Chunk maxima (a loop the compiler vectorizes; a 7B model has 6.5 G codes), then the first
  // offending index of a chunk that has one.
  constexpr size_t kChunk = 4096;
  for (size_t c0 = 0; c0 < codes.size(); c0 += kChunk) {
    const size_t c1 = std::min(codes.size(), c0 + kChunk);
    uint8_t most = 0;
    for (size_t i = c0; i < c1; ++i) most = std::max(most, codes[i]);
    if (most < limit) continue;
    for (size_t i = c0; i < c1; ++i)
      if (codes[i] >= limit) fail("code at " + std::to_string(i) + " exceeds " + std::to_string(code_bits) + " bits");
  }
  if (rotated && s.codebook_dim > 1)
    for (size_t i = 0; i < codes.size(); ++i)
      if (codes[i] != codes[i - i % s.codebook_dim])
        fail("code at " + std::to_string(i) + " differs from the other codes of its vector");
  if (!g_idx.empty()) {
    if (static_cast<int64_t>(g_idx.size()) != k) fail("g_idx size != in_features");
    for (int64_t i = 0; i < k; ++i)
      if (g_idx[i] < 0 || g_idx[i] >= groups)
        fail("g_idx[" + std::to_string(i) + "] = " + std::to_string(g_idx[i]) + " outside [0, " +
             std::to_string(groups) + ")");
  }
}

namespace {

// W = V * H: each row's blocks of `size` values rotated by the orthonormal Hadamard transform,
// in double.
void apply_hadamard_rows(std::vector<float>& rows, int64_t n, int64_t k, int size) {
  std::vector<double> b(static_cast<size_t>(size));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t start = 0; start < k; start += size) {
      float* v = rows.data() + r * k + start;
      for (int i = 0; i < size; ++i) b[i] = v[i];
      hadamard_transform(b.data(), size);
      for (int i = 0; i < size; ++i) v[i] = static_cast<float>(b[i]);
    }
}

}  // namespace

std::vector<float> dequantize_reference(const QuantizedWeight& w) {
  const int64_t n = w.N(), k = w.K();
  std::vector<float> out(static_cast<size_t>(n * k));
  const auto& s = w.spec;
  if (s.encoding == WeightEncoding::Fp8E4M3) {
    const int64_t cols = (k + s.scale_block_k - 1) / s.scale_block_k;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c)
        out[r * k + c] = fp8_e4m3_to_f32(w.codes[r * k + c]) *
                         w.scales[(r / s.scale_block_n) * cols + c / s.scale_block_k];
    return out;
  }
  const int64_t groups = s.num_groups();
  if (s.encoding == WeightEncoding::RotatedCodebook) {
    const int d = s.codebook_dim;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c)
        out[r * k + c] = s.codebook[static_cast<size_t>(w.codes[r * k + c]) * d + c % d] *
                         w.scales[r * groups + c / s.effective_group_size()];
    apply_hadamard_rows(out, n, k, s.hadamard_size);
    return out;
  }
  const float mid = static_cast<float>(1 << (s.bits - 1));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const int64_t g = w.group_of(c);
      const float scale = w.scales[r * groups + g];
      const float q = w.codes[r * k + c];
      float v;
      if (s.encoding == WeightEncoding::Codebook) {
        out[r * k + c] = s.codebook[w.codes[r * k + c]] * scale;
        continue;
      }
      switch (s.zero_kind) {
        case ZeroKind::Symmetric: v = (q - mid) * scale; break;
        case ZeroKind::Integer: v = (q - w.zeros[r * groups + g]) * scale; break;
        default: v = q * scale + w.zeros[r * groups + g]; break;
      }
      out[r * k + c] = v;
    }
  }
  return out;
}

}  // namespace qrt
