// GGUF block decoding (docs/CHECKPOINTS.md, GGUF: blocks): direct dequantization and conversion to QuantizedWeight.
// Both paths evaluate the same float expressions in the same order, so dequantize_reference() of the
// canonical weight equals the direct dequantization exactly.
#include "quant/formats/gguf_blocks.h"

#include <cstring>
#include <iterator>

#include "qrt/dtype.h"
#include "qrt/error.h"

namespace qrt::quant {

namespace {

constexpr int kQKK = 256;
// The 16 levels of ggml's IQ4 (non-linear 4-bit) types, shared by IQ4_NL and IQ4_XS.
constexpr float kIq4Grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float load_f16(const uint8_t* p) { return fp16_to_f32(load_u16(p)); }

// 6-bit scale and min of sub-block j of a Q4_K block (get_scale_min_k4).
void q4k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// One block's codes (unsigned), per-group scales and zeros in canonical form. Groups per block:
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL: 1; Q4_K, Q5_K, IQ4_XS: 8 (of 32); Q2_K, Q3_K, Q6_K: 16 (of 16).
struct BlockCanon {
  uint8_t codes[kQKK];
  float scales[16];
  float zeros[16];
};

void canon_q4_0(const uint8_t* b, BlockCanon& c) {
  c.scales[0] = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    c.codes[j] = qs[j] & 0xF;
    c.codes[j + 16] = qs[j] >> 4;
  }
}
void canon_q4_1(const uint8_t* b, BlockCanon& c) {
  c.scales[0] = load_f16(b);
  c.zeros[0] = load_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    c.codes[j] = qs[j] & 0xF;
    c.codes[j + 16] = qs[j] >> 4;
  }
}
void canon_q8_0(const uint8_t* b, BlockCanon& c) {
  c.scales[0] = load_f16(b);
  for (int j = 0; j < 32; ++j) c.codes[j] = static_cast<uint8_t>(static_cast<int8_t>(b[2 + j]) + 128);
}
void canon_q4_k(const uint8_t* b, BlockCanon& c) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    q4k_scale_min(j, scales, &sc, &mn);
    c.scales[j] = d * sc;
    c.zeros[j] = -(dmin * mn);
  }
  for (int chunk = 0; chunk < 4; ++chunk)
    for (int l = 0; l < 32; ++l) {
      c.codes[64 * chunk + l] = qs[32 * chunk + l] & 0xF;
      c.codes[64 * chunk + 32 + l] = qs[32 * chunk + l] >> 4;
    }
}
void canon_q6_k(const uint8_t* b, BlockCanon& c) {
  const uint8_t* ql_all = b;
  const uint8_t* qh_all = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  // Element e of the block uses scales[e / 16] (the (l / 16) + 2i indexing of §9.3 flattens to this).
  for (int j = 0; j < 16; ++j) c.scales[j] = d * sc[j];
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = ql_all + 64 * h;
    const uint8_t* qh = qh_all + 32 * h;
    uint8_t* y = c.codes + 128 * h;
    for (int l = 0; l < 32; ++l) {
      y[l] = static_cast<uint8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
      y[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      y[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      y[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}

// The 5th bit of element j of a Q5_0 / Q5_1 block: bit j of the little-endian qh word.
inline uint8_t q5_high_bit(const uint8_t* qh, int j) { return static_cast<uint8_t>((qh[j >> 3] >> (j & 7)) & 1); }

void canon_q5_0(const uint8_t* b, BlockCanon& c) {
  c.scales[0] = load_f16(b);
  const uint8_t* qh = b + 2;
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    c.codes[j] = static_cast<uint8_t>((qs[j] & 0xF) | (q5_high_bit(qh, j) << 4));
    c.codes[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | (q5_high_bit(qh, j + 16) << 4));
  }
}
void canon_q5_1(const uint8_t* b, BlockCanon& c) {
  c.scales[0] = load_f16(b);
  c.zeros[0] = load_f16(b + 2);
  const uint8_t* qh = b + 4;
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    c.codes[j] = static_cast<uint8_t>((qs[j] & 0xF) | (q5_high_bit(qh, j) << 4));
    c.codes[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | (q5_high_bit(qh, j + 16) << 4));
  }
}
void canon_q5_k(const uint8_t* b, BlockCanon& c) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    q4k_scale_min(j, scales, &sc, &mn);
    c.scales[j] = d * sc;
    c.zeros[j] = -(dmin * mn);
  }
  // Sub-block j's 5th bits are bit j of the 32 qh bytes.
  for (int chunk = 0; chunk < 4; ++chunk)
    for (int l = 0; l < 32; ++l) {
      const int lo = 2 * chunk, hi = 2 * chunk + 1;
      c.codes[64 * chunk + l] = static_cast<uint8_t>((qs[32 * chunk + l] & 0xF) | (((qh[l] >> lo) & 1) << 4));
      c.codes[64 * chunk + 32 + l] = static_cast<uint8_t>((qs[32 * chunk + l] >> 4) | (((qh[l] >> hi) & 1) << 4));
    }
}
void canon_q2_k(const uint8_t* b, BlockCanon& c) {
  const uint8_t* sc = b;
  const uint8_t* qs = b + 16;
  const float d = load_f16(b + 80), dmin = load_f16(b + 82);
  for (int j = 0; j < 16; ++j) {
    c.scales[j] = d * static_cast<float>(sc[j] & 0xF);
    c.zeros[j] = -(dmin * static_cast<float>(sc[j] >> 4));
  }
  // Element e: 2-bit field e / 32 % 4 of byte 32 * (e / 128) + e % 32.
  for (int e = 0; e < kQKK; ++e)
    c.codes[e] = static_cast<uint8_t>((qs[32 * (e / 128) + e % 32] >> (2 * (e / 32 % 4))) & 3);
}
// 6-bit scale j (0..15) of a Q3_K block, unsigned (the value is this minus 32): low 4 bits from
// byte j % 8 (low nibble for j < 8, high for j >= 8), high 2 bits from byte 8 + j % 4, field j / 4.
inline int q3k_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return lo | (hi << 4);
}
void canon_q3_k(const uint8_t* b, BlockCanon& c) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = load_f16(b + 108);
  for (int j = 0; j < 16; ++j) c.scales[j] = d * static_cast<float>(q3k_scale(sc, j) - 32);
  // Element e: low 2 bits as in Q2_K, high bit = bit (e / 32) of hmask[e % 32]; a set high bit means
  // "no -4 offset", so code = low + 4 * high and value = (code - 4) * scale.
  for (int e = 0; e < kQKK; ++e) {
    const int low = (qs[32 * (e / 128) + e % 32] >> (2 * (e / 32 % 4))) & 3;
    const int high = (hmask[e % 32] >> (e / 32)) & 1;
    c.codes[e] = static_cast<uint8_t>(low | (high << 2));
  }
}
void canon_iq4_nl(const uint8_t* b, BlockCanon& c) {
  c.scales[0] = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    c.codes[j] = qs[j] & 0xF;
    c.codes[j + 16] = qs[j] >> 4;
  }
}
// 6-bit scale of sub-block j (0..7) of an IQ4_XS block, unsigned (the value is this minus 32).
inline int iq4xs_scale(const uint8_t* b, int j) {
  const int scales_h = load_u16(b + 2);
  return ((b[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4);
}
void canon_iq4_xs(const uint8_t* b, BlockCanon& c) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 8; ++j) {
    c.scales[j] = d * static_cast<float>(iq4xs_scale(b, j) - 32);
    for (int l = 0; l < 16; ++l) {
      c.codes[32 * j + l] = qs[16 * j + l] & 0xF;
      c.codes[32 * j + 16 + l] = qs[16 * j + l] >> 4;
    }
  }
}

struct Canon {
  int bits;
  int group;  // elements per group
  ZeroKind zero;
  void (*decode)(const uint8_t*, BlockCanon&);
  bool iq4_grid = false;  // codes index the IQ4 non-linear grid (WeightEncoding::Codebook)
};

bool canon_of(GgmlType t, Canon* out) {
  switch (t) {
    case GgmlType::Q4_0: *out = {4, 32, ZeroKind::Symmetric, canon_q4_0}; return true;
    case GgmlType::Q4_1: *out = {4, 32, ZeroKind::Float, canon_q4_1}; return true;
    case GgmlType::Q8_0: *out = {8, 32, ZeroKind::Symmetric, canon_q8_0}; return true;
    case GgmlType::Q4_K: *out = {4, 32, ZeroKind::Float, canon_q4_k}; return true;
    case GgmlType::Q6_K: *out = {6, 16, ZeroKind::Symmetric, canon_q6_k}; return true;
    case GgmlType::Q5_0: *out = {5, 32, ZeroKind::Symmetric, canon_q5_0}; return true;
    case GgmlType::Q5_1: *out = {5, 32, ZeroKind::Float, canon_q5_1}; return true;
    case GgmlType::Q5_K: *out = {5, 32, ZeroKind::Float, canon_q5_k}; return true;
    case GgmlType::Q2_K: *out = {2, 16, ZeroKind::Float, canon_q2_k}; return true;
    case GgmlType::Q3_K: *out = {3, 16, ZeroKind::Symmetric, canon_q3_k}; return true;
    case GgmlType::IQ4_NL: *out = {4, 32, ZeroKind::Symmetric, canon_iq4_nl, true}; return true;
    case GgmlType::IQ4_XS: *out = {4, 32, ZeroKind::Symmetric, canon_iq4_xs, true}; return true;
    default: return false;
  }
}

}  // namespace

bool gguf_has_canonical_form(GgmlType t) {
  Canon c;
  return canon_of(t, &c);
}

bool gguf_canonical_spec(GgmlType t, LayerSpec* spec) {
  Canon c;
  if (!canon_of(t, &c)) return false;
  spec->encoding = c.iq4_grid ? WeightEncoding::Codebook : WeightEncoding::IntAffine;
  spec->bits = c.bits;
  spec->group_size = c.group;
  spec->zero_kind = c.zero;
  spec->codebook.clear();
  if (c.iq4_grid) spec->codebook.assign(std::begin(kIq4Grid), std::end(kIq4Grid));
  return true;
}

std::string gguf_supported_types() {
  std::string out = "F32, F16, BF16, F64";
  for (uint32_t id = 0; id < 64; ++id) {
    Canon c;
    if (canon_of(static_cast<GgmlType>(id), &c)) out += ", " + ggml_type_name(static_cast<GgmlType>(id));
  }
  return out;
}

bool gguf_can_dequantize(GgmlType t) {
  return gguf_has_canonical_form(t) || t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16 ||
         t == GgmlType::F64;
}

void gguf_dequantize(GgmlType t, std::span<const uint8_t> src, std::span<float> dst, const std::string& what) {
  if (!gguf_can_dequantize(t))
    throw unsupported(what + ": dequantizing ggml type " + ggml_type_name(t) + " is not supported");
  const int64_t block = ggml_block_size(t), tsize = ggml_type_size(t);
  const uint64_t n = dst.size();
  if (n % block != 0 || src.size() != n / block * tsize)
    throw invalid_input(what + ": " + std::to_string(src.size()) + " bytes of " + ggml_type_name(t) + " do not hold " +
                        std::to_string(n) + " values");
  const uint8_t* p = src.data();
  float* y = dst.data();
  switch (t) {
    case GgmlType::F32:
      if (n) std::memcpy(y, p, n * 4);
      return;
    case GgmlType::F16:
      for (uint64_t i = 0; i < n; ++i) y[i] = load_f16(p + 2 * i);
      return;
    case GgmlType::BF16:
      for (uint64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(load_u16(p + 2 * i));
      return;
    case GgmlType::F64:
      for (uint64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        y[i] = static_cast<float>(v);
      }
      return;
    default: break;
  }
  // Direct block formulas of §9.3, written as ggml states them.
  for (uint64_t blk = 0; blk < n / block; ++blk, p += tsize, y += block) {
    switch (t) {
      case GgmlType::Q4_0: {
        const float d = load_f16(p);
        for (int j = 0; j < 16; ++j) {
          y[j] = static_cast<float>((p[2 + j] & 0xF) - 8) * d;
          y[j + 16] = static_cast<float>((p[2 + j] >> 4) - 8) * d;
        }
        break;
      }
      case GgmlType::Q4_1: {
        const float d = load_f16(p), m = load_f16(p + 2);
        for (int j = 0; j < 16; ++j) {
          y[j] = static_cast<float>(p[4 + j] & 0xF) * d + m;
          y[j + 16] = static_cast<float>(p[4 + j] >> 4) * d + m;
        }
        break;
      }
      case GgmlType::Q8_0: {
        const float d = load_f16(p);
        for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(p[2 + j])) * d;
        break;
      }
      case GgmlType::Q4_K: {
        const float d = load_f16(p), dmin = load_f16(p + 2);
        const uint8_t* scales = p + 4;
        const uint8_t* q = p + 16;
        float* out = y;
        for (int c = 0; c < 4; ++c, q += 32, out += 64) {
          uint8_t sc, mn;
          q4k_scale_min(2 * c, scales, &sc, &mn);
          const float d1 = d * sc, m1 = dmin * mn;
          q4k_scale_min(2 * c + 1, scales, &sc, &mn);
          const float d2 = d * sc, m2 = dmin * mn;
          for (int l = 0; l < 32; ++l) out[l] = d1 * static_cast<float>(q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l) out[l + 32] = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
        break;
      }
      case GgmlType::Q6_K: {
        const float d = load_f16(p + 208);
        for (int h = 0; h < 2; ++h) {
          const uint8_t* ql = p + 64 * h;
          const uint8_t* qh = p + 128 + 32 * h;
          const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192 + 8 * h);
          float* out = y + 128 * h;
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            out[l] = d * sc[is + 0] * static_cast<float>(q1);
            out[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
            out[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
            out[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
          }
        }
        break;
      }
      case GgmlType::Q5_0:
      case GgmlType::Q5_1: {
        const bool has_min = t == GgmlType::Q5_1;
        const float d = load_f16(p), m = has_min ? load_f16(p + 2) : 0.0f;
        uint32_t qh;
        std::memcpy(&qh, p + (has_min ? 4 : 2), 4);
        const uint8_t* qs = p + (has_min ? 8 : 6);
        for (int j = 0; j < 16; ++j) {
          const int x0 = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
          const int x1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
          if (has_min) {
            y[j] = static_cast<float>(x0) * d + m;
            y[j + 16] = static_cast<float>(x1) * d + m;
          } else {
            y[j] = static_cast<float>(x0 - 16) * d;
            y[j + 16] = static_cast<float>(x1 - 16) * d;
          }
        }
        break;
      }
      case GgmlType::Q5_K: {
        const float d = load_f16(p), dmin = load_f16(p + 2);
        const uint8_t* scales = p + 4;
        const uint8_t* qh = p + 16;
        const uint8_t* q = p + 48;
        float* out = y;
        for (int c = 0; c < 4; ++c, q += 32, out += 64) {
          uint8_t sc, mn;
          q4k_scale_min(2 * c, scales, &sc, &mn);
          const float d1 = d * sc, m1 = dmin * mn;
          q4k_scale_min(2 * c + 1, scales, &sc, &mn);
          const float d2 = d * sc, m2 = dmin * mn;
          const uint8_t u1 = static_cast<uint8_t>(1 << (2 * c)), u2 = static_cast<uint8_t>(2 << (2 * c));
          for (int l = 0; l < 32; ++l) out[l] = d1 * static_cast<float>((q[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
          for (int l = 0; l < 32; ++l) out[l + 32] = d2 * static_cast<float>((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
        break;
      }
      case GgmlType::Q2_K: {
        const float d = load_f16(p + 80), dmin = load_f16(p + 82);
        const uint8_t* sc = p;
        const uint8_t* q = p + 16;
        float* out = y;
        int is = 0;
        for (int half = 0; half < 2; ++half, q += 32)
          for (int shift = 0; shift < 8; shift += 2)
            for (int part = 0; part < 2; ++part, ++is) {
              const float dl = d * static_cast<float>(sc[is] & 0xF), ml = dmin * static_cast<float>(sc[is] >> 4);
              for (int l = 0; l < 16; ++l) *out++ = dl * static_cast<float>((q[16 * part + l] >> shift) & 3) - ml;
            }
        break;
      }
      case GgmlType::Q3_K: {
        const uint8_t* hm = p;
        const uint8_t* q = p + 32;
        const float d = load_f16(p + 108);
        float* out = y;
        int is = 0;
        uint8_t mask = 1;
        for (int half = 0; half < 2; ++half, q += 32)
          for (int shift = 0; shift < 8; shift += 2, mask = static_cast<uint8_t>(mask << 1))
            for (int part = 0; part < 2; ++part, ++is) {
              const float dl = d * static_cast<float>(q3k_scale(p + 96, is) - 32);
              for (int l = 0; l < 16; ++l) {
                const int low = (q[16 * part + l] >> shift) & 3;
                *out++ = dl * static_cast<float>(low - ((hm[16 * part + l] & mask) ? 0 : 4));
              }
            }
        break;
      }
      case GgmlType::IQ4_NL: {
        const float d = load_f16(p);
        for (int j = 0; j < 16; ++j) {
          y[j] = d * kIq4Grid[p[2 + j] & 0xF];
          y[j + 16] = d * kIq4Grid[p[2 + j] >> 4];
        }
        break;
      }
      case GgmlType::IQ4_XS: {
        const float d = load_f16(p);
        const uint8_t* qs = p + 8;
        for (int ib = 0; ib < 8; ++ib, qs += 16) {
          const float dl = d * static_cast<float>(iq4xs_scale(p, ib) - 32);
          for (int j = 0; j < 16; ++j) {
            y[32 * ib + j] = dl * kIq4Grid[qs[j] & 0xF];
            y[32 * ib + j + 16] = dl * kIq4Grid[qs[j] >> 4];
          }
        }
        break;
      }
      default: break;
    }
  }
}

std::vector<float> gguf_dequantize_tensor(const GgufFile& file, const GgufTensorInfo& info) {
  std::vector<float> out(static_cast<size_t>(info.numel()));
  gguf_dequantize(info.type, file.tensor_data(info), out, file.path() + ": tensor '" + info.name + "'");
  return out;
}

QuantizedWeight gguf_to_quantized_weight(GgmlType t, std::span<const uint8_t> data, int64_t in_features,
                                         int64_t out_features, const std::string& name) {
  Canon canon;
  if (!canon_of(t, &canon))
    throw unsupported(name + ": ggml type " + ggml_type_name(t) + " has no canonical quantized form");
  const int64_t block = ggml_block_size(t), tsize = ggml_type_size(t);
  const int64_t K = in_features, N = out_features;
  if (K <= 0 || N <= 0 || K % block != 0)
    throw invalid_input(name + ": in_features " + std::to_string(K) + " must be a positive multiple of the " +
                        ggml_type_name(t) + " block size " + std::to_string(block));
  if (K > (int64_t{1} << 31) || N > (int64_t{1} << 31))
    throw invalid_input(name + ": dimensions " + std::to_string(N) + " x " + std::to_string(K) + " are too large");
  const int64_t blocks_per_row = K / block;
  if (static_cast<uint64_t>(N * blocks_per_row * tsize) != data.size())
    throw invalid_input(name + ": " + std::to_string(data.size()) + " bytes of " + ggml_type_name(t) +
                        " do not hold a " + std::to_string(N) + " x " + std::to_string(K) + " matrix");
  QuantizedWeight w;
  w.spec.name = name;
  w.spec.in_features = K;
  w.spec.out_features = N;
  gguf_canonical_spec(t, &w.spec);
  w.spec.source_format = "gguf:" + ggml_type_name(t);
  const int64_t groups = K / canon.group, groups_per_block = block / canon.group;
  w.codes.resize(static_cast<size_t>(N * K));
  w.scales.resize(static_cast<size_t>(N * groups));
  if (canon.zero != ZeroKind::Symmetric) w.zeros.resize(static_cast<size_t>(N * groups));
  BlockCanon bc;
  const uint8_t* p = data.data();
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t b = 0; b < blocks_per_row; ++b, p += tsize) {
      canon.decode(p, bc);
      std::memcpy(&w.codes[r * K + b * block], bc.codes, static_cast<size_t>(block));
      for (int64_t g = 0; g < groups_per_block; ++g) {
        w.scales[r * groups + b * groups_per_block + g] = bc.scales[g];
        if (!w.zeros.empty()) w.zeros[r * groups + b * groups_per_block + g] = bc.zeros[g];
      }
    }
  }
  w.validate();
  return w;
}

QuantizedWeight gguf_to_quantized_weight(const GgufFile& file, const GgufTensorInfo& info, const std::string& name) {
  const int64_t K = info.ne.empty() ? 1 : info.ne[0];
  const int64_t N = K == 0 ? 0 : info.numel() / K;
  return gguf_to_quantized_weight(info.type, file.tensor_data(info), K, N,
                                  name.empty() ? file.path() + ": tensor '" + info.name + "'" : name);
}

}  // namespace qrt::quant
