// Host side of cuda_higgs' device weight (see higgs_weight.h): the codes packed one byte per grid
// vector, the launch geometry of the lookup kernel, and the per-layer shared uploads.
#include "backends/cuda/higgs/higgs_weight.h"

#include <fmt/format.h>

#include <algorithm>
#include <type_traits>

#include "qrt/error.h"

namespace qrt::cuda {

std::vector<uint8_t> pack_higgs_codes(const QuantizedWeight& w, int64_t* ldc_out) {
  const int p = w.spec.codebook_dim;
  const int64_t n = w.N(), k = w.K(), vectors = k / p;
  const int64_t ldc = (vectors + 15) / 16 * 16;
  std::vector<uint8_t> out(static_cast<size_t>(n * ldc), 0);
  // The p columns of one vector carry the same code (QuantizedWeight::validate): take the first.
  for (int64_t r = 0; r < n; ++r)
    for (int64_t v = 0; v < vectors; ++v) out[r * ldc + v] = w.codes[r * k + v * p];
  if (ldc_out) *ldc_out = ldc;
  return out;
}

HiggsDeviceWeight::HiggsDeviceWeight(const QuantizedWeight& w) {
  const LayerSpec& s = w.spec;
  const int p = s.codebook_dim;
  if (s.encoding != WeightEncoding::RotatedCodebook)
    throw unsupported(s.name + ": cuda_higgs runs rotated-codebook (HIGGS) weights only");
  if (p < 1 || p > 2 || w.K() % p != 0)
    throw unsupported(fmt::format("{}: cuda_higgs runs grid vectors of 1 or 2 values dividing K; got p = {}, K = {}",
                                  s.name, p, w.K()));
  const int64_t points = static_cast<int64_t>(s.codebook.size()) / p;
  if (points < 1 || points > 256 || points * p != static_cast<int64_t>(s.codebook.size()))
    throw unsupported(fmt::format("{}: cuda_higgs holds at most 256 grid vectors; the grid has {} values for p = {}",
                                  s.name, s.codebook.size(), p));
  if (s.hadamard_size < 2 || s.hadamard_size > kHiggsMaxHadamard || w.K() % s.hadamard_size != 0)
    throw unsupported(fmt::format("{}: cuda_higgs rotates Hadamard blocks of 2 .. {} dividing K; got {}", s.name,
                                  kHiggsMaxHadamard, s.hadamard_size));
  HiggsView& v = view_;
  v.n = w.N();
  v.k = w.K();
  v.p = p;
  v.points = static_cast<int>(points);
  v.groups = static_cast<int>(s.num_groups());
  v.group_size = static_cast<int>(std::min<int64_t>(s.effective_group_size(), w.K()));
  v.hadamard = s.hadamard_size;
  v.uniform = v.groups == 1 || v.group_size % (16 * p) == 0;
  if (static_cast<int64_t>(w.scales.size()) != v.n * v.groups)
    throw invalid_input(fmt::format("{}: scales hold {} values, expected {} x {}", s.name, w.scales.size(), v.n,
                                    v.groups));

  const std::vector<uint8_t> codes = pack_higgs_codes(w, &v.ldc);
  codes_ = DeviceBuffer::upload(codes, s.name + " (HIGGS codes)");
  scales_ = DeviceBuffer::upload(w.scales, s.name + " (HIGGS group scales)");
  grid_ = DeviceBuffer::upload(s.codebook, s.name + " (HIGGS grid)");
  v.codes = codes_.as<uint8_t>();
  v.scales = scales_.as<float>();
  v.grid = grid_.as<float>();
  if (!w.bias.empty()) {
    bias_ = DeviceBuffer::upload(w.bias, s.name + " (bias)");
    v.bias = bias_.as<float>();
  }
}

int64_t HiggsDeviceWeight::bytes() const {
  return static_cast<int64_t>(codes_.bytes() + scales_.bytes() + grid_.bytes() + bias_.bytes());
}

namespace {

uint64_t fnv(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// Name, shape and format, plus samples of the data: two layers never share a name in one model, and
// the samples keep a reloaded layer of the same name from reusing a stale upload.
std::string weight_key(const QuantizedWeight& w, int device) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto sample = [&](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::value_type;
    const size_t n = v.size(), take = std::min<size_t>(n, 4096);
    if (n) h = fnv(h, v.data(), take * sizeof(T));
    if (n > take) h = fnv(h, v.data() + n - take, take * sizeof(T));
    if (n > 2 * take) h = fnv(h, v.data() + n / 2, take * sizeof(T));
  };
  sample(w.codes);
  sample(w.scales);
  sample(w.spec.codebook);
  sample(w.bias);
  return fmt::format("{}|{}|{}x{}|{}|p{}|g{}|h{}|{:x}", device, w.spec.name, w.N(), w.K(), w.spec.bits,
                     w.spec.codebook_dim, w.spec.group_size, w.spec.hadamard_size, h);
}

}  // namespace

std::shared_ptr<const HiggsDeviceWeight> shared_higgs_weight(const QuantizedWeight& w, int device) {
  auto sp = DeviceContext::get(device).shared_upload("higgs|" + weight_key(w, device), [&] {
    DeviceGuard guard(device);
    return std::static_pointer_cast<const void>(std::make_shared<const HiggsDeviceWeight>(w));
  });
  return std::static_pointer_cast<const HiggsDeviceWeight>(sp);
}

std::shared_ptr<const HiggsFp16Copy> shared_higgs_fp16(const QuantizedWeight& w, const HiggsView& view, int device) {
  auto sp = DeviceContext::get(device).shared_upload("higgs-fp16|" + weight_key(w, device), [&] {
    DeviceGuard guard(device);
    auto copy = std::make_shared<HiggsFp16Copy>();
    copy->ld = higgs_ldv(view.k);
    copy->v = DeviceBuffer(static_cast<size_t>(view.n * copy->ld * 2), w.spec.name + " (HIGGS weight as fp16)");
    // Load time: the legacy stream, then wait (nothing else of this layer runs yet).
    launch_higgs_decode(view, 0, view.n, copy->v.get(), copy->ld, DType::F16, nullptr);
    QRT_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    return std::static_pointer_cast<const void>(std::shared_ptr<const HiggsFp16Copy>(std::move(copy)));
  });
  return std::static_pointer_cast<const HiggsFp16Copy>(sp);
}

HiggsLutGeometry higgs_lut_geometry(const HiggsView& w, int tile_n, int split, int sms) {
  HiggsLutGeometry g;
  g.tile_n = std::max(8, tile_n);
  g.chunks = std::max<int64_t>(1, (w.k / w.p + 15) / 16);
  // Four warps of the block share its tile_n rows: each warp takes 32 / TK rows x 2 at a time, so a
  // tile of 8 rows needs all 32 lanes of a row along K (TK = 32), a tile of 256 rows one.
  const int tk_min = static_cast<int>(std::clamp<int64_t>(256 / g.tile_n, 1, 32));
  int64_t s = split;
  if (s <= 0) {
    // Enough blocks to keep every SM streaming (4 per SM), from the rows first; slices of at least
    // tk_min runs so the lanes along K have work, and at most 32 slices (the partial sums).
    const int64_t row_blocks = (w.n + g.tile_n - 1) / g.tile_n;
    const int64_t target = 4 * static_cast<int64_t>(std::max(1, sms));
    s = std::clamp<int64_t>((target + row_blocks - 1) / row_blocks, 1, std::max<int64_t>(1, std::min<int64_t>(32, g.chunks / tk_min)));
  }
  s = std::clamp<int64_t>(s, 1, g.chunks);
  g.chunk_slice = (g.chunks + s - 1) / s;
  g.split = static_cast<int>((g.chunks + g.chunk_slice - 1) / g.chunk_slice);   // no empty slice
  int tk = 1;
  while (tk * 2 <= std::min<int64_t>(g.chunk_slice, 32)) tk *= 2;
  tk = std::max(tk, tk_min);
  g.tk_log2 = 0;
  while ((1 << g.tk_log2) < tk) ++g.tk_log2;
  return g;
}

}  // namespace qrt::cuda
