// HIGGS as transformers saves a HiggsLinear (docs/HIGGS.md has the whole layout):
//   weight  I16 [N * bits / 16, K]   codes packed for FLUTE's kernels (below)
//   scales  F16/BF16 [N, K / group_size]
//   tables  [2^bits]                 the scalar grid (p = 1)
//   tables2 [2^bits, 2^bits, 2]      pairs: (tables[i], tables[j]) for p = 1, the 2-D grid point
//                                    i * 2^bits + j for p = 2
// plus the layer's entry of quantization_config.tune_metadata, whose template_id decides the packing.
//
// FLUTE packing (2 and 4 bits; V = 16 / bits values per 16-bit word, tile_p from the template):
// the per-element index matrix Q[K][N] (for p = 2 row 2r holds the high half of pair r's code,
// row 2r + 1 the low half) is stored so that word weight[c * tile_p + t][2a + s] holds, in its
// value slot j (bits j*bits .. j*bits+bits-1, LSB first), Q[2a + 1 - j % 2][n] with
// n = c * V * tile_p + (V / 2 * s + j / 2) * tile_p + t.
//
// Canonical form: WeightEncoding::RotatedCodebook, bits as configured, codebook_dim = p, the grid
// read from tables (p = 1) or tables2 (p = 2), groups of group_size, hadamard_size from the config.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

#include "qrt/dtype.h"
#include "qrt/error.h"
#include "quant/formats/codecs.h"

namespace qrt::quant {

namespace {

using nlohmann::json;

std::string str(int64_t v) { return std::to_string(v); }

// FLUTE (0.4) numbers its kernel templates per bit width in a fixed nesting: SM multiple (3) x tile
// shape (3) x pipeline stages (4) [x lookup-table mode (4), 4-bit only]. The tile shape is the
// part that changes the packing: the first tile shape packs 64 words per tile, the other two 32.
int flute_template_count(int bits) { return bits == 4 ? 144 : 36; }

int flute_tile_p(int bits, int64_t template_id) {
  const int64_t per_tile = bits == 4 ? 16 : 4;
  return (template_id / per_tile) % 3 == 0 ? 64 : 32;
}

int64_t metadata_int(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw invalid_input(where + "." + key + ": expected an integer");
  return j[key].get<int64_t>();
}

// Values of a 16-bit float tensor read as `as` (quantize_with_higgs relabels a bf16 grid as f16).
std::vector<float> read_grid(const TensorView& t, DType as) {
  if ((t.dtype == DType::F16 || t.dtype == DType::BF16) && as != t.dtype &&
      (as == DType::F16 || as == DType::BF16)) {
    TensorView relabelled = t;
    relabelled.dtype = as;
    return read_float_tensor(relabelled);
  }
  return read_float_tensor(t);
}

}  // namespace

HiggsLayout higgs_layout(const std::string& layer, const HiggsConfig& config, const std::string* tune_metadata,
                         int64_t out_features, int64_t in_features) {
  HiggsLayout l;
  l.bits = config.bits;
  l.p = config.p;
  l.group_size = config.group_size;
  l.hadamard_size = config.hadamard_size;
  const int64_t n = out_features, k = in_features;
  if (l.bits == 3)
    throw unsupported(layer + ": HIGGS 3-bit weights use FLUTE's 3-bit bit-plane packing, which qrt does not read");
  const int h = l.hadamard_size;
  if (h < 2 || (h & (h - 1)) != 0)
    throw invalid_input(layer + ": quantization_config.hadamard_size " + str(h) + " is not a power of 2");
  if (k % h != 0)
    throw invalid_input(layer + ": in_features " + str(k) + " is not a multiple of quantization_config.hadamard_size " +
                        str(h));
  if (!tune_metadata)
    throw invalid_input(layer + ": quantization_config.tune_metadata has no entry for this layer (its template_id "
                        "decides how the weight is packed)");
  const std::string where = layer + ": quantization_config.tune_metadata";
  json j;
  try {
    j = json::parse(*tune_metadata);
  } catch (const json::exception&) {
    throw invalid_input(where + ": not a JSON object");
  }
  if (!j.is_object()) throw invalid_input(where + ": not a JSON object");
  l.template_id = metadata_int(j, "template_id", where);
  if (l.template_id < 0 || l.template_id >= flute_template_count(l.bits))
    throw invalid_input(where + ".template_id: " + str(l.template_id) + " is outside FLUTE's " +
                        str(flute_template_count(l.bits)) + " templates for " + str(l.bits) + " bits");
  l.num_sms = metadata_int(j, "num_sms", where);
  if (l.num_sms <= 0 || l.num_sms > 4096) throw invalid_input(where + ".num_sms: " + str(l.num_sms) + " is not a GPU's SM count");
  const struct { const char* key; int64_t want; } must[] = {
      {"N", n}, {"K", k}, {"num_bits", l.bits}, {"group_size", l.group_size}};
  for (const auto& m : must) {
    const int64_t v = metadata_int(j, m.key, where);
    if (v != m.want)
      throw invalid_input(where + "." + m.key + ": " + str(v) + " does not match the layer's " + str(m.want));
  }
  l.tile_p = flute_tile_p(l.bits, l.template_id);
  const int64_t v = 16 / l.bits;
  if (n % (v * l.tile_p) != 0)
    throw invalid_input(layer + ": out_features " + str(n) + " is not a multiple of " + str(v * l.tile_p) +
                        " (FLUTE packs " + str(l.bits) + "-bit template " + str(l.template_id) + " in tiles of " +
                        str(l.tile_p) + " words)");
  if (k % 2 != 0 || k % l.group_size != 0)
    throw invalid_input(layer + ": in_features " + str(k) + " is not a multiple of group_size " + str(l.group_size));
  return l;
}

std::vector<float> read_higgs_codebook(const std::string& layer, const TensorParts& parts, const HiggsLayout& l,
                                       DType scale_dtype) {
  const int64_t q = int64_t{1} << l.bits;
  if (l.p == 1) {
    const TensorView& t = require_part(parts, layer, "tables", "HIGGS p=1 grid");
    expect_shape(t, {q}, "2^bits grid values");
    return read_grid(t, scale_dtype);
  }
  const TensorView& t = require_part(parts, layer, "tables2", "HIGGS p=2 grid");
  expect_shape(t, {q, q, 2}, "2^bits x 2^bits grid points of 2 values");
  return read_grid(t, scale_dtype);   // point i * 2^bits + j at [i][j]: already in code order
}

QuantizedWeight decode_higgs(const std::string& layer, const TensorParts& parts, const HiggsLayout& l,
                             int64_t out_features, int64_t in_features) {
  const int64_t n = out_features, k = in_features;
  const int v = 16 / l.bits;
  if ((l.bits != 2 && l.bits != 4) || l.tile_p <= 0 || n % (v * l.tile_p) != 0 || k % 2 != 0 || l.group_size <= 0 ||
      k % l.group_size != 0 || l.group_size % l.p != 0)
    throw invalid_input(layer + ": HIGGS layout (bits " + str(l.bits) + ", tile " + str(l.tile_p) + ", group " +
                        str(l.group_size) + ") does not fit [" + str(n) + ", " + str(k) + "]");
  const TensorView& wt = require_part(parts, layer, "weight", "FLUTE-packed codes");
  expect_dtype(wt, {DType::I16});
  expect_shape(wt, {n / v, k}, "[out_features * bits / 16, in_features]");
  const TensorView& st = require_part(parts, layer, "scales", "group scales");
  expect_dtype(st, {DType::F16, DType::BF16, DType::F32});
  expect_shape(st, {n, k / l.group_size}, "[out_features, in_features / group_size]");

  QuantizedWeight w;
  w.spec.name = layer;
  w.spec.in_features = k;
  w.spec.out_features = n;
  w.spec.encoding = WeightEncoding::RotatedCodebook;
  w.spec.bits = l.bits;
  w.spec.group_size = l.group_size >= k ? -1 : l.group_size;
  w.spec.zero_kind = ZeroKind::Symmetric;
  w.spec.codebook_dim = l.p;
  w.spec.hadamard_size = l.hadamard_size;
  w.spec.source_format = "higgs";
  w.spec.codebook = read_higgs_codebook(layer, parts, l, st.dtype);
  w.scales = read_float_tensor(st);

  // Q[k][n], one index per byte, then codes[n][k].
  std::vector<uint8_t> idx(static_cast<size_t>(n * k));
  const uint8_t* words = wt.bytes.data();
  const uint32_t mask = (1u << l.bits) - 1u;
  const int64_t rows = n / v;
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / l.tile_p, t = row % l.tile_p;
    for (int64_t kk = 0; kk < k; ++kk) {
      uint16_t word;
      std::memcpy(&word, words + 2 * (row * k + kk), 2);
      const int64_t a = kk / 2, s = kk % 2;
      for (int j = 0; j < v; ++j) {
        const int64_t kq = 2 * a + 1 - j % 2;
        const int64_t nq = c * v * l.tile_p + (v / 2 * s + j / 2) * l.tile_p + t;
        idx[nq * k + kq] = static_cast<uint8_t>((word >> (j * l.bits)) & mask);
      }
    }
  }
  w.codes.resize(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t kk = 0; kk < k; ++kk) {
      if (l.p == 1) {
        w.codes[r * k + kk] = idx[r * k + kk];
      } else {
        const int64_t base = kk - kk % 2;
        w.codes[r * k + kk] = static_cast<uint8_t>((idx[r * k + base] << l.bits) | idx[r * k + base + 1]);
      }
    }
  if (const TensorView* b = find_part(parts, "bias")) {
    expect_shape(*b, {n}, "[out_features]");
    w.bias = read_float_tensor(*b);
  }
  w.validate();
  return w;
}

std::vector<EncodedTensor> encode_higgs(const QuantizedWeight& w, const HiggsLayout& l, DType dtype) {
  const int64_t n = w.N(), k = w.K();
  const int v = 16 / l.bits;
  const int64_t q = int64_t{1} << l.bits;
  std::vector<uint8_t> idx(static_cast<size_t>(n * k));   // Q as [n][k]
  for (int64_t r = 0; r < n; ++r)
    for (int64_t kk = 0; kk < k; ++kk) {
      const uint8_t code = w.codes[r * k + kk];
      idx[r * k + kk] = l.p == 1 ? code : static_cast<uint8_t>(kk % 2 == 0 ? code >> l.bits : code & (q - 1));
    }
  std::vector<uint16_t> words(static_cast<size_t>(n / v * k), 0);
  for (int64_t row = 0; row < n / v; ++row) {
    const int64_t c = row / l.tile_p, t = row % l.tile_p;
    for (int64_t kk = 0; kk < k; ++kk) {
      const int64_t a = kk / 2, s = kk % 2;
      uint32_t word = 0;
      for (int j = 0; j < v; ++j) {
        const int64_t kq = 2 * a + 1 - j % 2;
        const int64_t nq = c * v * l.tile_p + (v / 2 * s + j / 2) * l.tile_p + t;
        word |= static_cast<uint32_t>(idx[nq * k + kq]) << (j * l.bits);
      }
      words[row * k + kk] = static_cast<uint16_t>(word);
    }
  }
  std::vector<EncodedTensor> out;
  EncodedTensor wt{"weight", DType::I16, {n / v, k}, {}};
  wt.data.resize(words.size() * 2);
  if (!words.empty()) std::memcpy(wt.data.data(), words.data(), wt.data.size());
  out.push_back(std::move(wt));
  out.push_back(make_float_tensor("scales", dtype, {n, w.spec.num_groups()}, w.scales));
  std::vector<float> tables(static_cast<size_t>(q)), tables2(static_cast<size_t>(q * q * 2));
  if (l.p == 1) {
    tables = w.spec.codebook;
    for (int64_t i = 0; i < q; ++i)
      for (int64_t j = 0; j < q; ++j) {
        tables2[(i * q + j) * 2] = tables[i];
        tables2[(i * q + j) * 2 + 1] = tables[j];
      }
  } else {
    for (int64_t i = 0; i < q; ++i) tables[i] = static_cast<float>(i);   // unused by p = 2 kernels
    tables2 = w.spec.codebook;
  }
  out.push_back(make_float_tensor("tables", dtype, {q}, tables));
  out.push_back(make_float_tensor("tables2", dtype, {q, q, 2}, tables2));
  if (!w.bias.empty()) out.push_back(make_float_tensor("bias", dtype, {n}, w.bias));
  return out;
}

int64_t higgs_flute_tile_rows(int bits, int64_t template_id) {
  if ((bits != 2 && bits != 4) || template_id < 0 || template_id >= flute_template_count(bits)) return -1;
  return int64_t{16 / bits} * flute_tile_p(bits, template_id);
}

std::string higgs_tune_metadata_json(const HiggsLayout& l, int64_t out_features, int64_t in_features,
                                     const std::string& torch_dtype) {
  json j;
  j["M"] = 1;
  j["N"] = out_features;
  j["K"] = in_features;
  j["num_bits"] = l.bits;
  j["group_size"] = l.group_size;
  j["num_sms"] = l.num_sms;
  j["dtype"] = torch_dtype;
  j["device"] = "cuda:0";
  j["template_id"] = l.template_id;
  return j.dump();
}

}  // namespace qrt::quant
