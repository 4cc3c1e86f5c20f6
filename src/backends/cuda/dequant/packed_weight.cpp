// Host side of the packed weight (see packed_weight.h): the codes packed into words on the host,
// the scales and zero offsets folded (a code book has none: its levels are uploaded as they are),
// everything uploaded once.
#include "backends/cuda/dequant/packed_weight.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/parallel_tasks.h"

namespace qrt::cuda {

std::vector<uint32_t> pack_codes(const QuantizedWeight& w, int64_t* row_words_out) {
  const int bits = w.spec.encoding == WeightEncoding::Fp8E4M3 ? 8 : w.spec.bits;
  const int64_t N = w.N(), K = w.K();
  const int64_t runs = (K + 31) / 32;
  const int64_t row_words = runs * bits;
  std::vector<uint32_t> out(static_cast<size_t>(N * row_words), 0u);
  // Rows are independent: 64 at a time on several threads.
  run_parallel_ranges(N, 64, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      const uint8_t* codes = w.codes.data() + n * K;
      uint32_t* row = out.data() + n * row_words;
      if (bits == 8) {
        for (int64_t k = 0; k < K; ++k) row[k >> 2] |= uint32_t(codes[k]) << ((k & 3) * 8);
        continue;
      }
      if (bits == 4) {
        for (int64_t k = 0; k < K; ++k) row[k >> 3] |= uint32_t(codes[k] & 0xF) << ((k & 7) * 4);
        continue;
      }
      const uint32_t mask = (1u << bits) - 1;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t run = k >> 5;
        const int j = static_cast<int>(k & 31);
        const int pos = j * bits;
        uint32_t* base = row + run * bits;
        const uint32_t v = codes[k] & mask;
        base[pos >> 5] |= v << (pos & 31);
        if ((pos & 31) + bits > 32) base[(pos >> 5) + 1] |= v >> (32 - (pos & 31));
      }
    }
  });
  if (row_words_out) *row_words_out = row_words;
  return out;
}

PackedWeight PackedWeight::pack(const QuantizedWeight& w) {
  const LayerSpec& s = w.spec;
  const bool fp8 = s.encoding == WeightEncoding::Fp8E4M3;
  const bool table = s.encoding == WeightEncoding::Codebook;
  const int64_t N = w.N(), K = w.K();
  if (N <= 0 || K <= 0) throw invalid_input(s.name + ": empty weight (N or K is 0)");
  if (s.encoding == WeightEncoding::RotatedCodebook)
    throw unsupported(s.name + ": rotated code books (HIGGS) have no cuda kernels");
  if (!fp8 && (s.bits < 1 || s.bits > 8))
    throw unsupported(s.name + ": " + std::to_string(s.bits) + "-bit codes (cuda kernels take 1..8)");
  if (table && s.codebook.size() != (size_t{1} << s.bits))
    throw invalid_input(s.name + ": code book holds " + std::to_string(s.codebook.size()) + " levels, expected 2^" +
                        std::to_string(s.bits));
  PackedWeight p;
  PackedWeightView& v = p.view_;
  v.n = N;
  v.k = K;
  v.fp8 = fp8;
  v.bits = fp8 ? 8 : s.bits;

  std::vector<float> scale, offset;
  if (fp8) {
    const int64_t bn = s.scale_block_n > 0 ? s.scale_block_n : N;
    const int64_t bk = s.scale_block_k > 0 ? s.scale_block_k : K;
    const int64_t gk = (K + bk - 1) / bk;
    const int64_t gn = (N + bn - 1) / bn;
    if (static_cast<int64_t>(w.scales.size()) != gn * gk)
      throw invalid_input(s.name + ": fp8 scales hold " + std::to_string(w.scales.size()) + " values, expected " + std::to_string(gn) + " x " + std::to_string(gk));
    v.groups = static_cast<int>(gk);
    v.group_size = static_cast<int>(std::min<int64_t>(bk, K));
    scale.resize(static_cast<size_t>(N * gk));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < gk; ++g) scale[n * gk + g] = w.scales[(n / bn) * gk + g];
  } else {
    const int64_t G = static_cast<int64_t>(w.scales.size()) / N;
    if (G < 1 || G * N != static_cast<int64_t>(w.scales.size()))
      throw invalid_input(s.name + ": scales hold " + std::to_string(w.scales.size()) + " values, not a multiple of N = " + std::to_string(N));
    v.groups = static_cast<int>(G);
    v.group_size = static_cast<int>(std::min<int64_t>(s.effective_group_size(), K));
    scale = w.scales;
  }
  if (!fp8 && !table) {
    offset.resize(scale.size());
    const float half_range = static_cast<float>(1 << (s.bits - 1));
    for (size_t i = 0; i < scale.size(); ++i) {
      switch (s.zero_kind) {
        case ZeroKind::Symmetric: offset[i] = -half_range * scale[i]; break;
        case ZeroKind::Integer: offset[i] = -w.zeros.at(i) * scale[i]; break;
        case ZeroKind::Float: offset[i] = w.zeros.at(i); break;
      }
    }
  }
  const bool has_gidx = !w.g_idx.empty();
  v.uniform_runs = !has_gidx && (v.group_size % 32 == 0 || v.group_size >= K);

  int64_t row_words = 0;
  std::vector<uint32_t> words = pack_codes(w, &row_words);
  v.row_words = row_words;
  p.words_ = DeviceBuffer::upload(words, s.name + " packed codes");
  p.scale_ = DeviceBuffer::upload(scale, s.name + " scales");
  v.words = p.words_.as<uint32_t>();
  v.scale = p.scale_.as<float>();
  if (!offset.empty()) {
    p.offset_ = DeviceBuffer::upload(offset, s.name + " zero offsets");
    v.offset = p.offset_.as<float>();
  }
  if (table) {
    p.codebook_ = DeviceBuffer::upload(s.codebook, s.name + " code book");
    v.codebook = p.codebook_.as<float>();
  }
  if (has_gidx) {
    p.g_idx_ = DeviceBuffer::upload(w.g_idx, s.name + " g_idx");
    v.g_idx = p.g_idx_.as<int32_t>();
  }
  if (!w.bias.empty()) {
    p.bias_ = DeviceBuffer::upload(w.bias, s.name + " bias");
    v.bias = p.bias_.as<float>();
  }
  return p;
}

int64_t PackedWeight::device_bytes() const {
  return static_cast<int64_t>(words_.bytes() + scale_.bytes() + offset_.bytes() + codebook_.bytes() + g_idx_.bytes() +
                              bias_.bytes());
}

}  // namespace qrt::cuda
