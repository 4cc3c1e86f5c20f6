// Repack of canonical quantized weights into the fragment-ordered layout of qrt's int4/int8
// tensor-core kernels (layout: int4_int8_device.cuh), and the split-K heuristic.
#include "backends/cuda/common/int4_int8_pack.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/parallel_tasks.h"
#include "qrt/dtype.h"
#include "qrt/error.h"

namespace qrt::cuda {

std::string int4_pack_rejection(const LayerSpec& s) {
  if (s.encoding != WeightEncoding::IntAffine) return "only integer weights";
  if (s.bits != 4 && s.bits != 8) return std::to_string(s.bits) + "-bit weights unsupported: needs 4 or 8";
  if (s.out_features % 16 != 0)
    return "out_features " + std::to_string(s.out_features) + " is not a multiple of 16";
  if (s.in_features % 64 != 0 || s.in_features <= 0)
    return "in_features " + std::to_string(s.in_features) + " is not a multiple of 64";
  const int64_t g = s.effective_group_size();
  const bool per_channel = s.group_size <= 0 || g >= s.in_features;
  if (!per_channel && g != 32 && g != 64 && g != 128)
    return "group size " + std::to_string(s.group_size) + " unsupported: needs -1, 32, 64 or 128";
  if (!per_channel && s.in_features % g != 0)
    return "in_features " + std::to_string(s.in_features) + " is not a multiple of the group size";
  if (s.zero_kind == ZeroKind::Float && s.bits != 4)
    return "float zero points (q*s+m) need 4-bit codes, got " + std::to_string(s.bits) + "-bit";
  return "";
}

namespace {
inline size_t idx(int64_t n, int64_t k, int64_t K) { return static_cast<size_t>(n) * K + k; }

// The power of two 2^e that brings the largest |v| into [128, 256): v * 2^-e is then a normal fp16
// number for every v within 2^21 of the largest, and exact whenever v itself is an fp16 number.
int fp16_folding_exponent(const std::vector<float>& values) {
  float max_abs = 0.f;
  for (float v : values) max_abs = std::max(max_abs, std::fabs(v));
  int e = 0;
  if (max_abs > 0.f) {
    std::frexp(max_abs, &e);  // max_abs in [2^(e-1), 2^e)
    e -= 8;
  }
  return e;
}

// Position of the value of row n in a [G][N/16][8][2] pair array: (n, n + 8) of each n16 tile
// side by side, so one 32-bit load gives a lane both rows of its MMA fragment.
inline size_t pair_index(int gi, int64_t n, int64_t N) {
  return static_cast<size_t>(gi) * N + (n / 16) * 16 + 2 * (n % 8) + (n % 16) / 8;
}
}  // namespace

Int4PackedHost pack_int4_host(const QuantizedWeight& w) {
  const LayerSpec& s = w.spec;
  if (std::string why = int4_pack_rejection(s); !why.empty())
    throw unsupported(s.name + ": cannot pack for the int4 tensor-core kernels: " + why);
  const int64_t N = s.out_features, K = s.in_features;
  Int4PackedHost p;
  p.n = N;
  p.k = K;
  p.bits = s.bits;
  const int64_t g_eff = s.effective_group_size();
  const bool per_channel = s.group_size <= 0 || g_eff >= K;
  p.group_size = per_channel ? 0 : static_cast<int>(g_eff);
  p.groups = per_channel ? 1 : static_cast<int>(K / g_eff);
  p.has_zero = s.zero_kind == ZeroKind::Integer;
  p.float_zero = s.zero_kind == ZeroKind::Float;
  const int64_t G_src = s.num_groups();
  if (w.codes.size() != static_cast<size_t>(N * K) || w.scales.size() != static_cast<size_t>(N * G_src))
    throw invalid_input(s.name + ": codes/scales sizes do not match " + s.describe());
  if ((p.has_zero || p.float_zero) && w.zeros.size() != w.scales.size())
    throw invalid_input(s.name + ": zeros size does not match scales");

  // Act-order: stable sort of the columns by group; each group must then be one contiguous run of
  // exactly group_size columns (true for GPTQ desc_act), so the sorted weight is an ordinary
  // grouped weight and the activations are permuted the same way at run time.
  std::vector<int32_t> order(K);
  std::iota(order.begin(), order.end(), 0);
  // With one group spanning K (group size >= in_features) every g_idx entry is 0: the column order
  // cannot change any scale or zero, so act-order is a no-op and the weight packs as it is.
  const bool act = !w.g_idx.empty() && !per_channel;
  if (act) {
    if (w.g_idx.size() != static_cast<size_t>(K)) throw invalid_input(s.name + ": g_idx must have in_features entries");
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return w.g_idx[a] < w.g_idx[b]; });
    for (int64_t i = 0; i < K; ++i)
      if (w.g_idx[order[i]] != i / g_eff)
        throw unsupported(s.name + ": act-order groups are not all of size " + std::to_string(g_eff) +
                          " (g_idx of column " + std::to_string(order[i]) + " is " +
                          std::to_string(w.g_idx[order[i]]) + ")");
    p.perm = order;
  }
  auto code = [&](int64_t n, int64_t k_sorted) -> uint32_t { return w.codes[idx(n, order[k_sorted], K)]; };

  // Codes.
  const int64_t chunks = K / 64, tiles = N / 16;
  const int per_chunk = 32 * s.bits / 4;  // uint4 per (tile, chunk)
  p.words.assign(static_cast<size_t>(tiles * chunks * per_chunk * 4), 0u);
  // Tiles are independent: 16 at a time on several threads (a 7B model packs 6.5 G codes).
  run_parallel_ranges(tiles, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t c = 0; c < chunks; ++c) {
        uint32_t* piece = p.words.data() + static_cast<size_t>((t * chunks + c) * per_chunk * 4);
        for (int lane = 0; lane < 32; ++lane) {
          const int gq = lane / 4, q = lane % 4;
          const int64_t r = 16 * t + gq;
          for (int j = 0; j < 4; ++j) {
            const int64_t ka = 64 * c + 32 * (j / 2) + 8 * q + 4 * (j % 2);
            if (s.bits == 4) {
              // nibble i: (row, col) = (r + 8*(i&1), ka + 2*((i>>1)&1) + (i>>2))
              uint32_t word = 0;
              for (int i = 0; i < 8; ++i) {
                const int64_t row = r + 8 * (i & 1);
                const int64_t col = ka + 2 * ((i >> 1) & 1) + (i >> 2);
                word |= (code(row, col) & 0xFu) << (4 * i);
              }
              piece[lane * 4 + j] = word;
            } else {
              const int sh = j / 2, jj = j % 2;
              uint32_t wa = 0, wb = 0;
              const int64_t rr[4] = {r, r, r + 8, r + 8};
              const int64_t dk[4] = {0, 1, 0, 1};
              for (int b = 0; b < 4; ++b) {
                wa |= (code(rr[b], ka + dk[b]) & 0xFFu) << (8 * b);
                wb |= (code(rr[b], ka + 2 + dk[b]) & 0xFFu) << (8 * b);
              }
              uint32_t* v = piece + (sh * 32 + lane) * 4;
              v[2 * jj] = wa;
              v[2 * jj + 1] = wb;
            }
          }
        }
      }
  });

  // Scales (fp16 pairs with a power-of-two factor pulled out so they stay normal fp16 numbers);
  // float zero points the same way with their own factor (the kernel rescales them to the scales'
  // factor in fp32, so the two ranges need not overlap).
  const int e = fp16_folding_exponent(w.scales);
  p.scale_mul = std::ldexp(1.f, e);
  const int f = p.float_zero ? fp16_folding_exponent(w.zeros) : 0;
  p.offset_mul = std::ldexp(1.f, f);
  const int G = p.groups;
  p.scales.assign(static_cast<size_t>(G * N), 0);
  if (p.has_zero) p.zeros.assign(static_cast<size_t>(G * N), 0);
  if (p.float_zero) p.offsets.assign(static_cast<size_t>(G * N), 0);
  for (int gi = 0; gi < G; ++gi)
    for (int64_t n = 0; n < N; ++n) {
      const size_t dst = pair_index(gi, n, N);
      const float sc = w.scales[static_cast<size_t>(n) * G_src + gi];
      p.scales[dst] = f32_to_fp16(std::ldexp(sc, -e));
      if (p.has_zero) {
        const float z = w.zeros[static_cast<size_t>(n) * G_src + gi];
        const long zi = std::lround(z);
        if (zi < 0 || zi >= (1L << s.bits) || static_cast<float>(zi) != z)
          throw invalid_input(s.name + ": integer zero point " + std::to_string(z) + " out of range");
        p.zeros[dst] = static_cast<uint8_t>(zi);
      }
      if (p.float_zero) p.offsets[dst] = f32_to_fp16(std::ldexp(w.zeros[static_cast<size_t>(n) * G_src + gi], -f));
    }
  p.bias = w.bias;
  return p;
}

std::vector<float> unpack_int4_host(const Int4PackedHost& p) {
  const int64_t N = p.n, K = p.k, chunks = K / 64, tiles = N / 16;
  const int per_chunk = 32 * p.bits / 4;
  // Codes back to [N][K] in the kernel's (sorted) column order, walking the layout as pack does.
  std::vector<uint8_t> codes(static_cast<size_t>(N * K), 0);
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t c = 0; c < chunks; ++c) {
      const uint32_t* piece = p.words.data() + static_cast<size_t>((t * chunks + c) * per_chunk * 4);
      for (int lane = 0; lane < 32; ++lane) {
        const int64_t r = 16 * t + lane / 4;
        for (int j = 0; j < 4; ++j) {
          const int64_t ka = 64 * c + 32 * (j / 2) + 8 * (lane % 4) + 4 * (j % 2);
          if (p.bits == 4) {
            const uint32_t word = piece[lane * 4 + j];
            for (int i = 0; i < 8; ++i)
              codes[idx(r + 8 * (i & 1), ka + 2 * ((i >> 1) & 1) + (i >> 2), K)] = (word >> (4 * i)) & 0xFu;
          } else {
            const uint32_t* v = piece + ((j / 2) * 32 + lane) * 4 + 2 * (j % 2);
            const int64_t rr[4] = {r, r, r + 8, r + 8};
            const int64_t dk[4] = {0, 1, 0, 1};
            for (int b = 0; b < 4; ++b) {
              codes[idx(rr[b], ka + dk[b], K)] = (v[0] >> (8 * b)) & 0xFFu;
              codes[idx(rr[b], ka + 2 + dk[b], K)] = (v[1] >> (8 * b)) & 0xFFu;
            }
          }
        }
      }
    }
  const float mid = static_cast<float>(1 << (p.bits - 1));
  std::vector<float> out(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t ks = 0; ks < K; ++ks) {
      const int gi = p.group_size ? static_cast<int>(ks / p.group_size) : 0;
      const size_t at = pair_index(gi, n, N);
      const float scale = fp16_to_f32(p.scales[at]) * p.scale_mul;
      const float q = codes[idx(n, ks, K)];
      float v;
      if (p.float_zero) v = q * scale + fp16_to_f32(p.offsets[at]) * p.offset_mul;
      else if (p.has_zero) v = (q - static_cast<float>(p.zeros[at])) * scale;
      else v = (q - mid) * scale;
      out[idx(n, p.perm.empty() ? ks : p.perm[ks], K)] = v;
    }
  return out;
}

int choose_split(int64_t base, int64_t chunks, int sms, int64_t max_tiles, int chunk_align) {
  if (base <= 0 || chunks <= 0 || sms <= 0) return 1;
  double best_eff = -1.0;
  int best = 1;
  const double ideal = static_cast<double>(base) * chunks / sms;
  const int64_t max_split = std::min<int64_t>(16, (chunks + chunk_align - 1) / chunk_align);
  for (int s = 1; s <= max_split; ++s) {
    if (s > 1 && base * s > max_tiles) break;
    int64_t per = (chunks + s - 1) / s;
    per = (per + chunk_align - 1) / chunk_align * chunk_align;
    const int64_t used = (chunks + per - 1) / per;  // partitions actually non-empty
    if (used < s) continue;
    const int64_t blocks = base * s;
    const double t = static_cast<double>((blocks + sms - 1) / sms) * per;
    const double eff = ideal / t;
    if (eff > best_eff * 1.03) {
      best_eff = eff;
      best = s;
    }
  }
  return best;
}

bool split_k_fits(int64_t tiles, int64_t split, int64_t tile_floats, int64_t partial_floats, int64_t counters) {
  return split <= 1 || (tiles * split * tile_floats <= partial_floats && tiles <= counters);
}

bool stream_k_fits(int64_t tiles, int64_t grid, int64_t tile_floats, int64_t partial_floats, int64_t counters) {
  return grid * 2 * tile_floats <= partial_floats && tiles <= counters;
}

bool prefer_stream_k(int64_t tiles, int split, int64_t slots) {
  if (slots <= 0 || tiles * split <= slots) return false;  // one wave: nothing to balance
  if (split > 1) return true;
  const int64_t waves = (tiles + slots - 1) / slots;
  return tiles * 4 < waves * slots * 3;  // whole tiles, and the waves less than 3/4 full
}

int group_log2(int v) {
  int l = 0;
  while ((1 << l) < v) ++l;
  return l;
}

}  // namespace qrt::cuda
