// Every GGUF block type qrt decodes, end to end: a tiny llama GGUF whose seven linears are stored in
// that type is loaded and run by the CPU engine through the planned backend, and its logits match
// those of the same GGUF with the linears stored as the F32 values the blocks dequantize to (the
// decoders themselves are checked against llama.cpp's Python package in tests/io/test_gguf_blocks.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <unistd.h>

#include "qrt/dtype.h"
#include "qrt/gguf.h"
#include "qrt/model.h"
#include "quant/formats/gguf_blocks.h"

namespace qrt {
namespace {

namespace fs = std::filesystem;

// hidden and intermediate are multiples of 256, the K-quant super-block.
constexpr int64_t kHidden = 256, kInter = 512, kHeads = 4, kKvHeads = 2, kHeadDim = 64, kVocab = 64;

struct TypeCase {
  GgmlType type;
  std::vector<int> f16_offsets;  // byte offsets of the block's fp16 fields
  std::vector<float> magnitude;  // |value| range of each field, sized so weights are ~0.05
};

std::vector<TypeCase> type_cases() {
  return {
      {GgmlType::Q5_0, {0}, {3e-3f}},
      {GgmlType::Q5_1, {0, 2}, {3e-3f, 5e-2f}},
      {GgmlType::Q5_K, {0, 2}, {3e-5f, 8e-4f}},
      {GgmlType::Q2_K, {80, 82}, {1e-3f, 3e-3f}},
      {GgmlType::Q3_K, {108}, {4e-4f}},
      {GgmlType::IQ4_NL, {0}, {4e-4f}},
      {GgmlType::IQ4_XS, {0}, {1.2e-5f}},
  };
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<uint8_t> random_blocks(const TypeCase& tc, int64_t rows, int64_t k, std::mt19937& rng) {
  const int64_t ts = ggml_type_size(tc.type), blocks = rows * k / ggml_block_size(tc.type);
  std::vector<uint8_t> b(static_cast<size_t>(blocks * ts));
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  for (int64_t i = 0; i < blocks; ++i)
    for (size_t f = 0; f < tc.f16_offsets.size(); ++f) {
      std::uniform_real_distribution<float> d(-tc.magnitude[f], tc.magnitude[f]);
      const uint16_t h = f32_to_fp16(d(rng));
      b[i * ts + tc.f16_offsets[f]] = static_cast<uint8_t>(h);
      b[i * ts + tc.f16_offsets[f] + 1] = static_cast<uint8_t>(h >> 8);
    }
  return b;
}

// Two GGUFs of one model: linears in `tc.type`, and the same linears as their dequantized F32 values.
void write_pair(const TypeCase& tc, const fs::path& quantized, const fs::path& dense) {
  std::mt19937 rng(1700 + static_cast<uint32_t>(tc.type));
  GgufWriter q, f;
  for (GgufWriter* w : {&q, &f}) {
    w->add_string("general.architecture", "llama");
    w->add_u32("llama.embedding_length", kHidden);
    w->add_u32("llama.feed_forward_length", kInter);
    w->add_u32("llama.block_count", 1);
    w->add_u32("llama.attention.head_count", kHeads);
    w->add_u32("llama.attention.head_count_kv", kKvHeads);
    w->add_u32("llama.context_length", 64);
    w->add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w->add_u32("llama.vocab_size", kVocab);
  }
  auto both = [&](const std::string& name, std::vector<int64_t> ne, const std::vector<float>& v) {
    q.add_tensor(name, GgmlType::F32, ne, f32_bytes(v));
    f.add_tensor(name, GgmlType::F32, ne, f32_bytes(v));
  };
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> emb(kVocab * kHidden);
  for (auto& x : emb) x = nd(rng);
  both("token_embd.weight", {kHidden, kVocab}, emb);
  both("output_norm.weight", {kHidden}, std::vector<float>(kHidden, 1.0f));
  both("blk.0.attn_norm.weight", {kHidden}, std::vector<float>(kHidden, 1.0f));
  both("blk.0.ffn_norm.weight", {kHidden}, std::vector<float>(kHidden, 1.0f));
  const struct {
    const char* name;
    int64_t out, in;
  } linears[] = {{"attn_q", kHeads * kHeadDim, kHidden}, {"attn_k", kKvHeads * kHeadDim, kHidden},
                 {"attn_v", kKvHeads * kHeadDim, kHidden}, {"attn_output", kHidden, kHeads * kHeadDim},
                 {"ffn_gate", kInter, kHidden}, {"ffn_up", kInter, kHidden}, {"ffn_down", kHidden, kInter}};
  for (const auto& l : linears) {
    const std::string name = std::string("blk.0.") + l.name + ".weight";
    std::vector<uint8_t> blocks = random_blocks(tc, l.out, l.in, rng);
    std::vector<float> values(static_cast<size_t>(l.out * l.in));
    quant::gguf_dequantize(tc.type, blocks, values, name);
    q.add_tensor(name, tc.type, {l.in, l.out}, std::move(blocks));
    f.add_tensor(name, GgmlType::F32, {l.in, l.out}, f32_bytes(values));
  }
  q.write(quantized.string());
  f.write(dense.string());
}

std::vector<float> logits_of(const std::string& path, const std::string& backend, const std::vector<int32_t>& tokens,
                             std::string* quantization) {
  auto w = load_model(path);
  if (quantization) *quantization = w->quantization;
  EngineOptions o;
  o.runtime.max_input_length = 16;
  o.runtime.max_new_tokens = 0;
  o.runtime.threads = 1;
  o.runtime.use_tuning_cache = false;
  o.runtime.backend = backend;
  o.device = probe_cpu();
  o.dense_dtype = DenseDType::F32;
  o.kv_dtype = KvCacheDType::F32;
  auto engine = make_cpu_engine(w, o);
  std::vector<float> logits(tokens.size() * kVocab);
  engine->forward(tokens.data(), static_cast<int64_t>(tokens.size()), 0, logits.data(), true);
  return logits;
}

class GgufModelTypes : public ::testing::TestWithParam<TypeCase> {};

TEST_P(GgufModelTypes, LogitsMatchTheDequantizedFloatModel) {
  const TypeCase& tc = GetParam();
  const fs::path dir = fs::temp_directory_path() / ("qrt_gguf_types_" + std::to_string(::getpid()) + "_" +
                                                    ggml_type_name(tc.type));
  fs::create_directories(dir);
  write_pair(tc, dir / "q.gguf", dir / "f32.gguf");
  const std::vector<int32_t> tokens = {1, 7, 3, 60, 12, 5};
  std::string quantization;
  const auto ref = logits_of((dir / "f32.gguf").string(), "", tokens, nullptr);
  double ref_norm = 0;
  for (float v : ref) ref_norm += double(v) * v;
  ref_norm = std::sqrt(ref_norm / ref.size());
  ASSERT_GT(ref_norm, 1e-3);
  // cpu_ref computes with the dequantized floats: equal up to summation order (measured <= 5e-7).
  // cpu_simd, with its default two-level int8 activations, measured <= 3e-5.
  std::vector<std::pair<std::string, double>> runs = {{"cpu_ref", 1e-5}};
  if (probe_cpu().cpu.features.avx2) runs.push_back({"cpu_simd", 5e-4});
  for (const auto& [backend, tolerance] : runs) {
    SCOPED_TRACE("backend " + backend);
    const auto got = logits_of((dir / "q.gguf").string(), backend, tokens, &quantization);
    EXPECT_NE(quantization.find(ggml_type_name(tc.type)), std::string::npos) << quantization;
    ASSERT_EQ(got.size(), ref.size());
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - ref[i]));
    std::printf("[gguf-types] %s %s: worst |logit diff| / RMS logit = %.2e\n", ggml_type_name(tc.type).c_str(),
                backend.c_str(), worst / ref_norm);
    EXPECT_LT(worst / ref_norm, tolerance) << "worst |diff| " << worst << ", RMS logit " << ref_norm;
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(NewBlockTypes, GgufModelTypes, ::testing::ValuesIn(type_cases()),
                         [](const ::testing::TestParamInfo<TypeCase>& info) { return ggml_type_name(info.param.type); });

}  // namespace
}  // namespace qrt
