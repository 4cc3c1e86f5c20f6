// Structure fields and values checked against the file they describe, on tiny GGUF files and HF
// folders written here: layer counts both ways, rope.dimension_count, hidden_act, float fields in
// the float32 the engines use, NaN/Inf and integer dtypes in float tensors, the tokenizer's size
// against the model's vocabulary, and generation_config.json values named with their file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/generator.h"
#include "qrt/gguf.h"
#include "qrt/model.h"
#include "qrt/safetensors.h"

namespace qrt {
namespace {

namespace fs = std::filesystem;

constexpr int64_t H = 8, I = 16, NH = 2, NKV = 1, HD = 4;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("qrt_structure_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a qrt::Error";
  return "";
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> ramp(size_t n, float scale = 0.01f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>((i * 7919) % 97) - 0.4f * scale * 97 / 2;
  return v;
}

// A tiny llama GGUF with F32 tensors. `stored` blocks are written; metadata says `block_count`.
struct GgufSpec {
  int64_t block_count = 2, stored = 2, vocab = 32;
  std::function<void(GgufWriter&)> extra_kv;
  std::vector<float> output_norm = std::vector<float>(H, 1.0f);
};

std::string write_gguf(const fs::path& dir, const GgufSpec& s) {
  GgufWriter gw;
  gw.add_string("general.architecture", "llama");
  gw.add_u32("llama.embedding_length", H);
  gw.add_u32("llama.feed_forward_length", I);
  gw.add_u32("llama.block_count", static_cast<uint32_t>(s.block_count));
  gw.add_u32("llama.attention.head_count", NH);
  gw.add_u32("llama.attention.head_count_kv", NKV);
  gw.add_u32("llama.context_length", 64);
  gw.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  gw.add_u32("llama.vocab_size", static_cast<uint32_t>(s.vocab));
  if (s.extra_kv) s.extra_kv(gw);
  gw.add_tensor("token_embd.weight", GgmlType::F32, {H, s.vocab}, f32_bytes(ramp(H * s.vocab)));
  gw.add_tensor("output_norm.weight", GgmlType::F32, {H}, f32_bytes(s.output_norm));
  for (int64_t b = 0; b < s.stored; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    gw.add_tensor(p + "attn_norm.weight", GgmlType::F32, {H}, f32_bytes(std::vector<float>(H, 1.0f)));
    gw.add_tensor(p + "ffn_norm.weight", GgmlType::F32, {H}, f32_bytes(std::vector<float>(H, 1.0f)));
    gw.add_tensor(p + "attn_q.weight", GgmlType::F32, {H, NH * HD}, f32_bytes(ramp(H * NH * HD)));
    gw.add_tensor(p + "attn_k.weight", GgmlType::F32, {H, NKV * HD}, f32_bytes(ramp(H * NKV * HD)));
    gw.add_tensor(p + "attn_v.weight", GgmlType::F32, {H, NKV * HD}, f32_bytes(ramp(H * NKV * HD)));
    gw.add_tensor(p + "attn_output.weight", GgmlType::F32, {NH * HD, H}, f32_bytes(ramp(H * NH * HD)));
    gw.add_tensor(p + "ffn_gate.weight", GgmlType::F32, {H, I}, f32_bytes(ramp(H * I)));
    gw.add_tensor(p + "ffn_up.weight", GgmlType::F32, {H, I}, f32_bytes(ramp(H * I)));
    gw.add_tensor(p + "ffn_down.weight", GgmlType::F32, {I, H}, f32_bytes(ramp(H * I)));
  }
  const std::string file = (dir / "tiny.gguf").string();
  gw.write(file);
  return file;
}

// A tiny llama HF folder (F32 safetensors, tied head). `layers` stored; `config` edited by the caller.
struct HfSpec {
  int64_t layers = 2, vocab = 32;
  nlohmann::json config_edits = nlohmann::json::object();
  DType norm_dtype = DType::F32;
  float norm_value = 1.0f;
};

void write_hf(const fs::path& dir, const HfSpec& s) {
  nlohmann::json c = {{"architectures", {"LlamaForCausalLM"}},
                      {"model_type", "llama"},
                      {"vocab_size", s.vocab},
                      {"hidden_size", H},
                      {"intermediate_size", I},
                      {"num_hidden_layers", s.layers},
                      {"num_attention_heads", NH},
                      {"num_key_value_heads", NKV},
                      {"hidden_act", "silu"},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", true}};
  for (auto& [k, v] : s.config_edits.items()) c[k] = v;
  std::ofstream(dir / "config.json") << c.dump(1);
  SafetensorsWriter st((dir / "model.safetensors").string());
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    st.add_float(name, DType::F32, shape, std::span<const float>(v.data(), v.size()));
  };
  add("model.embed_tokens.weight", {s.vocab, H}, ramp(s.vocab * H));
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    if (s.norm_dtype == DType::F32) {
      add(p + "input_layernorm.weight", {H}, std::vector<float>(H, i == 0 ? s.norm_value : 1.0f));
    } else {
      st.add(p + "input_layernorm.weight", s.norm_dtype, {H}, std::vector<uint8_t>(H * 2, 1));
    }
    add(p + "post_attention_layernorm.weight", {H}, std::vector<float>(H, 1.0f));
    add(p + "self_attn.q_proj.weight", {NH * HD, H}, ramp(H * NH * HD));
    add(p + "self_attn.k_proj.weight", {NKV * HD, H}, ramp(H * NKV * HD));
    add(p + "self_attn.v_proj.weight", {NKV * HD, H}, ramp(H * NKV * HD));
    add(p + "self_attn.o_proj.weight", {H, NH * HD}, ramp(H * NH * HD));
    add(p + "mlp.gate_proj.weight", {I, H}, ramp(H * I));
    add(p + "mlp.up_proj.weight", {I, H}, ramp(H * I));
    add(p + "mlp.down_proj.weight", {H, I}, ramp(H * I));
  }
  add("model.norm.weight", {H}, std::vector<float>(H, 1.0f));
  st.write();
}

TEST(StructureChecks, GgufBlockCountMustMatchStoredBlocks) {
  TempDir d;
  {
    GgufSpec s;
    s.block_count = 1;   // two stored: would run truncated
    const std::string e = error_of([&] { open_checkpoint(write_gguf(d.path, s)); });
    EXPECT_NE(e.find("metadata llama.block_count = 1, but the file stores tensors of 2 blocks (blk.0 .. blk.1): the model "
                     "would run truncated"),
              std::string::npos)
        << e;
  }
  {
    GgufSpec s;
    s.block_count = 3;
    const std::string e = error_of([&] { open_checkpoint(write_gguf(d.path, s)); });
    EXPECT_NE(e.find("block_count = 3, but the file stores tensors of 2 blocks"), std::string::npos) << e;
  }
  GgufSpec ok;
  EXPECT_EQ(open_checkpoint(write_gguf(d.path, ok))->config().num_layers, 2);
}

TEST(StructureChecks, HfLayerCountMustMatchStoredLayers) {
  TempDir d;
  HfSpec s;
  s.config_edits["num_hidden_layers"] = 1;
  write_hf(d.path, s);
  const std::string e = error_of([&] { open_checkpoint(d.path.string()); });
  EXPECT_NE(e.find("config.json: num_hidden_layers = 1, but the safetensors store layers 0..1 (2): the model would run "
                   "truncated"),
            std::string::npos)
      << e;
  s.config_edits["num_hidden_layers"] = 3;
  write_hf(d.path, s);
  EXPECT_NE(error_of([&] { open_checkpoint(d.path.string()); }).find("num_hidden_layers = 3, but the safetensors store"),
            std::string::npos);
}

TEST(StructureChecks, RopeDimensionCountMustBeTheHeadDimension) {
  TempDir d;
  GgufSpec s;
  s.extra_kv = [](GgufWriter& g) { g.add_u32("llama.rope.dimension_count", HD / 2); };
  const std::string e = error_of([&] { open_checkpoint(write_gguf(d.path, s)); });
  EXPECT_NE(e.find("llama.rope.dimension_count = 2, but the head dimension is 4: partial rotary embeddings are not supported"),
            std::string::npos)
      << e;
  s.extra_kv = [](GgufWriter& g) { g.add_u32("llama.rope.dimension_count", HD); };
  EXPECT_NO_THROW(open_checkpoint(write_gguf(d.path, s)));
}

TEST(StructureChecks, OnlySiluAndGeluTanhAreAccepted) {
  TempDir d;
  for (const char* act : {"gelu", "gelu_new", "made_up"}) {
    HfSpec s;
    s.config_edits["hidden_act"] = act;
    write_hf(d.path, s);
    const std::string e = error_of([&] { open_checkpoint(d.path.string()); });
    EXPECT_NE(e.find(std::string("hidden_act '") + act +
                     "' is not supported: qrt runs gated MLPs with \"silu\" or \"gelu_pytorch_tanh\" only"),
              std::string::npos)
        << e;
  }
  // GELU's tanh form (Gemma-2's GeGLU) runs on the CPU whatever the architecture.
  HfSpec tanh;
  tanh.config_edits["hidden_act"] = "gelu_pytorch_tanh";
  write_hf(d.path, tanh);
  EXPECT_EQ(open_checkpoint(d.path.string())->config().hidden_act, "gelu_pytorch_tanh");
  HfSpec partial;
  partial.config_edits["partial_rotary_factor"] = 0.5;
  write_hf(d.path, partial);
  EXPECT_NE(error_of([&] { open_checkpoint(d.path.string()); }).find("partial_rotary_factor 0.5 is not supported"),
            std::string::npos);
}

TEST(StructureChecks, FloatFieldsAreCheckedAsFloat32) {
  TempDir d;
  const std::pair<const char*, nlohmann::json> cases[] = {
      {"rope_theta", 1e-320},                                    // a double denormal: 0 as a float
      {"rope_theta", 0.5},                                       // frequencies that grow
      {"rope_theta", 1e39},                                      // inf as a float
      {"rms_norm_eps", 1e-45},                                   // denormal as a float
  };
  for (const auto& [key, value] : cases) {
    HfSpec s;
    s.config_edits[key] = value;
    write_hf(d.path, s);
    const std::string e = error_of([&] { open_checkpoint(d.path.string()); });
    EXPECT_NE(e.find(std::string("config.json: ") + key + " = "), std::string::npos) << key << ": " << e;
  }
  HfSpec scaling;
  scaling.config_edits["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 1e-45}};
  write_hf(d.path, scaling);
  const std::string e = error_of([&] { open_checkpoint(d.path.string()); });
  EXPECT_NE(e.find("rope_scaling.factor = 1e-45"), std::string::npos) << e;

  GgufSpec g;
  g.extra_kv = [](GgufWriter& w) { w.add_f32("llama.rope.freq_base", 1e-45f); };
  const std::string ge = error_of([&] { open_checkpoint(write_gguf(d.path, g)); });
  EXPECT_NE(ge.find("metadata llama.rope.freq_base = "), std::string::npos) << ge;
  EXPECT_NE(ge.find("float32"), std::string::npos) << ge;
  g.extra_kv = [](GgufWriter& w) {
    w.add_string("llama.rope.scaling.type", "linear");
    w.add_f32("llama.rope.scaling.factor", 1e-45f);
  };
  EXPECT_NE(error_of([&] { open_checkpoint(write_gguf(d.path, g)); }).find("llama.rope.scaling.factor"), std::string::npos);
  g.extra_kv = [](GgufWriter& w) { w.add_string("llama.rope.scaling.type", "\x1b[2J"); };
  const std::string te = error_of([&] { open_checkpoint(write_gguf(d.path, g)); });
  EXPECT_NE(te.find("rope.scaling.type '\\x1b[2J' is not a RoPE scaling qrt knows"), std::string::npos) << te;
}

TEST(StructureChecks, NanOrInfInFloatTensorsIsRefusedAtLoad) {
  TempDir d;
  {
    HfSpec s;
    s.norm_value = std::numeric_limits<float>::quiet_NaN();
    write_hf(d.path, s);
    const std::string e = error_of([&] { load_model(d.path.string()); });
    EXPECT_NE(e.find("tensor model.layers.0.input_layernorm.weight: element 0 is NaN"), std::string::npos) << e;
  }
  GgufSpec g;
  g.output_norm[3] = std::numeric_limits<float>::infinity();
  const std::string e = error_of([&] { load_model(write_gguf(d.path, g)); });
  EXPECT_NE(e.find("tensor model.norm.weight: element 3 is Inf"), std::string::npos) << e;
}

TEST(StructureChecks, IntegerDtypesAreRefusedWhereFloatsAreExpected) {
  TempDir d;
  for (DType t : {DType::I16, DType::U16}) {
    HfSpec s;
    s.norm_dtype = t;
    write_hf(d.path, s);
    const std::string e = error_of([&] { open_checkpoint(d.path.string()); });
    EXPECT_NE(e.find("tensor model.layers.0.input_layernorm.weight: dtype " + std::string(dtype_name(t)) +
                     " where float values (F32, F16, BF16) are expected"),
              std::string::npos)
        << e;
  }
}

TEST(StructureChecks, TokenizerLargerThanTheVocabularyIsAnError) {
  TempDir d;
  HfSpec s;   // vocab 32; the tiny Llama-2 tokenizer has over a thousand tokens
  write_hf(d.path, s);
  fs::copy_file(fs::path(QRT_TEST_DATA) / "tokenizer/tiny_llama2/tokenizer.json", d.path / "tokenizer.json");
  const std::string e = error_of([&] { load_tokenizer(d.path.string()); });
  EXPECT_NE(e.find("tokenizer.json: the tokenizer has"), std::string::npos) << e;
  EXPECT_NE(e.find("more than vocab_size 32 of " + d.path.string() + "/config.json"), std::string::npos) << e;
}

// An engine whose logits always favour one id: what the generator samples is then visible.
class FixedLogits final : public ForwardEngine {
 public:
  FixedLogits(ModelConfig c, int32_t favourite) : config_(std::move(c)), favourite_(favourite) {}
  const ModelConfig& config() const override { return config_; }
  int64_t capacity() const override { return 64; }
  void forward(const int32_t*, int64_t, int64_t, float* logits, bool) override {
    for (int64_t i = 0; i < config_.vocab_size; ++i) logits[i] = i == favourite_ ? 100.0f : static_cast<float>(i % 5);
  }
  const std::vector<LinearPlan>& plans() const override { return plans_; }
  std::vector<std::pair<std::string, std::vector<KernelChoice>>> kernels() const override { return {}; }
  std::map<std::string, int> backend_counts() const override { return {}; }
  std::string device_name() const override { return "fixed"; }

 private:
  ModelConfig config_;
  int32_t favourite_;
  std::vector<LinearPlan> plans_;
};

TEST(StructureChecks, PaddedVocabularyLoadsAndItsPaddingIsNeverSampled) {
  TempDir d;
  HfSpec s;
  s.vocab = 1152;   // past the tiny Llama-2 tokenizer, as padded vocabularies are
  write_hf(d.path, s);
  fs::copy_file(fs::path(QRT_TEST_DATA) / "tokenizer/tiny_llama2/tokenizer.json", d.path / "tokenizer.json");
  const Tokenizer tok = load_tokenizer(d.path.string());
  ASSERT_LT(tok.vocab_size(), 1152);
  ModelConfig c = open_checkpoint(d.path.string())->config();
  FixedLogits engine(c, /*favourite=*/1150);   // a padding row the tokenizer cannot spell
  Generator gen(engine);
  GenerationOptions o;
  o.max_new_tokens = 4;
  const GenerationResult r = gen.generate_text(tok, {1, 5}, o, nullptr);
  ASSERT_EQ(r.tokens.size(), 4u);
  for (int32_t id : r.tokens) EXPECT_LT(id, tok.vocab_size());
}

TEST(StructureChecks, GenerationConfigValuesNameTheFile) {
  TempDir d;
  write_hf(d.path, HfSpec{});
  const std::pair<const char*, double> cases[] = {
      {"temperature", 1e-45}, {"temperature", -1}, {"top_p", 0}, {"top_p", 1.5}, {"min_p", 2}, {"repetition_penalty", 0}};
  for (const auto& [key, value] : cases) {
    std::ofstream(d.path / "generation_config.json") << nlohmann::json{{"do_sample", true}, {key, value}}.dump();
    const std::string e = error_of([&] { open_checkpoint(d.path.string()); });
    EXPECT_NE(e.find((d.path / "generation_config.json").string() + ": " + key + " = "), std::string::npos)
        << key << ": " << e;
  }
  std::ofstream(d.path / "generation_config.json") << R"({"do_sample": true, "temperature": 0.6, "top_p": 0.9})";
  EXPECT_EQ(open_checkpoint(d.path.string())->generation_defaults().temperature.value_or(0), 0.6);
}

// A tiny gemma2 or phi3 GGUF with F32 tensors named as llama.cpp's converter names them; `skip`
// leaves one tensor out, `extra` adds tensors after the blocks.
std::string write_arch_gguf(const fs::path& dir, const std::string& arch, const std::string& skip = "",
                            const std::function<void(GgufWriter&)>& extra = {}) {
  GgufWriter gw;
  gw.add_string("general.architecture", arch);
  gw.add_u32(arch + ".embedding_length", H);
  gw.add_u32(arch + ".feed_forward_length", I);
  gw.add_u32(arch + ".block_count", 1);
  gw.add_u32(arch + ".attention.head_count", NH);
  gw.add_u32(arch + ".attention.head_count_kv", NKV);
  gw.add_u32(arch + ".context_length", 64);
  gw.add_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  auto add = [&](const std::string& name, std::vector<int64_t> ne) {
    if (name == skip) return;
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    gw.add_tensor(name, GgmlType::F32, ne, f32_bytes(ramp(static_cast<size_t>(n))));
  };
  add("token_embd.weight", {H, 32});
  add("output_norm.weight", {H});
  const std::vector<std::string> norms = arch == "gemma2"
                                             ? std::vector<std::string>{"attn_norm", "post_attention_norm", "ffn_norm",
                                                                        "post_ffw_norm"}
                                             : std::vector<std::string>{"attn_norm", "ffn_norm"};
  for (const auto& n : norms) add("blk.0." + n + ".weight", {H});
  if (arch == "phi3") {
    add("blk.0.attn_qkv.weight", {H, (NH + 2 * NKV) * HD});
    add("blk.0.ffn_up.weight", {H, 2 * I});
  } else {
    add("blk.0.attn_q.weight", {H, NH * HD});
    add("blk.0.attn_k.weight", {H, NKV * HD});
    add("blk.0.attn_v.weight", {H, NKV * HD});
    add("blk.0.ffn_gate.weight", {H, I});
    add("blk.0.ffn_up.weight", {H, I});
  }
  add("blk.0.attn_output.weight", {NH * HD, H});
  add("blk.0.ffn_down.weight", {I, H});
  if (extra) extra(gw);
  const std::string file = (dir / (arch + ".gguf")).string();
  gw.write(file);
  return file;
}

// gemma2 / phi3 GGUF files: a missing tensor is named as the file would spell it (with the HF name
// qrt maps it to), and phi3 files with q/k/v stored apart are told where the converter puts them.
TEST(StructureChecks, Gemma2AndPhi3GgufTensorsNamedAsStored) {
  TempDir d;
  EXPECT_NO_THROW(open_checkpoint(write_arch_gguf(d.path, "gemma2")));
  EXPECT_NO_THROW(open_checkpoint(write_arch_gguf(d.path, "phi3")));
  std::string e = error_of([&] { open_checkpoint(write_arch_gguf(d.path, "gemma2", "blk.0.post_ffw_norm.weight")); });
  EXPECT_NE(e.find("tensor blk.0.post_ffw_norm.weight (model.layers.0.post_feedforward_layernorm.weight) is missing"),
            std::string::npos)
      << e;
  e = error_of([&] {
    open_checkpoint(write_arch_gguf(d.path, "phi3", "blk.0.attn_qkv.weight", [](GgufWriter& g) {
      g.add_tensor("blk.0.attn_q.weight", GgmlType::F32, {H, NH * HD}, f32_bytes(ramp(H * NH * HD)));
    }));
  });
  EXPECT_NE(e.find("tensor blk.0.attn_qkv.weight (model.layers.0.self_attn.qkv_proj.weight) is missing (phi3 files "
                   "hold q/k/v fused in attn_qkv"),
            std::string::npos)
      << e;
  // A phi3 ffn_up of the size of one half (gate or up alone) is refused by its shape.
  e = error_of([&] {
    open_checkpoint(write_arch_gguf(d.path, "phi3", "blk.0.ffn_up.weight", [](GgufWriter& g) {
      g.add_tensor("blk.0.ffn_up.weight", GgmlType::F32, {H, I}, f32_bytes(ramp(H * I)));
    }));
  });
  EXPECT_NE(e.find("tensor blk.0.ffn_up.weight (model.layers.0.mlp.gate_up_proj.weight): shape [16, 8] does not match "
                   "[32, 8]"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace qrt
