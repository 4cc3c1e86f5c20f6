// The GPU engine's own fused kernels (src/model/cuda/kernels.h) against references in
// double on fresh seeded random data, outputs poisoned (NaN) before every call:
// - rope_store_decode_attention (RoPE + KV store + split attention over GQA groups) and
//   rope_store_short_attention (the same, one block per query head over the whole context) at awkward
//   shapes (head_dim 8 ... 256, groups 1 ... 8, 1 ... 8 rows), contexts from the first position to
//   thousands (one tile, many tiles, spread over parts and merged), sliding windows (narrower than
//   the rows too), against RoPE + softmax attention in double, against the unfused kernels
//   (rope_store + attention), and replayed from a CUDA graph as the position advances; the cache
//   must hold exactly the new keys and values and nothing else may change;
// - embed_rmsnorm against the formula and bit for bit against embed + add_rmsnorm, with and
//   without Gemma-2's embedding scale;
// - rmsnorm_head_argmax and argmax: logits against the formula, the token against the host's
//   greedy rule (qrt::greedy_token) with ties, NaN rows and an all-NaN vocabulary, and the
//   feedback of on-device generation;
// - Gemma-2's rules: attention (per row, split and fused) with a score scale, the soft-cap and a
//   window against the reference; gelu_tanh_mul, rmsnorm_half and softcap against the CPU
//   engine's ops;
// - the batched engine's paged kernels (paged_rope_store, paged_attention) against RoPE + softmax
//   attention in double through block tables dealt out of order: rows of several sequences in one
//   step, decode rows at a block's first and last position, prompt chunks across block edges,
//   GQA, windows, the score scale and soft-cap, split rows merged, fp16 and fp8 pools; every slot
//   but the step's new keys and values must be left as it was.
// Skipped with the reason without a GPU (but the host-only check of the paged splits).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#ifdef QRT_WITH_CUDA
#include "gpu/runtime.h"
#include "support/cuda_test_support.h"
#include "model/cuda/kernels.h"
#include "model/ops.h"
#include "qrt/dtype.h"
#include "qrt/sampler.h"

namespace qrt {
namespace {

using cuda::DeviceBuffer;

#define QRT_SKIP_WITHOUT_GPU()                                  \
  do {                                                          \
    std::string why_;                                           \
    if (!cuda_test::gpu_available(&why_)) GTEST_SKIP() << why_; \
  } while (0)

constexpr uint16_t kHalfNaN = 0x7E00;

uint16_t h(float v) { return f32_to_fp16(v); }
float f(uint16_t v) { return fp16_to_f32(v); }

std::vector<uint16_t> random_halves(size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<uint16_t> out(n);
  for (auto& v : out) v = h(d(rng));
  return out;
}

template <class T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  std::vector<T> out(n);
  QRT_CUDA_CHECK(cudaDeviceSynchronize());
  QRT_CUDA_CHECK(cudaMemcpy(out.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return out;
}
template <class T>
void upload_to(DeviceBuffer& b, const std::vector<T>& v) {
  QRT_CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}

// The stream of every launch: a blocking stream, so that it is ordered with the synchronous
// cudaMemcpy / cudaMemset calls of the tests (legacy default stream) as those are with it.
cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t t = nullptr;
    QRT_CUDA_CHECK(cudaStreamCreate(&t));
    return t;
  }();
  return s;
}

int sm_count() {
  int sms = 0;
  QRT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  return sms;
}

// ---- fused decode attention ----

struct AttnCase {
  int64_t heads, kv_heads, hd, rows, pos0, window;
  int parts;  // DecodeAttentionScratch::group_splits (the grid's depth)
  bool fp8 = false;
  float scale = 0.f;    // the score scale; 0: 1 / sqrt(hd)
  float softcap = 0.f;  // scores s -> softcap * tanh(s / softcap) (Gemma-2); 0: none
  float score_scale() const { return scale > 0 ? scale : 1.f / std::sqrt(static_cast<float>(hd)); }
};

std::string describe(const AttnCase& c) {
  return "heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " hd " + std::to_string(c.hd) +
         " rows " + std::to_string(c.rows) + " pos0 " + std::to_string(c.pos0) + " window " + std::to_string(c.window) +
         " parts " + std::to_string(c.parts) + (c.fp8 ? " fp8 cache" : " fp16 cache") + " scale " +
         std::to_string(c.score_scale()) + " softcap " + std::to_string(c.softcap);
}

// The cache's elements as raw bytes: fp16 (2 bytes) or fp8 e4m3 (1 byte), as the host rounds them
// (to nearest even; fp8 saturating at 448, as the device's conversion).
struct CacheCodes {
  bool fp8 = false;
  std::vector<uint8_t> raw;
  int bytes() const { return fp8 ? 1 : 2; }
  size_t size() const { return raw.size() / bytes(); }
  void resize(size_t n) { raw.assign(n * bytes(), 0); }
  uint16_t code(size_t i) const { return fp8 ? raw[i] : static_cast<uint16_t>(raw[2 * i] | raw[2 * i + 1] << 8); }
  void set_code(size_t i, uint16_t c) {
    if (fp8) {
      raw[i] = static_cast<uint8_t>(c);
    } else {
      raw[2 * i] = static_cast<uint8_t>(c & 0xFF);
      raw[2 * i + 1] = static_cast<uint8_t>(c >> 8);
    }
  }
  float get(size_t i) const { return fp8 ? fp8_e4m3_to_f32(raw[i]) : f(code(i)); }
  void set(size_t i, float v) { set_code(i, fp8 ? f32_to_fp8_e4m3(v) : h(v)); }
  void poison(size_t i) { set_code(i, fp8 ? 0x7F : kHalfNaN); }
  // Two codes a rounding step apart at most (sign and magnitude).
  bool within_one_step(size_t i, uint16_t other) const {
    const uint16_t a = code(i), sign = fp8 ? 0x80 : 0x8000;
    auto value = [&](uint16_t c) { return (c & sign) ? -static_cast<int>(c & (sign - 1)) : static_cast<int>(c); };
    return std::abs(value(a) - value(other)) <= 1;
  }
};

struct AttnData {
  AttnCase c;
  int64_t cap = 0, q_dim = 0, kv_dim = 0, stride = 0;
  ops::RopeTable rope;
  std::vector<uint16_t> qkv;  // rows [rows][q | k | v], fp16
  CacheCodes kcache, vcache;  // [kv_head][cap][hd]
};

AttnData make_attn_data(const AttnCase& c, std::mt19937& rng, int64_t slack = 5) {
  AttnData a;
  a.c = c;
  a.cap = c.pos0 + c.rows + slack;  // positions past the step's stay untouched
  a.q_dim = c.heads * c.hd;
  a.kv_dim = c.kv_heads * c.hd;
  a.stride = a.q_dim + 2 * a.kv_dim;
  std::vector<float> inv(static_cast<size_t>(c.hd / 2));
  for (size_t i = 0; i < inv.size(); ++i) inv[i] = 1.0f / std::pow(10000.f, static_cast<float>(2 * i) / c.hd);
  a.rope.build(inv, a.cap);
  a.qkv = random_halves(static_cast<size_t>(c.rows * a.stride), rng, -1.5f, 1.5f);
  std::uniform_real_distribution<float> kd(-1.5f, 1.5f), vd(-1.f, 1.f);
  for (CacheCodes* cc : {&a.kcache, &a.vcache}) {
    cc->fp8 = c.fp8;
    cc->resize(static_cast<size_t>(c.kv_heads * a.cap * c.hd));
  }
  for (int64_t g = 0; g < c.kv_heads; ++g)
    for (int64_t p = 0; p < a.cap; ++p)
      for (int64_t d = 0; d < c.hd; ++d) {
        const size_t e = static_cast<size_t>((g * a.cap + p) * c.hd + d);
        if (p < c.pos0) {
          a.kcache.set(e, kd(rng));
          a.vcache.set(e, vd(rng));
        } else {  // positions the step writes, and beyond: poisoned
          a.kcache.poison(e);
          a.vcache.poison(e);
        }
      }
  return a;
}

// The cache after the step, as the reference sees it: rotated new keys (rounded once from float),
// new values (from fp16).
void reference_store(const AttnData& a, CacheCodes& kc, CacheCodes& vc) {
  const AttnCase& c = a.c;
  kc = a.kcache;
  vc = a.vcache;
  const int64_t half = c.hd / 2;
  for (int64_t i = 0; i < c.rows; ++i)
    for (int64_t g = 0; g < c.kv_heads; ++g) {
      const uint16_t* k = &a.qkv[i * a.stride + a.q_dim + g * c.hd];
      const uint16_t* v = &a.qkv[i * a.stride + a.q_dim + a.kv_dim + g * c.hd];
      const int64_t p = c.pos0 + i;
      const size_t row = static_cast<size_t>((g * a.cap + p) * c.hd);
      for (int64_t d = 0; d < half; ++d) {
        const float cs = a.rope.cos[p * half + d], sn = a.rope.sin[p * half + d];
        const float x0 = f(k[d]), x1 = f(k[d + half]);
        kc.set(row + d, x0 * cs - x1 * sn);
        kc.set(row + d + half, x1 * cs + x0 * sn);
      }
      for (int64_t d = 0; d < c.hd; ++d) vc.set(row + d, f(v[d]));
    }
}

// RoPE of one query head at position p, rounded to fp16 as the kernels keep it.
std::vector<float> rope_query(const uint16_t* x, int64_t hd, const ops::RopeTable& rope, int64_t p) {
  const int64_t half = hd / 2;
  std::vector<float> out(static_cast<size_t>(hd));
  for (int64_t d = 0; d < half; ++d) {
    const float c = rope.cos[p * half + d], s = rope.sin[p * half + d];
    const float a = f(x[d]), b = f(x[d + half]);
    out[d] = f(h(a * c - b * s));
    out[d + half] = f(h(b * c + a * s));
  }
  return out;
}

// softmax(rope(q) . K * scale, soft-capped) . V in double over the reference cache, [rows][heads * hd].
std::vector<double> reference_attention(const AttnData& a, const CacheCodes& kc, const CacheCodes& vc) {
  const AttnCase& c = a.c;
  std::vector<double> out(static_cast<size_t>(c.rows * a.q_dim));
  const int64_t group = c.heads / c.kv_heads;
  for (int64_t i = 0; i < c.rows; ++i) {
    const int64_t p = c.pos0 + i, first = c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
    for (int64_t hh = 0; hh < c.heads; ++hh) {
      const int64_t g = hh / group;
      const std::vector<float> q = rope_query(&a.qkv[i * a.stride + hh * c.hd], c.hd, a.rope, p);
      std::vector<double> s(static_cast<size_t>(p + 1 - first));
      double mx = -INFINITY;
      for (int64_t j = first; j <= p; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < c.hd; ++d) dot += double(q[d]) * kc.get(static_cast<size_t>((g * a.cap + j) * c.hd + d));
        s[j - first] = dot * c.score_scale();
        if (c.softcap > 0) s[j - first] = c.softcap * std::tanh(s[j - first] / c.softcap);
        mx = std::max(mx, s[j - first]);
      }
      double den = 0;
      for (double& e : s) den += (e = std::exp(e - mx));
      for (int64_t d = 0; d < c.hd; ++d) {
        double num = 0;
        for (int64_t j = first; j <= p; ++j) num += s[j - first] * vc.get(static_cast<size_t>((g * a.cap + j) * c.hd + d));
        out[i * a.q_dim + hh * c.hd + d] = num / den;
      }
    }
  }
  return out;
}

// Device buffers of one case; fused() launches the fused kernel, unfused() the pair it replaces.
struct AttnRun {
  const AttnData& a;
  DeviceBuffer qkv, kc, vc, out, cos, sin, pos, partials, counters;
  cuda_model::DecodeAttentionScratch scratch;
  explicit AttnRun(const AttnData& data) : a(data) {
    const AttnCase& c = a.c;
    qkv = DeviceBuffer::upload(a.qkv, "qkv");
    kc = DeviceBuffer::upload(a.kcache.raw, "kcache");
    vc = DeviceBuffer::upload(a.vcache.raw, "vcache");
    out = DeviceBuffer(static_cast<size_t>(c.rows * a.q_dim) * 2, "out");
    QRT_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.bytes()));  // NaN
    cos = DeviceBuffer::upload(a.rope.cos, "cos");
    sin = DeviceBuffer::upload(a.rope.sin, "sin");
    pos = DeviceBuffer::upload(std::vector<int64_t>{c.pos0}, "pos");
    scratch.group_splits = c.parts;
    scratch.splits = std::min(c.parts, 32);
    scratch.max_rows = 8;
    partials = DeviceBuffer(cuda_model::decode_attention_partial_floats(8, c.heads, c.parts, c.hd) * 4, "partials");
    counters = DeviceBuffer(static_cast<size_t>(8 * c.heads) * 4, "counters");
    QRT_CUDA_CHECK(cudaMemset(counters.get(), 0, counters.bytes()));
    scratch.partials = partials.as<float>();
    scratch.counters = counters.as<int>();
  }
  __half* q() const { return qkv.as<__half>(); }
  __half* k() const { return qkv.as<__half>() + a.q_dim; }
  __half* v() const { return qkv.as<__half>() + a.q_dim + a.kv_dim; }
  cuda_model::KvCache cache() const {
    return {kc.get(), vc.get(), a.c.fp8 ? cuda_model::KvElem::Fp8E4M3 : cuda_model::KvElem::F16};
  }
  void fused(cudaStream_t s = stream()) {
    const AttnCase& c = a.c;
    cuda_model::rope_store_decode_attention(q(), k(), v(), a.stride, a.stride, cos.as<float>(), sin.as<float>(),
                                            pos.as<int64_t>(), cache(), out.as<__half>(), c.rows, c.heads, c.kv_heads,
                                            c.hd, a.cap, c.window, c.score_scale(), scratch, s);
  }
  // The short-context kernel (one block per query head and row, the whole context).
  void short_context(cudaStream_t s = stream()) {
    const AttnCase& c = a.c;
    cuda_model::rope_store_short_attention(q(), k(), v(), a.stride, a.stride, cos.as<float>(), sin.as<float>(),
                                           pos.as<int64_t>(), cache(), out.as<__half>(), c.rows, c.heads, c.kv_heads,
                                           c.hd, a.cap, c.window, c.score_scale(), c.softcap, s);
  }
  void unfused() {
    const AttnCase& c = a.c;
    cuda_model::rope_store(q(), k(), v(), cos.as<float>(), sin.as<float>(), pos.as<int64_t>(), cache(), c.rows, c.heads,
                           c.kv_heads, c.hd, a.cap, a.stride, a.stride, stream());
    cuda_model::attention(q(), cache(), out.as<__half>(), pos.as<int64_t>(), c.rows, c.heads, c.kv_heads, c.hd, a.cap,
                          c.window, c.score_scale(), c.softcap, a.stride, stream(), &scratch);
  }
  CacheCodes download_cache(const DeviceBuffer& b) const {
    CacheCodes cc;
    cc.fp8 = a.c.fp8;
    cc.raw = download<uint8_t>(b, a.kcache.raw.size());
    return cc;
  }
};

// Relative error of each (row, head) vector; the largest.
double worst_head_error(const std::vector<uint16_t>& out, const std::vector<double>& ref, int64_t vectors, int64_t hd) {
  double worst = 0;
  for (int64_t vi = 0; vi < vectors; ++vi) {
    double num = 0, den = 0;
    for (int64_t d = 0; d < hd; ++d) {
      const double y = f(out[vi * hd + d]), r = ref[vi * hd + d];
      if (!std::isfinite(y)) return INFINITY;
      num += (y - r) * (y - r);
      den += r * r;
    }
    // fp16 output: about 5e-4 of each value; a floor for vectors that average to nearly zero.
    worst = std::max(worst, std::sqrt(num) / (std::sqrt(den) + 1e-3 * std::sqrt(double(hd))));
  }
  return worst;
}

void check_cache(const AttnData& a, const CacheCodes& got_k, const CacheCodes& got_v, const CacheCodes& want_k,
                 const CacheCodes& want_v, const std::string& what) {
  int bad = 0;
  for (size_t e = 0; e < want_k.size() && bad < 5; ++e) {
    const int64_t p = static_cast<int64_t>(e / a.c.hd) % a.cap;
    const bool fresh = p >= a.c.pos0 && p < a.c.pos0 + a.c.rows;
    // New keys within one rounding step (the kernels may contract a * c - b * s into one fused
    // multiply-add); values and everything else bit for bit.
    const bool k_ok = fresh ? got_k.within_one_step(e, want_k.code(e)) : got_k.code(e) == want_k.code(e);
    if (!k_ok || got_v.code(e) != want_v.code(e)) {
      ++bad;
      ADD_FAILURE() << what << ": cache element " << e << " (position " << p << "): key " << got_k.code(e) << " vs "
                    << want_k.code(e) << ", value " << got_v.code(e) << " vs " << want_v.code(e);
    }
  }
}

std::vector<AttnCase> attention_cases() {
  std::vector<AttnCase> cases;
  for (int parts : {1, 5, 64}) {
    // SmolLM2 (9 heads over 3 KV heads, head_dim 64) at the first position, at tile edges and long.
    for (int64_t pos0 : {0, 1, 63, 64, 65, 500, 3000}) cases.push_back({9, 3, 64, 1, pos0, 0, parts});
    // Llama-2 (no grouping, head_dim 128), Llama-3 (groups of 4) with three rows.
    for (int64_t pos0 : {0, 31, 33, 1000}) cases.push_back({32, 32, 128, 1, pos0, 0, parts});
    cases.push_back({32, 8, 128, 3, 700, 0, parts});
    // Groups of 8, eight rows; head_dim 256, 96 (12 chunks: not a power of two) and 8.
    for (int64_t pos0 : {0, 5, 129, 2000}) cases.push_back({16, 2, 32, 8, pos0, 0, parts});
    for (int64_t pos0 : {17, 600}) cases.push_back({4, 2, 256, 2, pos0, 0, parts});
    for (int64_t pos0 : {77, 1500}) cases.push_back({6, 3, 96, 5, pos0, 0, parts});
    cases.push_back({8, 8, 8, 1, 300, 0, parts});
    // Sliding windows, one narrower than the step's rows.
    cases.push_back({9, 3, 64, 4, 1000, 100, parts});
    cases.push_back({8, 4, 64, 8, 40, 3, parts});
    // An fp8 cache: tiles of 128 keys of 64 dims, 16 elements a chunk (head_dim 48: 3 chunks).
    for (int64_t pos0 : {0, 127, 129, 2500}) cases.push_back({9, 3, 64, 1, pos0, 0, parts, true});
    cases.push_back({32, 8, 128, 3, 700, 0, parts, true});
    cases.push_back({6, 3, 48, 5, 300, 0, parts, true});
    cases.push_back({4, 2, 256, 2, 600, 40, parts, true});
  }
  return cases;
}

void check_attention_case(const AttnCase& c, std::mt19937& rng) {
  SCOPED_TRACE(describe(c));
  const cuda_model::KvElem elem = c.fp8 ? cuda_model::KvElem::Fp8E4M3 : cuda_model::KvElem::F16;
  ASSERT_TRUE(cuda_model::decode_attention_fusable(c.heads, c.kv_heads, c.hd, elem));
  const AttnData a = make_attn_data(c, rng);
  CacheCodes want_k, want_v;
  reference_store(a, want_k, want_v);
  const std::vector<double> ref = reference_attention(a, want_k, want_v);
  AttnRun run(a);
  run.fused();
  const std::vector<uint16_t> out = download<uint16_t>(run.out, static_cast<size_t>(c.rows * a.q_dim));
  EXPECT_LT(worst_head_error(out, ref, c.rows * c.heads, c.hd), 2e-3);
  check_cache(a, run.download_cache(run.kc), run.download_cache(run.vc), want_k, want_v, "fused");
  // q is read, not rotated in place.
  EXPECT_EQ(download<uint16_t>(run.qkv, a.qkv.size()), a.qkv);
  // The counters are back to zero for the next launch.
  for (int v : download<int>(run.counters, static_cast<size_t>(8 * c.heads))) ASSERT_EQ(v, 0);

  // The short-context kernel: the same results, the same cache, q left as it was (contexts past
  // its 512-key chunk walk several chunks).
  {
    ASSERT_TRUE(cuda_model::short_attention_fits(c.heads, c.kv_heads, c.hd, elem));
    AttnRun sc(a);
    sc.short_context();
    const std::vector<uint16_t> out_s = download<uint16_t>(sc.out, static_cast<size_t>(c.rows * a.q_dim));
    EXPECT_LT(worst_head_error(out_s, ref, c.rows * c.heads, c.hd), 2e-3) << "short-context kernel";
    check_cache(a, sc.download_cache(sc.kc), sc.download_cache(sc.vc), want_k, want_v, "short-context kernel");
    EXPECT_EQ(download<uint16_t>(sc.qkv, a.qkv.size()), a.qkv) << "short-context kernel";
  }
  // The unfused kernels on the same inputs agree with it.
  AttnRun unfused(a);
  unfused.unfused();
  const std::vector<uint16_t> out2 = download<uint16_t>(unfused.out, out.size());
  std::vector<double> out_d(out.size());
  for (size_t e = 0; e < out.size(); ++e) out_d[e] = f(out[e]);
  EXPECT_LT(worst_head_error(out2, out_d, c.rows * c.heads, c.hd), 3e-3) << "fused vs unfused";
  check_cache(a, unfused.download_cache(unfused.kc), unfused.download_cache(unfused.vc), want_k, want_v, "unfused");
}

// ---- the batched engine's paged KV pool ----

// One sequence of a paged step: rows at positions [pos0, pos0 + rows) (a prompt chunk when rows >
// 1, a decode row when 1); the pool already holds its positions [0, pos0).
struct PagedSeq {
  int64_t pos0 = 0, rows = 1;
};
struct PagedCase {
  int64_t heads, kv_heads, hd;
  std::vector<PagedSeq> seqs;
  int64_t window = 0;
  float scale = 0.f;    // 0: 1 / sqrt(head_dim)
  float softcap = 0.f;  // 0: none
  int splits = 1;
  bool fp8 = false;
};

std::string describe(const PagedCase& c) {
  std::string seqs;
  for (const PagedSeq& s : c.seqs) seqs += " " + std::to_string(s.pos0) + "+" + std::to_string(s.rows);
  return "heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " hd " + std::to_string(c.hd) +
         " rows at" + seqs + " window " + std::to_string(c.window) + " scale " + std::to_string(c.scale) +
         " softcap " + std::to_string(c.softcap) + " splits " + std::to_string(c.splits) +
         (c.fp8 ? " fp8 pool" : " fp16 pool");
}

struct PagedData {
  PagedCase c;
  int64_t q_dim = 0, kv_dim = 0, stride = 0, pool = 0, cap = 0, m = 0;
  std::vector<std::vector<int32_t>> tables;  // per sequence
  std::vector<int64_t> pos;                  // per row
  std::vector<int32_t> seq_of;               // per row
  ops::RopeTable rope;
  std::vector<uint16_t> qkv;   // rows [m][q | k | v], fp16
  CacheCodes kcache, vcache;   // [kv_head][pool position][hd]
  int64_t slot(int32_t s, int64_t p) const {
    return static_cast<int64_t>(tables[static_cast<size_t>(s)][static_cast<size_t>(p / 16)]) * 16 + p % 16;
  }
  size_t elem(int64_t g, int64_t slot, int64_t d) const { return static_cast<size_t>((g * pool + slot) * c.hd + d); }
  float scale() const { return c.scale > 0 ? c.scale : 1.f / std::sqrt(static_cast<float>(c.hd)); }
};

PagedData make_paged_data(const PagedCase& c, std::mt19937& rng) {
  static_assert(cuda_model::kPagedBlock == 16, "the tests' blocks");
  PagedData a;
  a.c = c;
  a.q_dim = c.heads * c.hd;
  a.kv_dim = c.kv_heads * c.hd;
  a.stride = a.q_dim + 2 * a.kv_dim;
  // The blocks the sequences need and two no sequence owns, dealt out shuffled: each table runs
  // out of order (reversed where the shuffle left it ascending).
  int64_t blocks = 2;
  for (const PagedSeq& s : c.seqs) {
    blocks += (s.pos0 + s.rows + 15) / 16;
    a.cap = std::max(a.cap, s.pos0 + s.rows);
  }
  a.pool = blocks * 16;
  std::vector<int32_t> ids(static_cast<size_t>(blocks));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::shuffle(ids.begin(), ids.end(), rng);
  size_t next = 0;
  for (const PagedSeq& s : c.seqs) {
    std::vector<int32_t> t;
    for (int64_t b = 0; b < (s.pos0 + s.rows + 15) / 16; ++b) t.push_back(ids[next++]);
    if (t.size() > 1 && std::is_sorted(t.begin(), t.end())) std::reverse(t.begin(), t.end());
    a.tables.push_back(t);
  }
  // Rows: the sequences last to first (a row's index is not its sequence), positions in order.
  for (size_t s = c.seqs.size(); s-- > 0;)
    for (int64_t r = 0; r < c.seqs[s].rows; ++r) {
      a.pos.push_back(c.seqs[s].pos0 + r);
      a.seq_of.push_back(static_cast<int32_t>(s));
    }
  a.m = static_cast<int64_t>(a.pos.size());
  std::vector<float> inv(static_cast<size_t>(c.hd / 2));
  for (size_t i = 0; i < inv.size(); ++i) inv[i] = 1.0f / std::pow(10000.f, static_cast<float>(2 * i) / c.hd);
  a.rope.build(inv, a.cap + 3);
  a.qkv = random_halves(static_cast<size_t>(a.m * a.stride), rng, -1.5f, 1.5f);
  // Every slot poisoned (NaN), then each sequence's positions before the step random.
  std::uniform_real_distribution<float> kd(-1.5f, 1.5f), vd(-1.f, 1.f);
  for (CacheCodes* cc : {&a.kcache, &a.vcache}) {
    cc->fp8 = c.fp8;
    cc->resize(static_cast<size_t>(c.kv_heads * a.pool * c.hd));
    for (size_t e = 0; e < cc->size(); ++e) cc->poison(e);
  }
  for (size_t s = 0; s < c.seqs.size(); ++s)
    for (int64_t p = 0; p < c.seqs[s].pos0; ++p)
      for (int64_t g = 0; g < c.kv_heads; ++g)
        for (int64_t d = 0; d < c.hd; ++d) {
          a.kcache.set(a.elem(g, a.slot(static_cast<int32_t>(s), p), d), kd(rng));
          a.vcache.set(a.elem(g, a.slot(static_cast<int32_t>(s), p), d), vd(rng));
        }
  return a;
}

// The pool after the step, as the reference sees it: each row's rotated key (rounded once from
// float) and value (from fp16) at its sequence's slot of its position.
void reference_paged_store(const PagedData& a, CacheCodes& kc, CacheCodes& vc) {
  const PagedCase& c = a.c;
  kc = a.kcache;
  vc = a.vcache;
  const int64_t half = c.hd / 2;
  for (int64_t i = 0; i < a.m; ++i)
    for (int64_t g = 0; g < c.kv_heads; ++g) {
      const uint16_t* k = &a.qkv[static_cast<size_t>(i * a.stride + a.q_dim + g * c.hd)];
      const uint16_t* v = &a.qkv[static_cast<size_t>(i * a.stride + a.q_dim + a.kv_dim + g * c.hd)];
      const int64_t p = a.pos[static_cast<size_t>(i)], slot = a.slot(a.seq_of[static_cast<size_t>(i)], p);
      for (int64_t d = 0; d < half; ++d) {
        const float cs = a.rope.cos[p * half + d], sn = a.rope.sin[p * half + d];
        const float x0 = f(k[d]), x1 = f(k[d + half]);
        kc.set(a.elem(g, slot, d), x0 * cs - x1 * sn);
        kc.set(a.elem(g, slot, d + half), x1 * cs + x0 * sn);
      }
      for (int64_t d = 0; d < c.hd; ++d) vc.set(a.elem(g, slot, d), f(v[d]));
    }
}

// softmax(softcap(scale * rope(q) . K)) . V in double over each row's own sequence, [m][heads * hd].
std::vector<double> reference_paged_attention(const PagedData& a, const CacheCodes& kc, const CacheCodes& vc) {
  const PagedCase& c = a.c;
  std::vector<double> out(static_cast<size_t>(a.m * a.q_dim));
  const int64_t group = c.heads / c.kv_heads;
  for (int64_t i = 0; i < a.m; ++i) {
    const int64_t p = a.pos[static_cast<size_t>(i)], first = c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
    const int32_t s = a.seq_of[static_cast<size_t>(i)];
    for (int64_t hh = 0; hh < c.heads; ++hh) {
      const int64_t g = hh / group;
      const std::vector<float> q = rope_query(&a.qkv[static_cast<size_t>(i * a.stride + hh * c.hd)], c.hd, a.rope, p);
      std::vector<double> sc(static_cast<size_t>(p + 1 - first));
      double mx = -INFINITY;
      for (int64_t j = first; j <= p; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < c.hd; ++d) dot += double(q[d]) * kc.get(a.elem(g, a.slot(s, j), d));
        double v = dot * a.scale();
        if (c.softcap > 0) v = c.softcap * std::tanh(v / c.softcap);
        sc[static_cast<size_t>(j - first)] = v;
        mx = std::max(mx, v);
      }
      double den = 0;
      for (double& e : sc) den += (e = std::exp(e - mx));
      for (int64_t d = 0; d < c.hd; ++d) {
        double num = 0;
        for (int64_t j = first; j <= p; ++j) num += sc[static_cast<size_t>(j - first)] * vc.get(a.elem(g, a.slot(s, j), d));
        out[static_cast<size_t>(i * a.q_dim + hh * c.hd + d)] = num / den;
      }
    }
  }
  return out;
}

void check_paged_case(const PagedCase& c, std::mt19937& rng) {
  SCOPED_TRACE(describe(c));
  const PagedData a = make_paged_data(c, rng);
  CacheCodes want_k, want_v;
  reference_paged_store(a, want_k, want_v);
  const std::vector<double> ref = reference_paged_attention(a, want_k, want_v);
  // The step's rows as CudaOps uploads them: positions, each row's table offset, the tables.
  std::vector<int32_t> offsets(c.seqs.size()), flat, row_off;
  for (size_t s = 0; s < a.tables.size(); ++s) {
    offsets[s] = static_cast<int32_t>(flat.size());
    flat.insert(flat.end(), a.tables[s].begin(), a.tables[s].end());
  }
  for (int32_t s : a.seq_of) row_off.push_back(offsets[static_cast<size_t>(s)]);
  DeviceBuffer qkv = DeviceBuffer::upload(a.qkv, "qkv"), kc = DeviceBuffer::upload(a.kcache.raw, "keys"),
               vc = DeviceBuffer::upload(a.vcache.raw, "values"), cos = DeviceBuffer::upload(a.rope.cos, "cos"),
               sin = DeviceBuffer::upload(a.rope.sin, "sin"), pos = DeviceBuffer::upload(a.pos, "positions"),
               off = DeviceBuffer::upload(row_off, "table offsets"), tables = DeviceBuffer::upload(flat, "tables");
  DeviceBuffer out(static_cast<size_t>(a.m * a.q_dim) * 2, "out");
  QRT_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.bytes()));  // NaN
  const int64_t pairs = a.m * c.heads, slots = pairs * c.splits;
  DeviceBuffer partials(static_cast<size_t>(slots * (c.hd + 2)) * 4, "partials"), counters(static_cast<size_t>(pairs) * 4, "counters");
  QRT_CUDA_CHECK(cudaMemset(counters.get(), 0, counters.bytes()));
  const cuda_model::PagedRows rows{pos.as<int64_t>(), off.as<int32_t>(), tables.as<int32_t>(), a.pool};
  const cuda_model::KvCache cache{kc.get(), vc.get(), c.fp8 ? cuda_model::KvElem::Fp8E4M3 : cuda_model::KvElem::F16};
  __half* q = qkv.as<__half>();
  cuda_model::paged_rope_store(q, q + a.q_dim, q + a.q_dim + a.kv_dim, cos.as<float>(), sin.as<float>(), rows, cache,
                               a.m, c.heads, c.kv_heads, c.hd, a.stride, a.stride, stream());
  cuda_model::paged_attention(q, cache, out.as<__half>(), rows, a.m, c.heads, c.kv_heads, c.hd, c.window, a.scale(),
                              c.softcap, a.stride, c.splits, {partials.as<float>(), counters.as<int>(), slots, pairs},
                              stream());
  const std::vector<uint16_t> got = download<uint16_t>(out, static_cast<size_t>(a.m * a.q_dim));
  EXPECT_LT(worst_head_error(got, ref, a.m * c.heads, c.hd), 2e-3);
  // The pool: the step's keys within one rounding step, its values bit for bit, every other slot
  // (earlier positions, later ones still poisoned, blocks no sequence owns) as it was.
  CacheCodes got_k, got_v;
  got_k.fp8 = got_v.fp8 = c.fp8;
  got_k.raw = download<uint8_t>(kc, a.kcache.raw.size());
  got_v.raw = download<uint8_t>(vc, a.vcache.raw.size());
  std::vector<bool> fresh(static_cast<size_t>(a.pool), false);
  for (int64_t i = 0; i < a.m; ++i) fresh[static_cast<size_t>(a.slot(a.seq_of[static_cast<size_t>(i)], a.pos[static_cast<size_t>(i)]))] = true;
  int bad = 0;
  for (size_t e = 0; e < want_k.size() && bad < 5; ++e) {
    const int64_t slot = static_cast<int64_t>(e / static_cast<size_t>(c.hd)) % a.pool;
    const bool k_ok = fresh[static_cast<size_t>(slot)] ? got_k.within_one_step(e, want_k.code(e)) : got_k.code(e) == want_k.code(e);
    if (!k_ok || got_v.code(e) != want_v.code(e)) {
      ++bad;
      ADD_FAILURE() << "pool element " << e << " (slot " << slot << "): key " << got_k.code(e) << " vs " << want_k.code(e)
                    << ", value " << got_v.code(e) << " vs " << want_v.code(e);
    }
  }
  // q rotated in place (rounded to fp16, as rope_store leaves it); k and v untouched.
  const std::vector<uint16_t> after = download<uint16_t>(qkv, a.qkv.size());
  for (int64_t i = 0; i < a.m && bad < 5; ++i)
    for (int64_t hh = 0; hh < c.heads; ++hh) {
      const std::vector<float> rq = rope_query(&a.qkv[static_cast<size_t>(i * a.stride + hh * c.hd)], c.hd, a.rope,
                                               a.pos[static_cast<size_t>(i)]);
      for (int64_t d = 0; d < c.hd; ++d) {
        const float g = f(after[static_cast<size_t>(i * a.stride + hh * c.hd + d)]);
        if (std::abs(g - rq[static_cast<size_t>(d)]) > 2e-3f * std::max(1.f, std::abs(rq[static_cast<size_t>(d)])) && bad++ < 5)
          ADD_FAILURE() << "row " << i << " head " << hh << " dim " << d << ": rotated q " << g << " vs " << rq[static_cast<size_t>(d)];
      }
      for (int64_t e = a.q_dim; e < a.stride; ++e)
        if (after[static_cast<size_t>(i * a.stride + e)] != a.qkv[static_cast<size_t>(i * a.stride + e)] && bad++ < 5)
          ADD_FAILURE() << "row " << i << ": k / v element " << e - a.q_dim << " changed";
    }
  for (int v : download<int>(counters, static_cast<size_t>(pairs))) ASSERT_EQ(v, 0);
}

std::vector<PagedCase> paged_cases() {
  std::vector<PagedCase> cases;
  // SmolLM2's heads (9 over 3 KV heads, head_dim 64): a one-token prompt at 0, decode rows at a
  // block's last and first position, a chunk across a block edge, a prompt chunk of 17 rows, a
  // long decode row.
  const std::vector<PagedSeq> mixed = {{0, 1}, {15, 1}, {16, 1}, {31, 2}, {100, 17}, {1000, 1}};
  for (int splits : {1, 5}) cases.push_back({9, 3, 64, mixed, 0, 0.f, 0.f, splits});
  cases.push_back({9, 3, 64, mixed, 0, 0.f, 0.f, 3, /*fp8=*/true});
  // Llama-2 (no grouping, head_dim 128): three decode rows, split 8 (short rows leave splits empty).
  cases.push_back({32, 32, 128, {{500, 1}, {47, 1}, {64, 1}}, 0, 0.f, 0.f, 8});
  // Groups of 8 (16 heads over 2, head_dim 32); a window narrower than a 24-row chunk.
  for (int splits : {1, 2}) cases.push_back({16, 2, 32, {{40, 24}, {300, 1}, {5, 3}}, 20, 0.f, 0.f, splits});
  // Gemma-2's attention rules: its score scale and a soft-cap that bites, head_dim 256.
  for (int splits : {1, 4}) cases.push_back({4, 2, 256, {{17, 4}, {600, 1}}, 0, 0.0625f, 0.5f, splits});
  // head_dim 8, one head per KV head.
  cases.push_back({8, 8, 8, {{3, 5}, {200, 1}}, 0, 0.f, 0.f, 1});
  return cases;
}

TEST(CudaModelKernels, PagedRopeStoreAndAttentionMatchReference) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(20261216);
  for (const PagedCase& c : paged_cases()) check_paged_case(c, rng);
}

// Host-only: every split count paged_attention_splits() picks fits the scratch that
// paged_attention_scratch_sizes() sizes (CudaOps allocates it so), and the picks split only long
// contexts of few rows.
TEST(CudaModelKernels, PagedAttentionSplitsFitTheScratch) {
  for (int sms : {1, 2, 78, 132}) {
    int64_t slots = 0, pairs = 0;
    cuda_model::paged_attention_scratch_sizes(sms, &slots, &pairs);
    for (int64_t m = 1; m <= 70; ++m)
      for (int64_t heads : {1, 3, 9, 32, 64})
        for (int64_t longest : {1, 100, 128, 129, 1000, 100000}) {
          const int sp = cuda_model::paged_attention_splits(sms, m, heads, longest);
          ASSERT_GE(sp, 1);
          ASSERT_LE(sp, cuda_model::kPagedMaxSplits);
          if (sp > 1) {
            ASSERT_LE(m * heads, pairs) << sms << " SMs, " << m << " rows, " << heads << " heads, " << longest;
            ASSERT_LE(m * heads * sp, slots) << sms << " SMs, " << m << " rows, " << heads << " heads, " << longest;
          }
        }
  }
  EXPECT_EQ(cuda_model::paged_attention_splits(132, 1, 32, 100), 1);      // short context
  EXPECT_GT(cuda_model::paged_attention_splits(132, 1, 32, 100000), 1);   // one long row
  EXPECT_EQ(cuda_model::paged_attention_splits(132, 64, 32, 100000), 1);  // rows enough to fill the GPU
}

TEST(CudaModelKernels, FusedDecodeAttentionMatchesReference) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(20261205);
  for (const AttnCase& c : attention_cases()) check_attention_case(c, rng);
}

// A few cases of each fused kernel, short enough for compute-sanitizer (scripts/gpu-check.sh):
// several tiles per part, merged parts, new keys inside a tile, the head's last-block choice.
TEST(CudaModelKernels, SanitizerShortSet) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  for (const AttnCase& c : {AttnCase{9, 3, 64, 1, 700, 0, 4}, AttnCase{16, 2, 32, 8, 130, 0, 3},
                            AttnCase{6, 3, 96, 5, 77, 20, 2}, AttnCase{4, 2, 256, 2, 40, 0, 1},
                            AttnCase{9, 3, 64, 2, 300, 0, 3, true}})
    check_attention_case(c, rng);
  check_paged_case({9, 3, 64, {{15, 2}, {200, 1}, {0, 1}}, 0, 0.f, 0.f, 3}, rng);
  const int sms = sm_count();
  const size_t blocks = static_cast<size_t>(cuda_model::head_argmax_blocks(sms));
  DeviceBuffer values(blocks * 4, "values"), indices(blocks * 4, "indices"), counter(4, "counter");
  QRT_CUDA_CHECK(cudaMemset(counter.get(), 0, 4));
  const int64_t vocab = 1001, hidden = 72;
  DeviceBuffer W = DeviceBuffer::upload(random_halves(static_cast<size_t>(vocab * hidden), rng), "W");
  DeviceBuffer x = DeviceBuffer::upload(std::vector<float>(static_cast<size_t>(hidden), 0.5f), "x");
  DeviceBuffer w = DeviceBuffer::upload(std::vector<float>(static_cast<size_t>(hidden), 1.f), "weight");
  DeviceBuffer logits(static_cast<size_t>(vocab) * 4, "logits"), token(4, "token");
  cuda_model::rmsnorm_head_argmax(x.as<float>(), nullptr, w.as<float>(), 1e-6f, W.as<__half>(), vocab, hidden,
                                  logits.as<float>(), token.as<int32_t>(),
                                  {values.as<float>(), indices.as<int32_t>(), counter.as<int>()}, sms, false, nullptr,
                                  nullptr, nullptr, nullptr, stream());
  const std::vector<float> got = download<float>(logits, static_cast<size_t>(vocab));
  EXPECT_EQ(download<int32_t>(token, 1)[0], greedy_token(got.data(), vocab));
  DeviceBuffer d_tok = DeviceBuffer::upload(std::vector<int32_t>{3, 9}, "tokens"), xo(2 * 72 * 4, "x"), o(2 * 72 * 2, "out");
  cuda_model::embed_rmsnorm(d_tok.as<int32_t>(), W.as<__half>(), 1.f, xo.as<float>(), w.as<float>(), o.as<__half>(), 2,
                            hidden, 1e-6f, stream());
  QRT_CUDA_CHECK(cudaDeviceSynchronize());
}

TEST(CudaModelKernels, FusedDecodeAttentionGraphReplayAdvancesWithThePosition) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  for (int variant = 0; variant < 4; ++variant) {
    const bool fp8 = variant & 1, short_kernel = variant & 2;
    // Three steps of one graph: positions 150, 151, 152 (one row each), the cache growing.
    const AttnCase c{9, 3, 64, 1, 150, 0, cuda_model::decode_attention_group_splits(sm_count(), 3), fp8};
    SCOPED_TRACE(describe(c) + (short_kernel ? ", short-context kernel" : ", split fused kernel"));
    const AttnData base = make_attn_data(c, rng, /*slack=*/8);
    AttnRun run(base);
    cudaStream_t s = stream();
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    QRT_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    if (short_kernel) run.short_context(s);
    else run.fused(s);
    QRT_CUDA_CHECK(cudaStreamEndCapture(s, &g));
    QRT_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    AttnData step = base;
    for (int64_t t = 0; t < 3; ++t) {
      SCOPED_TRACE("step " + std::to_string(t));
      step.c.pos0 = c.pos0 + t;
      step.qkv = random_halves(static_cast<size_t>(step.stride), rng, -1.5f, 1.5f);
      upload_to(run.qkv, step.qkv);
      upload_to(run.pos, std::vector<int64_t>{step.c.pos0});
      QRT_CUDA_CHECK(cudaMemset(run.out.get(), 0xFF, run.out.bytes()));
      QRT_CUDA_CHECK(cudaGraphLaunch(exec, s));
      QRT_CUDA_CHECK(cudaStreamSynchronize(s));
      CacheCodes want_k, want_v;
      reference_store(step, want_k, want_v);
      const std::vector<double> ref = reference_attention(step, want_k, want_v);
      EXPECT_LT(worst_head_error(download<uint16_t>(run.out, static_cast<size_t>(step.q_dim)), ref, 9, 64), 2e-3);
      check_cache(step, run.download_cache(run.kc), run.download_cache(run.vc), want_k, want_v, "graph");
      step.kcache = run.download_cache(run.kc);  // the next step attends over what was stored
      step.vcache = run.download_cache(run.vc);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
  }
}

// ---- the embedding with the first norm ----

// With Gemma-2's embedding scale (sqrt(hidden) in float32; 1 elsewhere) too: x is the fp16 table
// value times the scale, one float32 product as the CPU engine's.
TEST(CudaModelKernels, EmbedRmsnormMatchesFormulaAndTheUnfusedPair) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (int64_t hidden : {8, 64, 576, 1002, 4100})
    for (int64_t m : {1, 3, 17})
      for (float scale : {1.f, std::sqrt(static_cast<float>(hidden))}) {
        SCOPED_TRACE("hidden " + std::to_string(hidden) + " rows " + std::to_string(m) + " scale " +
                     std::to_string(scale));
        const int64_t vocab = 37;
        const std::vector<uint16_t> table = random_halves(static_cast<size_t>(vocab * hidden), rng, -2.f, 2.f);
        std::vector<float> weight(static_cast<size_t>(hidden));
        std::uniform_real_distribution<float> wd(0.5f, 1.5f);
        for (auto& w : weight) w = wd(rng);
        std::vector<int32_t> tokens(static_cast<size_t>(m));
        std::uniform_int_distribution<int32_t> td(0, static_cast<int32_t>(vocab - 1));
        for (auto& t : tokens) t = td(rng);
        DeviceBuffer d_table = DeviceBuffer::upload(table, "table"), d_w = DeviceBuffer::upload(weight, "weight");
        DeviceBuffer d_tok = DeviceBuffer::upload(tokens, "tokens");
        DeviceBuffer x1(static_cast<size_t>(m * hidden) * 4, "x"), x2(x1.bytes(), "x"),
            o1(static_cast<size_t>(m * hidden) * 2, "o"), o2(o1.bytes(), "o");
        for (DeviceBuffer* b : {&x1, &x2, &o1, &o2}) QRT_CUDA_CHECK(cudaMemset(b->get(), 0xFF, b->bytes()));
        cuda_model::embed_rmsnorm(d_tok.as<int32_t>(), d_table.as<__half>(), scale, x1.as<float>(), d_w.as<float>(),
                                  o1.as<__half>(), m, hidden, 1e-5f, stream());
        cuda_model::embed(d_tok.as<int32_t>(), m, d_table.as<__half>(), scale, hidden, x2.as<float>(), stream());
        cuda_model::add_rmsnorm(x2.as<float>(), nullptr, d_w.as<float>(), o2.as<__half>(), m, hidden, 1e-5f, stream());
        const auto xa = download<float>(x1, static_cast<size_t>(m * hidden)), xb = download<float>(x2, xa.size());
        const auto oa = download<uint16_t>(o1, xa.size()), ob = download<uint16_t>(o2, xa.size());
        EXPECT_EQ(xa, xb);
        EXPECT_EQ(oa, ob);
        for (int64_t i = 0; i < m; ++i) {
          double ss = 0;
          for (int64_t d = 0; d < hidden; ++d) {
            const double e = f(table[tokens[i] * hidden + d]) * scale;
            ss += e * e;
          }
          const double inv = 1.0 / std::sqrt(ss / hidden + 1e-5);
          for (int64_t d = 0; d < hidden; ++d) {
            const float e32 = f(table[tokens[i] * hidden + d]) * scale;
            const double e = e32;
            ASSERT_EQ(xa[i * hidden + d], e32);
            const double want = e * inv * weight[d];
            // fp16 rounding, and a value next to a rounding boundary may round the other way.
            ASSERT_NEAR(f(oa[i * hidden + d]), want, 2e-3 * std::abs(want) + 1e-4) << "row " << i << " dim " << d;
          }
        }
      }
}

// ---- the final norm, the head and the greedy choice ----

struct HeadCase {
  int64_t vocab, hidden;
  bool delta;
};

TEST(CudaModelKernels, HeadArgmaxMatchesFormulaAndHostGreedyRule) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  const int sms = sm_count();
  const size_t blocks = static_cast<size_t>(cuda_model::head_argmax_blocks(sms));
  DeviceBuffer values(blocks * 4, "values"), indices(blocks * 4, "indices"), counter(4, "counter");
  QRT_CUDA_CHECK(cudaMemset(counter.get(), 0, 4));
  const cuda_model::HeadArgmaxScratch scratch{values.as<float>(), indices.as<int32_t>(), counter.as<int>()};
  const std::vector<HeadCase> cases = {{1, 8, false},     {7, 64, true},     {300, 128, true},
                                       {1000, 576, true}, {49157, 576, true}, {4099, 4096, false}};
  for (const HeadCase& c : cases)
    for (int variant = 0; variant < 3; ++variant) {  // 0: random, 1: a tie at the top, 2: NaN rows
      SCOPED_TRACE("vocab " + std::to_string(c.vocab) + " hidden " + std::to_string(c.hidden) + " variant " +
                   std::to_string(variant));
      ASSERT_TRUE(cuda_model::head_argmax_fusable(c.hidden));
      std::vector<uint16_t> W = random_halves(static_cast<size_t>(c.vocab * c.hidden), rng);
      std::vector<float> x(static_cast<size_t>(c.hidden)), weight(x.size());
      std::uniform_real_distribution<float> xd(-2.f, 2.f), wd(0.5f, 1.5f);
      for (auto& v : x) v = xd(rng);
      for (auto& v : weight) v = wd(rng);
      const std::vector<uint16_t> delta = random_halves(x.size(), rng);
      // The normed row as the kernel rounds it, then the reference logits.
      double ss = 0;
      std::vector<double> xs(x.size());
      for (size_t d = 0; d < x.size(); ++d) {
        xs[d] = double(x[d]) + (c.delta ? f(delta[d]) : 0.0);
        ss += xs[d] * xs[d];
      }
      const double inv = 1.0 / std::sqrt(ss / c.hidden + 1e-6);
      std::vector<double> xn(x.size());
      for (size_t d = 0; d < x.size(); ++d) xn[d] = f(h(static_cast<float>(xs[d] * inv * weight[d])));
      auto logit = [&](int64_t r) {
        double s = 0;
        for (int64_t d = 0; d < c.hidden; ++d) s += xn[d] * f(W[r * c.hidden + d]);
        return s;
      };
      std::vector<double> ref(static_cast<size_t>(c.vocab));
      for (int64_t r = 0; r < c.vocab; ++r) ref[r] = logit(r);
      int64_t expect = -1;
      if (variant == 1 && c.vocab > 2) {
        // Rows b < a the same, scaled above every other: the lower index wins.
        const int64_t a = c.vocab - 1, b = c.vocab / 2;
        const double top = *std::max_element(ref.begin(), ref.end());
        const double sign = ref[a] >= 0 ? 1 : -1;
        for (int64_t d = 0; d < c.hidden; ++d) W[a * c.hidden + d] = h(std::min(60000.f, f(W[a * c.hidden + d]) * float(sign) * 8));
        for (int64_t d = 0; d < c.hidden; ++d) W[b * c.hidden + d] = W[a * c.hidden + d];
        ref[a] = ref[b] = logit(a);
        if (ref[a] > top) expect = b;
      }
      if (variant == 2) {
        // NaN rows, the would-be winner among them: never chosen. A one-row head is all NaN: token 0.
        const int64_t best = std::max_element(ref.begin(), ref.end()) - ref.begin();
        for (int64_t r : {best, c.vocab / 3})
          for (int64_t d = 0; d < c.hidden; ++d) W[r * c.hidden + d] = kHalfNaN;
        ref[best] = ref[c.vocab / 3] = NAN;
        if (c.vocab == 1) expect = 0;
      }
      DeviceBuffer d_W = DeviceBuffer::upload(W, "W"), d_x = DeviceBuffer::upload(x, "x");
      DeviceBuffer d_w = DeviceBuffer::upload(weight, "weight"), d_delta = DeviceBuffer::upload(delta, "delta");
      DeviceBuffer logits(static_cast<size_t>(c.vocab) * 4, "logits"), token(4, "token");
      QRT_CUDA_CHECK(cudaMemset(logits.get(), 0xFF, logits.bytes()));
      QRT_CUDA_CHECK(cudaMemset(token.get(), 0xFF, 4));
      for (int rep = 0; rep < 2; ++rep)  // the counter resets itself
        cuda_model::rmsnorm_head_argmax(d_x.as<float>(), c.delta ? d_delta.as<__half>() : nullptr, d_w.as<float>(), 1e-6f,
                                        d_W.as<__half>(), c.vocab, c.hidden, logits.as<float>(), token.as<int32_t>(),
                                        scratch, sms, false, nullptr, nullptr, nullptr, nullptr, stream());
      const std::vector<float> got = download<float>(logits, static_cast<size_t>(c.vocab));
      const int32_t tok = download<int32_t>(token, 1)[0];
      // Float sums, and a few normed values next to an fp16 rounding boundary may round the other
      // way in the kernel (its 1/rms is a float): a few half-ulps of the largest products.
      double xn_max = 0;
      for (double v : xn) xn_max = std::max(xn_max, std::abs(v));
      for (int64_t r = 0; r < c.vocab; ++r) {
        if (std::isnan(ref[r])) {
          ASSERT_TRUE(std::isnan(got[r])) << "row " << r;
          continue;
        }
        double w_max = 0;
        for (int64_t d = 0; d < c.hidden; ++d) w_max = std::max(w_max, double(std::abs(f(W[r * c.hidden + d]))));
        ASSERT_NEAR(got[r], ref[r], 1e-4 * (1 + std::abs(ref[r])) + 8e-3 * xn_max * w_max) << "row " << r;
      }
      // The token is the host's greedy choice over the logits the kernel wrote.
      EXPECT_EQ(tok, greedy_token(got.data(), c.vocab));
      if (expect >= 0) {
        EXPECT_EQ(tok, expect);
      }
      EXPECT_EQ(download<int>(counter, 1)[0], 0);

      // argmax() over the same logits agrees.
      DeviceBuffer token2(4, "token");
      cuda_model::argmax(logits.as<float>(), c.vocab, token2.as<int32_t>(), stream());
      EXPECT_EQ(download<int32_t>(token2, 1)[0], tok);

      // On-device generation: the token fed back, the step and position advanced.
      DeviceBuffer tokens = DeviceBuffer::upload(std::vector<int32_t>{-1}, "tokens");
      DeviceBuffer out_tokens = DeviceBuffer::upload(std::vector<int32_t>{-1, -1, -1}, "out tokens");
      DeviceBuffer pos = DeviceBuffer::upload(std::vector<int64_t>{40}, "pos"), step = DeviceBuffer::upload(std::vector<int64_t>{1}, "step");
      cuda_model::rmsnorm_head_argmax(d_x.as<float>(), c.delta ? d_delta.as<__half>() : nullptr, d_w.as<float>(), 1e-6f,
                                      d_W.as<__half>(), c.vocab, c.hidden, nullptr, token.as<int32_t>(), scratch, sms,
                                      true, tokens.as<int32_t>(), out_tokens.as<int32_t>(), pos.as<int64_t>(),
                                      step.as<int64_t>(), stream());
      EXPECT_EQ(download<int32_t>(tokens, 1)[0], tok);
      EXPECT_EQ(download<int32_t>(out_tokens, 3), (std::vector<int32_t>{-1, tok, -1}));
      EXPECT_EQ(download<int64_t>(pos, 1)[0], 41);
      EXPECT_EQ(download<int64_t>(step, 1)[0], 2);
    }
}

// ---- Gemma-2's rules ----

// The largest relative difference of two results' (row, head) vectors.
double worst_vector_difference(const std::vector<double>& a, const std::vector<double>& b, int64_t vectors,
                               int64_t hd) {
  double worst = 0;
  for (int64_t vi = 0; vi < vectors; ++vi) {
    double num = 0, den = 0;
    for (int64_t d = 0; d < hd; ++d) {
      num += (a[vi * hd + d] - b[vi * hd + d]) * (a[vi * hd + d] - b[vi * hd + d]);
      den += b[vi * hd + d] * b[vi * hd + d];
    }
    worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
  }
  return worst;
}

// The attention kernels with a score scale of their own, the soft-cap and a sliding window: the
// per-(head, row) kernel (prefill, and decode without splits), the split decode kernel, and the
// fused decode kernel (scale and window; it has no soft-cap) against the reference in double.
TEST(CudaModelKernels, AttentionScaleSoftcapAndWindowMatchReference) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(29);
  const std::vector<AttnCase> cases = {
      // Gemma-2 2B's heads (8 over 4, head_dim 256) with a window narrower than the context.
      {8, 4, 256, 3, 600, 40, 5, false, 0.3f, 2.f},
      // The gemma2_tiny fixture's shape: window 4 across 8 rows.
      {4, 2, 8, 8, 30, 4, 3, false, 0.6f, 1.5f},
      // No window, split wide; an fp8 cache with a window.
      {9, 3, 64, 1, 3000, 0, 32, false, 0.3f, 2.f},
      {16, 8, 128, 2, 1000, 700, 5, true, 0.2f, 1.5f},
      // A prompt chunk from position 0 (20 rows: past the split kernel's rows, the per-row kernel).
      {4, 2, 64, 20, 0, 6, 1, false, 0.3f, 2.f},
  };
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(describe(c));
    const AttnData a = make_attn_data(c, rng);
    CacheCodes want_k, want_v;
    reference_store(a, want_k, want_v);
    const std::vector<double> ref = reference_attention(a, want_k, want_v);
    // The same data under other rules (the cache as this case's step leaves it).
    auto under = [&](float scale, float softcap, int64_t window) {
      AttnData other = a;
      other.c.scale = scale;
      other.c.softcap = softcap;
      other.c.window = window;
      return other;
    };
    // Each rule moves the result far beyond the tolerances below.
    const int64_t vectors = c.rows * c.heads;
    EXPECT_GT(worst_vector_difference(reference_attention(under(0, c.softcap, c.window), want_k, want_v), ref, vectors,
                                      c.hd),
              0.02)
        << "the scale";
    EXPECT_GT(worst_vector_difference(reference_attention(under(c.scale, 0, c.window), want_k, want_v), ref, vectors,
                                      c.hd),
              0.02)
        << "the soft-cap";
    if (c.window > 0) {
      EXPECT_GT(worst_vector_difference(reference_attention(under(c.scale, c.softcap, 0), want_k, want_v), ref,
                                        vectors, c.hd),
                0.02)
          << "the window";
    }
    // Unfused: the per-row kernel (splits 1, or more rows than the split kernel takes) and the
    // split kernel.
    for (int splits : {1, std::min(c.parts, 32)}) {
      SCOPED_TRACE("splits " + std::to_string(splits));
      AttnRun run(a);
      run.scratch.splits = splits;
      run.unfused();
      const std::vector<uint16_t> out = download<uint16_t>(run.out, static_cast<size_t>(c.rows * a.q_dim));
      EXPECT_LT(worst_head_error(out, ref, c.rows * c.heads, c.hd), 3e-3);
      for (int v : download<int>(run.counters, static_cast<size_t>(8 * c.heads))) ASSERT_EQ(v, 0);
    }
    // The short-context kernel: the scale, the soft-cap and the window.
    {
      AttnRun run(a);
      run.short_context();
      const std::vector<uint16_t> out = download<uint16_t>(run.out, static_cast<size_t>(c.rows * a.q_dim));
      EXPECT_LT(worst_head_error(out, ref, c.rows * c.heads, c.hd), 2e-3) << "short-context kernel";
      check_cache(a, run.download_cache(run.kc), run.download_cache(run.vc), want_k, want_v, "short-context kernel");
    }
    // Fused: the scale and the window (no soft-cap).
    if (c.rows <= 8) {
      const AttnData an = under(c.scale, 0, c.window);
      const std::vector<double> ref_nocap = reference_attention(an, want_k, want_v);
      AttnRun run(an);
      run.fused();
      const std::vector<uint16_t> out = download<uint16_t>(run.out, static_cast<size_t>(c.rows * a.q_dim));
      EXPECT_LT(worst_head_error(out, ref_nocap, c.rows * c.heads, c.hd), 2e-3) << "fused";
      check_cache(an, run.download_cache(run.kc), run.download_cache(run.vc), want_k, want_v, "fused");
    }
  }
}

// gelu_tanh(gate) * up against the CPU engine's op (ops::gelu_tanh_mul, float32), rounded once to
// fp16: separate gate / up rows and a fused projection's [gate | up] rows, inter not a multiple
// of the block.
TEST(CudaModelKernels, GeluTanhMulMatchesCpuOp) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(31);
  for (int64_t inter : {96, 1000, 9216})
    for (int64_t m : {1, 5})
      for (bool fused : {false, true}) {
        SCOPED_TRACE("inter " + std::to_string(inter) + " rows " + std::to_string(m) +
                     (fused ? " fused" : " separate"));
        const int64_t stride = fused ? 2 * inter : inter;
        const std::vector<uint16_t> gate = random_halves(static_cast<size_t>(m * stride), rng, -5.f, 5.f);
        const std::vector<uint16_t> up_sep = random_halves(static_cast<size_t>(m * inter), rng, -2.f, 2.f);
        DeviceBuffer d_gate = DeviceBuffer::upload(gate, "gate"), d_up = DeviceBuffer::upload(up_sep, "up");
        DeviceBuffer out(static_cast<size_t>(m * inter) * 2, "out");
        QRT_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.bytes()));
        const __half* g = d_gate.as<__half>();
        const __half* u = fused ? g + inter : d_up.as<__half>();
        cuda_model::gelu_tanh_mul(g, u, stride, out.as<__half>(), m, inter, stream());
        const std::vector<uint16_t> got = download<uint16_t>(out, static_cast<size_t>(m * inter));
        for (int64_t r = 0; r < m; ++r) {
          std::vector<float> gr(static_cast<size_t>(inter)), ur(gr.size());
          for (int64_t c = 0; c < inter; ++c) {
            gr[c] = f(gate[r * stride + c]);
            ur[c] = fused ? f(gate[r * stride + inter + c]) : f(up_sep[r * inter + c]);
          }
          ops::gelu_tanh_mul(gr.data(), ur.data(), inter);
          for (int64_t c = 0; c < inter; ++c)
            // One fp16 rounding (a value next to a boundary may round the other way).
            ASSERT_NEAR(f(got[r * inter + c]), gr[c], 1e-3 * std::abs(gr[c]) + 1e-6) << "row " << r << " col " << c;
        }
      }
}

// The branch-output norm in place over fp16 rows against the CPU engine's norm (ops::rms_norm).
TEST(CudaModelKernels, RmsnormHalfMatchesCpuNorm) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(37);
  for (int64_t hidden : {8, 64, 1002, 2304})
    for (int64_t m : {1, 3, 9}) {
      SCOPED_TRACE("hidden " + std::to_string(hidden) + " rows " + std::to_string(m));
      const std::vector<uint16_t> x = random_halves(static_cast<size_t>(m * hidden), rng, -30.f, 30.f);
      std::vector<float> weight(static_cast<size_t>(hidden));
      std::uniform_real_distribution<float> wd(0.2f, 3.f);
      for (auto& w : weight) w = wd(rng);
      DeviceBuffer d_x = DeviceBuffer::upload(x, "x"), d_w = DeviceBuffer::upload(weight, "weight");
      cuda_model::rmsnorm_half(d_x.as<__half>(), d_w.as<float>(), m, hidden, 1e-6f, stream());
      const std::vector<uint16_t> got = download<uint16_t>(d_x, x.size());
      std::vector<float> xf(x.size()), want(x.size());
      for (size_t e = 0; e < x.size(); ++e) xf[e] = f(x[e]);
      ops::rms_norm(xf.data(), weight.data(), want.data(), m, hidden, 1e-6f);
      for (size_t e = 0; e < x.size(); ++e)
        ASSERT_NEAR(f(got[e]), want[e], 2e-3 * std::abs(want[e]) + 1e-4) << "element " << e;
    }
}

// The final soft-cap over float logits in place, against the CPU engine's op (ops::softcap).
TEST(CudaModelKernels, SoftcapMatchesCpuOp) {
  QRT_SKIP_WITHOUT_GPU();
  std::mt19937 rng(41);
  std::uniform_real_distribution<float> d(-100.f, 100.f);
  for (int64_t n : {1, 1000, 256000}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& e : v) e = d(rng);
    DeviceBuffer dv = DeviceBuffer::upload(v, "logits");
    cuda_model::softcap(dv.as<float>(), n, 30.f, stream());
    const std::vector<float> got = download<float>(dv, v.size());
    ops::softcap(v.data(), n, 30.f);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], v[i], 1e-6f * 30.f) << "element " << i;
  }
}

}  // namespace
}  // namespace qrt

#else

TEST(CudaModelKernels, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA: the GPU kernel tests do not apply"; }

#endif
