// Checkpoint loader: a tiny HF folder (GPTQ, FP8 and plain) and a tiny GGUF written here, the rope
// un-permute against an independent re-implementation of llama.cpp's permute, mismatched shapes and
// unknown architectures, and the default SmolLM2 GGUF when QRT_DEFAULT_MODEL is set.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/gguf.h"
#include "qrt/model.h"
#include "qrt/safetensors.h"
#include "quant/formats/codecs.h"
#include "quant/rtn.h"

using namespace qrt;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("qrt_ckpt_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float sd = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Tiny llama: hidden 64, intermediate 128, 2 layers, 4 heads of 16, 2 kv heads, vocab 40.
constexpr int64_t H = 64, I = 128, L = 2, NH = 4, NKV = 2, HD = 16, V = 40;

std::string config_json(const std::string& arch, const std::string& quant = "", bool tie = true) {
  std::string s = R"({"architectures": [")" + arch + R"("], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 40, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 256,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 128},
    "tie_word_embeddings": )" + std::string(tie ? "true" : "false") + R"(, "bos_token_id": 1, "eos_token_id": [2, 3])";
  if (!quant.empty()) s += R"(, "quantization_config": )" + quant;
  return s + "}";
}

struct Shapes {
  std::string name;
  int64_t out, in;
};
std::vector<Shapes> linear_shapes() {
  std::vector<Shapes> v;
  for (int l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    v.push_back({p + "self_attn.q_proj", NH * HD, H});
    v.push_back({p + "self_attn.k_proj", NKV * HD, H});
    v.push_back({p + "self_attn.v_proj", NKV * HD, H});
    v.push_back({p + "self_attn.o_proj", H, NH * HD});
    v.push_back({p + "mlp.gate_proj", I, H});
    v.push_back({p + "mlp.up_proj", I, H});
    v.push_back({p + "mlp.down_proj", H, I});
  }
  return v;
}

void add_common(SafetensorsWriter& w, int64_t vocab = V) {
  auto emb = random_floats(vocab * H, 1);
  w.add_float("model.embed_tokens.weight", DType::F32, {vocab, H}, emb);
  std::vector<float> ones(H, 1.0f);
  w.add_float("model.norm.weight", DType::F32, {H}, ones);
  for (int l = 0; l < L; ++l)
    for (const char* n : {"input_layernorm", "post_attention_layernorm"})
      w.add_float("model.layers." + std::to_string(l) + "." + n + ".weight", DType::F32, {H}, ones);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const qrt::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// llama.cpp convert_hf_to_gguf permute, re-implemented from its definition:
// w.reshape(n_head, 2, rows/n_head/2, K).swapaxes(1, 2).reshape(rows, K).
std::vector<float> llama_cpp_permute(const std::vector<float>& w, int64_t rows, int64_t k, int64_t n_head) {
  std::vector<float> out(w.size());
  const int64_t half = rows / n_head / 2;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t i = 0; i < 2; ++i)   // out index (h, j, i) <- in index (h, i, j)
        for (int64_t c = 0; c < k; ++c)
          out[((h * half + j) * 2 + i) * k + c] = w[((h * 2 + i) * half + j) * k + c];
  return out;
}

}  // namespace

TEST(Checkpoint, HfGptqFolder) {
  TempDir dir;
  write_file(dir.path / "config.json",
             config_json("LlamaForCausalLM", R"({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": false,
                                                 "sym": false, "checkpoint_format": "gptq", "mystery": 1})"));
  write_file(dir.path / "generation_config.json", R"({"eos_token_id": [3, 7], "temperature": 0.6, "top_p": 0.9})");
  write_file(dir.path / "tokenizer.json", "{}");
  SafetensorsWriter w((dir.path / "model.safetensors").string());
  add_common(w);
  std::map<std::string, QuantizedWeight> originals;
  int seed = 10;
  for (const auto& s : linear_shapes()) {
    auto f = random_floats(s.out * s.in, seed++);
    QuantizedWeight q = quant::rtn_quantize(s.name, f.data(), s.out, s.in, 4, 32, false);
    for (auto& t : quant::encode_gptq(q, false)) w.add(s.name + "." + t.suffix, t.dtype, t.shape, t.data);
    for (auto& x : q.scales) x = fp16_to_f32(f32_to_fp16(x));
    originals[s.name] = q;
  }
  w.write();

  auto ck = open_checkpoint(dir.path.string());
  EXPECT_EQ(ck->kind(), CheckpointKind::HfFolder);
  const ModelConfig& c = ck->config();
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, H);
  EXPECT_EQ(c.num_kv_heads, NKV);
  EXPECT_EQ(c.head_dim, HD);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 128);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 3, 7}));
  EXPECT_DOUBLE_EQ(*ck->generation_defaults().temperature, 0.6);
  EXPECT_EQ(ck->quantization().method(), QuantMethod::Gptq);
  ASSERT_EQ(ck->warnings().size(), 1u);
  EXPECT_NE(ck->warnings()[0].find("mystery"), std::string::npos);
  ASSERT_EQ(ck->linears().size(), 14u);   // tied: no lm_head
  for (const auto& l : ck->linears()) {
    EXPECT_TRUE(l.quantized);
    EXPECT_EQ(l.spec.bits, 4);
    EXPECT_EQ(l.spec.zero_kind, ZeroKind::Integer);
    QuantizedWeight q = ck->load_quantized(l.spec.name);
    const QuantizedWeight& o = originals.at(l.spec.name);
    EXPECT_EQ(q.codes, o.codes);
    EXPECT_EQ(q.zeros, o.zeros);
    EXPECT_EQ(q.scales, o.scales);
  }
  // A quantized linear is one logical tensor; load_float dequantizes it.
  EXPECT_TRUE(ck->has_tensor("model.layers.0.mlp.up_proj.weight"));
  EXPECT_FALSE(ck->has_tensor("model.layers.0.mlp.up_proj.qweight") &&
               std::any_of(ck->tensors().begin(), ck->tensors().end(),
                           [](const auto& t) { return t.name == "model.layers.0.mlp.up_proj.qweight"; }));
  EXPECT_EQ(ck->load_float("model.layers.1.mlp.down_proj.weight"),
            dequantize_reference(originals.at("model.layers.1.mlp.down_proj")));
  EXPECT_EQ(ck->load_float("model.norm.weight"), std::vector<float>(H, 1.0f));
  EXPECT_NE(ck->tokenizer_json_path().find("tokenizer.json"), std::string::npos);
  EXPECT_EQ(ck->load_raw("model.norm.weight").dtype, DType::F32);
}

// load_model decodes the layers on several threads; the warnings the checkpoint collects while
// doing so (here one per layer: stored zero points that a sym = true config ignores) come out in
// the order of the layers on every run, the config's own warning first.
TEST(Checkpoint, LoadWarningsFollowTheLayerOrder) {
  TempDir dir;
  write_file(dir.path / "config.json",
             config_json("LlamaForCausalLM", R"({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": false,
                                                 "sym": true, "checkpoint_format": "gptq", "mystery": 1})"));
  SafetensorsWriter w((dir.path / "model.safetensors").string());
  add_common(w);
  int seed = 30;
  for (const auto& s : linear_shapes()) {
    auto f = random_floats(s.out * s.in, seed++);
    QuantizedWeight q = quant::rtn_quantize(s.name, f.data(), s.out, s.in, 4, 32, false);   // zero points vary
    for (auto& t : quant::encode_gptq(q, false)) w.add(s.name + "." + t.suffix, t.dtype, t.shape, t.data);
  }
  w.write();
  for (int rep = 0; rep < 10; ++rep) {
    auto ck = open_checkpoint(dir.path.string());
    load_model(*ck);
    const auto& warnings = ck->warnings();
    const auto shapes = linear_shapes();
    ASSERT_EQ(warnings.size(), 1 + shapes.size());
    EXPECT_NE(warnings[0].find("mystery"), std::string::npos);
    for (size_t i = 0; i < shapes.size(); ++i)
      EXPECT_EQ(warnings[1 + i].rfind(shapes[i].name + ".qzeros: ", 0), 0u) << "warning " << 1 + i << ": " << warnings[1 + i];
  }
}

TEST(Checkpoint, HfPlainAndFp8Folders) {
  TempDir dir;
  write_file(dir.path / "config.json", config_json("MistralForCausalLM", "", false));
  SafetensorsWriter w((dir.path / "model.safetensors").string());
  add_common(w);
  for (const auto& s : linear_shapes()) w.add_float(s.name + ".weight", DType::BF16, {s.out, s.in}, random_floats(s.out * s.in, 3));
  w.add_float("lm_head.weight", DType::F16, {V, H}, random_floats(V * H, 4));
  w.write();
  auto ck = open_checkpoint(dir.path.string());
  EXPECT_EQ(ck->quantization().method(), QuantMethod::None);
  ASSERT_EQ(ck->linears().size(), 15u);
  EXPECT_EQ(ck->linears().back().spec.name, "lm_head");
  EXPECT_FALSE(ck->linears()[0].quantized);
  EXPECT_EQ(ck->linears()[0].stored_dtype, DType::BF16);
  EXPECT_THROW(ck->load_quantized("lm_head"), qrt::Error);

  TempDir dir8;
  write_file(dir8.path / "config.json",
             config_json("LlamaForCausalLM", R"({"quant_method": "fp8", "activation_scheme": "dynamic",
                                                 "fmt": "e4m3", "weight_block_size": [32, 32]})"));
  SafetensorsWriter w8((dir8.path / "model.safetensors").string());
  add_common(w8);
  std::map<std::string, QuantizedWeight> originals;
  for (const auto& s : linear_shapes()) {
    auto f = random_floats(s.out * s.in, 5);
    QuantizedWeight q = quant::fp8_quantize(s.name, f.data(), s.out, s.in, 32, 32);
    for (auto& t : quant::encode_fp8(q)) w8.add(s.name + "." + t.suffix, t.dtype, t.shape, t.data);
    originals[s.name] = q;
  }
  w8.write();
  auto ck8 = open_checkpoint(dir8.path.string());
  const auto& l0 = ck8->linears()[0];
  EXPECT_TRUE(l0.quantized);
  EXPECT_EQ(l0.spec.encoding, WeightEncoding::Fp8E4M3);
  EXPECT_EQ(l0.spec.scale_block_n, 32);
  QuantizedWeight q = ck8->load_quantized(l0.spec.name);
  EXPECT_EQ(dequantize_reference(q), dequantize_reference(originals.at(l0.spec.name)));
}

TEST(Checkpoint, MismatchedShapesNameTensorAndField) {
  TempDir dir;
  write_file(dir.path / "config.json", config_json("LlamaForCausalLM"));
  SafetensorsWriter w((dir.path / "model.safetensors").string());
  add_common(w, V + 1);   // embedding with one row too many
  for (const auto& s : linear_shapes()) w.add_float(s.name + ".weight", DType::F32, {s.out, s.in}, random_floats(s.out * s.in, 3));
  w.write();
  std::string msg = error_of([&] { open_checkpoint(dir.path.string()); });
  EXPECT_NE(msg.find("model.embed_tokens.weight: shape [41, 64] does not match [40, 64]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocab_size=40"), std::string::npos) << msg;

  TempDir dir2;
  write_file(dir2.path / "config.json",
             config_json("LlamaForCausalLM", R"({"quant_method": "gptq", "bits": 8, "group_size": 32})"));
  SafetensorsWriter w2((dir2.path / "model.safetensors").string());
  add_common(w2);
  for (const auto& s : linear_shapes()) {
    auto f = random_floats(s.out * s.in, 3);
    QuantizedWeight q = quant::rtn_quantize(s.name, f.data(), s.out, s.in, 4, 32, true);   // 4-bit tensors
    for (auto& t : quant::encode_gptq(q, false)) w2.add(s.name + "." + t.suffix, t.dtype, t.shape, t.data);
  }
  w2.write();
  msg = error_of([&] { open_checkpoint(dir2.path.string()); });
  EXPECT_NE(msg.find("model.layers.0.self_attn.q_proj.qweight: shape [8, 64] does not match [16, 64]"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("bits=8"), std::string::npos) << msg;
}

TEST(Checkpoint, UnknownArchitectureListsSupported) {
  TempDir dir;
  write_file(dir.path / "config.json", config_json("GPT2LMHeadModel"));
  const std::string msg = error_of([&] { open_checkpoint(dir.path.string()); });
  EXPECT_NE(msg.find("architecture 'GPT2LMHeadModel' is not supported"), std::string::npos) << msg;
  EXPECT_NE(msg.find("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { open_checkpoint((dir.path / "nope").string()); }).find("no such file"), std::string::npos);
}

TEST(Checkpoint, ModelConfigFieldErrors) {
  EXPECT_NE(error_of([] { parse_model_config(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})"); })
                .find("config.json: intermediate_size is missing"),
            std::string::npos);
  const std::string bad_kv = config_json("LlamaForCausalLM");
  std::string text = bad_kv;
  text.replace(text.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 3");
  EXPECT_NE(error_of([&] { parse_model_config(text); }).find("num_key_value_heads 3 does not divide num_attention_heads 4"),
            std::string::npos);
  ModelConfig q = parse_model_config(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 8,
    "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "tie_word_embeddings": true})");
  EXPECT_TRUE(q.attention_bias);
  EXPECT_EQ(q.num_kv_heads, 4);
  EXPECT_EQ(q.model_type, "qwen2");
}

TEST(Checkpoint, UnpermuteRowsInvertsLlamaCppPermute) {
  const int64_t rows = 12, k = 3, heads = 2;
  std::vector<float> w(rows * k);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i);
  const std::vector<float> g = llama_cpp_permute(w, rows, k, heads);
  const std::vector<int64_t> src = gguf_unpermute_rows(rows, heads);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) EXPECT_EQ(g[src[r] * k + c], w[r * k + c]) << r;
  // Hand check for one head of 6 rows: GGUF order is HF rows 0,3,1,4,2,5.
  EXPECT_EQ(src[0], 0);
  EXPECT_EQ(src[3], 1);
  EXPECT_EQ(src[1], 2);
  EXPECT_EQ(src[4], 3);
  EXPECT_THROW(gguf_unpermute_rows(10, 4), qrt::Error);
}

TEST(Checkpoint, GgufLlamaUnpermutesQAndK) {
  // A GGUF whose Q/K are llama.cpp-permuted; the checkpoint must give back the HF rows, for a plain
  // F32 q_proj and for a Q8_0 k_proj (rows of codes and scales).
  GgufWriter gw;
  gw.add_string("general.architecture", "llama");
  gw.add_u32("llama.embedding_length", H);
  gw.add_u32("llama.feed_forward_length", I);
  gw.add_u32("llama.block_count", 1);
  gw.add_u32("llama.attention.head_count", NH);
  gw.add_u32("llama.attention.head_count_kv", NKV);
  gw.add_u32("llama.context_length", 256);
  gw.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  gw.add_f32("llama.rope.freq_base", 10000.0f);
  gw.add_u32("llama.vocab_size", V);
  gw.add_u32("tokenizer.ggml.bos_token_id", 1);
  gw.add_u32("tokenizer.ggml.eos_token_id", 2);
  auto f32_bytes = [](const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  };
  // Q8_0 block: f16 d, 32 int8; values chosen exactly representable: q * d with d = 0.5.
  auto q8_bytes = [](const std::vector<int8_t>& q, int64_t rows, int64_t k) {
    std::vector<uint8_t> b;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t blk = 0; blk < k / 32; ++blk) {
        const uint16_t d = f32_to_fp16(0.5f);
        b.push_back(d & 0xFF);
        b.push_back(d >> 8);
        for (int j = 0; j < 32; ++j) b.push_back(static_cast<uint8_t>(q[r * k + blk * 32 + j]));
      }
    return b;
  };
  const std::vector<float> q_hf = random_floats(NH * HD * H, 21);
  std::vector<int8_t> k_codes(NKV * HD * H);
  std::mt19937 rng(3);
  for (auto& c : k_codes) c = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  std::vector<float> k_hf(k_codes.size());
  for (size_t i = 0; i < k_codes.size(); ++i) k_hf[i] = k_codes[i] * 0.5f;
  std::vector<float> k_codes_f(k_codes.begin(), k_codes.end());
  const std::vector<float> k_perm_f = llama_cpp_permute(k_codes_f, NKV * HD, H, NKV);
  std::vector<int8_t> k_perm(k_perm_f.begin(), k_perm_f.end());

  gw.add_tensor("token_embd.weight", GgmlType::F32, {H, V}, f32_bytes(random_floats(V * H, 1)));
  gw.add_tensor("output_norm.weight", GgmlType::F32, {H}, f32_bytes(std::vector<float>(H, 1.0f)));
  gw.add_tensor("blk.0.attn_norm.weight", GgmlType::F32, {H}, f32_bytes(std::vector<float>(H, 1.0f)));
  gw.add_tensor("blk.0.ffn_norm.weight", GgmlType::F32, {H}, f32_bytes(std::vector<float>(H, 2.0f)));
  gw.add_tensor("blk.0.attn_q.weight", GgmlType::F32, {H, NH * HD}, f32_bytes(llama_cpp_permute(q_hf, NH * HD, H, NH)));
  gw.add_tensor("blk.0.attn_k.weight", GgmlType::Q8_0, {H, NKV * HD}, q8_bytes(k_perm, NKV * HD, H));
  gw.add_tensor("blk.0.attn_v.weight", GgmlType::F32, {H, NKV * HD}, f32_bytes(random_floats(NKV * HD * H, 5)));
  gw.add_tensor("blk.0.attn_output.weight", GgmlType::F32, {NH * HD, H}, f32_bytes(random_floats(NH * HD * H, 6)));
  gw.add_tensor("blk.0.ffn_gate.weight", GgmlType::F32, {H, I}, f32_bytes(random_floats(I * H, 7)));
  gw.add_tensor("blk.0.ffn_up.weight", GgmlType::F32, {H, I}, f32_bytes(random_floats(I * H, 8)));
  gw.add_tensor("blk.0.ffn_down.weight", GgmlType::F32, {I, H}, f32_bytes(random_floats(I * H, 9)));
  TempDir dir;
  const std::string file = (dir.path / "tiny.gguf").string();
  gw.write(file);

  auto ck = open_checkpoint(file);
  EXPECT_EQ(ck->kind(), CheckpointKind::Gguf);
  EXPECT_EQ(ck->config().architecture, "LlamaForCausalLM");
  EXPECT_EQ(ck->config().num_layers, 1);
  EXPECT_TRUE(ck->config().tie_word_embeddings);
  EXPECT_EQ(ck->config().eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(ck->quantization().method(), QuantMethod::Gguf);
  EXPECT_EQ(ck->load_float("model.layers.0.self_attn.q_proj.weight"), q_hf);
  EXPECT_EQ(ck->load_float("model.layers.0.post_attention_layernorm.weight"), std::vector<float>(H, 2.0f));
  ASSERT_EQ(ck->linears().size(), 7u);
  const CheckpointLinear& kl = ck->linears()[1];
  EXPECT_EQ(kl.spec.name, "model.layers.0.self_attn.k_proj");
  EXPECT_TRUE(kl.quantized);
  EXPECT_EQ(kl.spec.bits, 8);
  QuantizedWeight kq = ck->load_quantized("model.layers.0.self_attn.k_proj");
  EXPECT_EQ(dequantize_reference(kq), k_hf);
  EXPECT_EQ(ck->load_float("model.layers.0.self_attn.k_proj.weight"), k_hf);
  EXPECT_EQ(ck->load_raw("model.layers.0.self_attn.q_proj.weight").data.size(), q_hf.size() * 4);
  // The synthesized config.json parses back to the same model config.
  ModelConfig back = parse_model_config(ck->config_json());
  EXPECT_EQ(back.hidden_size, H);
  EXPECT_EQ(back.num_kv_heads, NKV);
  EXPECT_EQ(back.vocab_size, V);
}

TEST(Checkpoint, DefaultModelGguf) {
  const char* env = std::getenv("QRT_DEFAULT_MODEL");
  if (!env || !fs::exists(env)) GTEST_SKIP() << "QRT_DEFAULT_MODEL unset or missing (scripts/fetch-model.sh)";
  auto ck = open_checkpoint(env);
  const ModelConfig& c = ck->config();
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(ck->linears().size(), 30u * 7u + (c.tie_word_embeddings ? 0u : 1u));
  QuantizedWeight q = ck->load_quantized(ck->linears()[0].spec.name);
  EXPECT_EQ(q.N(), 576);
  EXPECT_EQ(q.K(), 576);
  const auto emb = ck->load_float("model.embed_tokens.weight");
  EXPECT_EQ(static_cast<int64_t>(emb.size()), 49152 * 576);
}

namespace {
// An AWQ GEMM folder of the tiny llama with `quant` as its quantization_config, and a NaN scale in
// one layer when asked.
void write_awq_folder(const fs::path& dir, const std::string& quant, bool nan_scale = false) {
  write_file(dir / "config.json", config_json("LlamaForCausalLM", quant));
  SafetensorsWriter w((dir / "model.safetensors").string());
  add_common(w);
  int seed = 40;
  for (const auto& s : linear_shapes()) {
    auto f = random_floats(s.out * s.in, seed++);
    QuantizedWeight q = quant::rtn_quantize(s.name, f.data(), s.out, s.in, 4, 32, false);
    for (auto& t : quant::encode_awq(q, "gemm")) {
      if (nan_scale && s.name == "model.layers.1.mlp.up_proj" && t.suffix == "scales") {
        t.data[6] = 0x00;   // fp16 scale 3 := NaN (0x7E00)
        t.data[7] = 0x7E;
      }
      w.add(s.name + "." + t.suffix, t.dtype, t.shape, t.data);
    }
  }
  w.write();
}
}  // namespace

// What loading would refuse is refused when the checkpoint opens (layouts, from the config) or by
// check_quantized_tensors (values), both of which `qrt plan` runs: a plan that succeeds loads.
TEST(Checkpoint, AwqLayoutsAndBadValuesAreRefusedBeforePlanning) {
  TempDir ok;
  write_awq_folder(ok.path, R"({"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm"})");
  auto ck = open_checkpoint(ok.path.string());
  EXPECT_EQ(check_quantized_tensors(*ck), 14);
  for (const char* bad : {R"("version": "gemv_fast")", R"("version": "marlin")", R"("version": "llm-awq")",
                          R"("backend": "llm-awq")", R"("zero_point": false)"}) {
    SCOPED_TRACE(bad);
    TempDir dir;
    write_awq_folder(dir.path, std::string(R"({"quant_method": "awq", "bits": 4, "group_size": 32, )") + bad + "}");
    try {
      open_checkpoint(dir.path.string());
      ADD_FAILURE() << "opened";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
      EXPECT_NE(std::string(e.what()).find("quantization_config"), std::string::npos) << e.what();
    }
  }
  TempDir nan;
  write_awq_folder(nan.path, R"({"quant_method": "awq", "bits": 4, "group_size": 32})", true);
  auto nck = open_checkpoint(nan.path.string());   // metadata alone is fine
  const std::string err = error_of([&] { check_quantized_tensors(*nck); });
  EXPECT_NE(err.find("model.layers.1.mlp.up_proj"), std::string::npos) << err;
  EXPECT_NE(err.find("NaN"), std::string::npos) << err;
}
