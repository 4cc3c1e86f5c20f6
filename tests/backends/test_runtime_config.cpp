// RuntimeConfig: the JSON file (fields, errors naming the file and field), backend aliases of
// other libraries, QRT_DISABLE_BACKENDS, the documented precedence of sources, and globs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "qrt/error.h"
#include "qrt/runtime_config.h"

namespace qrt {
namespace {

// A checkpoint whose quantization_config names `backend` and nothing else the runtime reads.
CheckpointRuntime hint(const std::string& backend) {
  CheckpointRuntime c;
  c.backend = backend;
  return c;
}

std::string write_temp(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / ("qrt_cfg_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto p = dir / name;
  std::ofstream(p) << text;
  return p.string();
}

struct EnvGuard {
  explicit EnvGuard(const char* value) {
    if (value) setenv("QRT_DISABLE_BACKENDS", value, 1);
    else unsetenv("QRT_DISABLE_BACKENDS");
  }
  ~EnvGuard() { unsetenv("QRT_DISABLE_BACKENDS"); }
};

TEST(BackendAlias, ReferenceLibraryNamesMapOntoQrt) {
  const std::pair<const char*, const char*> cases[] = {
      {"marlin", "cuda_marlin"},      {"gptq_marlin", "cuda_marlin"}, {"AWQ_MARLIN", "cuda_marlin"},
      {"exllama", "cuda_gemv"},       {"exllama_v1", "cuda_gemv"},    {"exllama_v2", "cuda_gemv"},
      {"exllamav2", "cuda_gemv"},     {"gemv", "cuda_gemv"},          {"gemv_fast", "cuda_gemv"},
      {"gemm", "cuda_dequant"},       {"cuda", "cuda_dequant"},       {"cublas", "cuda_dequant"},
      {"torch", "cuda_dequant"},      {"fp8", "cuda_fp8"},            {"fbgemm_fp8", "cuda_fp8"},
      {"cpu", "cpu_simd"},            {"ipex", "cpu_simd"},           {"torch_cpu", "cpu_simd"},
      {"reference", "cpu_ref"},       {"cpu_ref", "cpu_ref"},         {"auto", "auto"},
      {"exllama-v2", "cuda_gemv"},     {"flute", "cuda_higgs"},        {"cuda_higgs", "cuda_higgs"},
  };
  for (auto [from, to] : cases) {
    std::string why;
    EXPECT_EQ(backend_alias(from, &why), to) << from;
    EXPECT_TRUE(why.empty());
  }
}

TEST(BackendAlias, UnimplementedNamesAreClearErrorsListingWhatExists) {
  for (const char* name : {"triton", "bitblas", "machete", "exllama_v3"}) {
    std::string why;
    EXPECT_EQ(backend_alias(name, &why), "") << name;
    EXPECT_NE(why.find("not implemented in qrt"), std::string::npos) << why;
    EXPECT_NE(why.find("cpu_ref, cpu_simd, cuda_dequant, cuda_fp8, cuda_marlin, cuda_gemv"), std::string::npos) << why;
  }
  std::string why;
  EXPECT_EQ(backend_alias("marlinn", &why), "");
  EXPECT_NE(why.find("unknown backend 'marlinn'"), std::string::npos) << why;
}

TEST(Glob, StarAndQuestionMark) {
  EXPECT_TRUE(glob_match("model.layers.*.mlp.down_proj", "model.layers.12.mlp.down_proj"));
  EXPECT_FALSE(glob_match("model.layers.*.mlp.down_proj", "model.layers.12.mlp.up_proj"));
  EXPECT_TRUE(glob_match("model.layers.?.self_attn.*", "model.layers.3.self_attn.q_proj"));
  EXPECT_FALSE(glob_match("model.layers.?.self_attn.*", "model.layers.13.self_attn.q_proj"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("a*b*c", "aXXbYYbc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXXbYYbd"));
  EXPECT_TRUE(glob_match("exact", "exact"));
}

TEST(ConfigFile, ParsesEveryField) {
  const std::string path = write_temp("full.json", R"({
    "backend": "exllama_v2",
    "fallback": ["gemm", "reference"],
    "disabled": "marlin,fp8",
    "max_input_length": 4096,
    "max_new_tokens": 64,
    "threads": 3,
    "kernel_params": {"split_k": 2, "cpu_simd": {"m_block": 128}},
    "layers": {
      "model.layers.0.self_attn.q_proj": {"tile": [128, 128], "warps": 4},
      "model.layers.*.mlp.down_proj": {"backend": "cpu", "m_tile": 4}
    },
    "tuning_cache": "/tmp/t.json",
    "use_tuning_cache": false
  })");
  const RuntimeConfig c = RuntimeConfig::from_json_file(path, RuntimeConfig{});
  EXPECT_EQ(c.backend, "cuda_gemv");
  EXPECT_EQ(c.fallback, (std::vector<std::string>{"cuda_dequant", "cpu_ref"}));
  EXPECT_EQ(c.disabled, (std::vector<std::string>{"cuda_marlin", "cuda_fp8"}));
  EXPECT_EQ(c.max_input_length, 4096);
  EXPECT_EQ(c.max_new_tokens, 64);
  EXPECT_EQ(c.threads, 3);
  EXPECT_EQ(c.kernel_params.get_int("split_k", 0), 2);
  EXPECT_EQ(c.backend_params.at("cpu_simd").get_int("m_block", 0), 128);
  ASSERT_EQ(c.overrides.size(), 2u);
  EXPECT_EQ(c.overrides[0].pattern, "model.layers.0.self_attn.q_proj");  // file order kept
  EXPECT_EQ(c.overrides[0].params.get_ints("tile"), (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(c.overrides[0].params.get_int("warps", 0), 4);
  EXPECT_EQ(c.overrides[1].backend, "cpu_simd");
  EXPECT_EQ(c.override_for("model.layers.7.mlp.down_proj"), &c.overrides[1]);
  EXPECT_EQ(c.override_for("model.layers.7.mlp.up_proj"), nullptr);
  EXPECT_EQ(c.tuning_cache_path, "/tmp/t.json");
  EXPECT_FALSE(c.use_tuning_cache);
  EXPECT_EQ(c.provenance_of("backend"), "config file " + path);
  EXPECT_EQ(c.provenance_of("threads"), "config file " + path);
}

TEST(ConfigFile, ErrorsNameTheFileAndTheField) {
  auto error_of = [](const std::string& text) {
    const std::string path = write_temp("bad.json", text);
    try {
      RuntimeConfig::from_json_file(path, RuntimeConfig{});
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
      std::string m = e.what();
      EXPECT_NE(m.find(path), std::string::npos) << m;
      return m;
    }
    ADD_FAILURE() << "accepted: " << text;
    return std::string();
  };
  EXPECT_NE(error_of("{\"backend\": \"triton\"}").find("field 'backend'"), std::string::npos);
  EXPECT_NE(error_of("{\"backend\": \"triton\"}").find("not implemented in qrt"), std::string::npos);
  EXPECT_NE(error_of("{\"backnd\": \"auto\"}").find("unknown field 'backnd'"), std::string::npos);
  EXPECT_NE(error_of("{\"max_input_length\": -5}").find("field 'max_input_length'"), std::string::npos);
  EXPECT_NE(error_of("{\"threads\": \"four\"}").find("field 'threads'"), std::string::npos);
  EXPECT_NE(error_of("{\"threads\": 100000}").find("field 'threads' must be at most 256"), std::string::npos);
  EXPECT_NE(error_of("{\"threads\": 9223372036854775807}").find("at most 256"), std::string::npos);
  EXPECT_NE(error_of("{\"layers\": {\"x\": {\"tile\": 1.5}}}").find("layers.x"), std::string::npos);
  EXPECT_NE(error_of("{\"kernel_params\": {\"nonsense\": {\"a\": 1}}}").find("kernel_params.nonsense"), std::string::npos);
  EXPECT_NE(error_of("{\"fallback\": [\"auto\"]}").find("'auto' is not a backend here"), std::string::npos);
  EXPECT_NE(error_of("{ not json").find("malformed JSON"), std::string::npos);
  try {
    RuntimeConfig::from_json_file("/nonexistent/qrt.json", RuntimeConfig{});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);  // a missing file the user named: bad input, exit 2
    EXPECT_NE(std::string(e.what()).find("/nonexistent/qrt.json: no such file"), std::string::npos) << e.what();
  }
}

TEST(Environment, DisableBackends) {
  EnvGuard env("marlin, cpu_simd");
  RuntimeConfig c;
  c.apply_environment();
  EXPECT_EQ(c.disabled, (std::vector<std::string>{"cuda_marlin", "cpu_simd"}));
  EXPECT_EQ(c.provenance_of("disabled"), "env QRT_DISABLE_BACKENDS");
  EnvGuard bad("triton");
  RuntimeConfig d;
  EXPECT_THROW(d.apply_environment(), Error);
}

// default < checkpoint quantization_config.backend < env < config file < CLI flags
TEST(Precedence, AsDocumented) {
  EnvGuard env("cuda_fp8");
  const std::string file = write_temp("prec.json", R"({"backend": "cpu_ref", "disabled": ["cuda_gemv"], "threads": 2,
                                                      "max_input_length": 1000})");
  // default
  RuntimeConfig d = build_runtime_config(hint(""), "", CliOverrides{});
  EXPECT_EQ(d.backend, "auto");
  EXPECT_EQ(d.provenance_of("backend"), "default");
  EXPECT_EQ(d.disabled, std::vector<std::string>{"cuda_fp8"});
  // checkpoint beats default
  RuntimeConfig ck = build_runtime_config(hint("exllama"), "", CliOverrides{});
  EXPECT_EQ(ck.backend, "cuda_gemv");
  EXPECT_TRUE(ck.backend_is_hint);
  EXPECT_NE(ck.provenance_of("backend").find("checkpoint"), std::string::npos);
  // config file beats checkpoint; disabled lists add up (env + file)
  RuntimeConfig f = build_runtime_config(hint("exllama"), file, CliOverrides{});
  EXPECT_EQ(f.backend, "cpu_ref");
  EXPECT_FALSE(f.backend_is_hint);
  EXPECT_EQ(f.disabled, (std::vector<std::string>{"cuda_fp8", "cuda_gemv"}));
  EXPECT_EQ(f.threads, 2);
  // CLI beats the file
  CliOverrides cli;
  cli.backend = "cpu";
  cli.threads = 1;
  cli.disabled = std::vector<std::string>{"marlin"};
  RuntimeConfig all = build_runtime_config(hint("exllama"), file, cli);
  EXPECT_EQ(all.backend, "cpu_simd");
  EXPECT_EQ(all.provenance_of("backend"), "cli --backend");
  EXPECT_EQ(all.threads, 1);
  EXPECT_EQ(all.max_input_length, 1000) << "not given on the CLI: the file's value stays";
  EXPECT_EQ(all.disabled, (std::vector<std::string>{"cuda_fp8", "cuda_gemv", "cuda_marlin"}));
  // An unknown checkpoint backend is a warning, not an error (the file is someone else's).
  std::vector<std::string> warnings;
  RuntimeConfig w = build_runtime_config(hint("triton"), "", CliOverrides{}, &warnings);
  EXPECT_EQ(w.backend, "auto");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("not implemented in qrt"), std::string::npos);
  // ... but an unknown CLI backend is an error.
  CliOverrides bad;
  bad.backend = "triton";
  EXPECT_THROW(build_runtime_config(hint(""), "", bad), Error);
}

TEST(KernelParamsJson, RoundTripAndErrors) {
  KernelParams p = KernelParams::from_json(R"({"warps": 4, "tile": [128, 64], "isa": "avx2", "on": true})");
  EXPECT_EQ(p.get_int("warps", 0), 4);
  EXPECT_EQ(p.get_int("on", 0), 1);
  EXPECT_EQ(p.get_ints("tile"), (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(p.to_json(), R"({"isa":"avx2","on":1,"tile":[128,64],"warps":4})");
  EXPECT_EQ(KernelParams::from_json(p.to_json()), p);
  EXPECT_THROW(KernelParams::from_json("[1]"), Error);
  EXPECT_THROW(KernelParams::from_json(R"({"a": 1.5})"), Error);
  EXPECT_THROW(KernelParams::from_json(R"({"a": [1, "x"]})"), Error);
  EXPECT_THROW(KernelParams::from_json("{"), Error);
  KernelParams a, b;
  a.values["x"] = int64_t{1};
  a.values["y"] = int64_t{2};
  b.values["y"] = int64_t{3};
  EXPECT_EQ(a.merged(b).get_int("y", 0), 3);
  EXPECT_EQ(a.merged(b).get_int("x", 0), 1);
}

// quantization_config runtime fields: each is applied or named in one warning line.
TEST(CheckpointRuntimeFields, GptqFieldsAreAppliedOrNamed) {
  const QuantizationConfig qc = parse_quantization_config(R"({"quant_method": "gptq", "bits": 4, "group_size": 128,
      "max_input_length": 4096, "use_exllama": false, "exllama_config": {"version": 2}, "use_cuda_fp16": true,
      "backend": "gptq_marlin"})");
  std::vector<std::string> warnings;
  const RuntimeConfig c = build_runtime_config(checkpoint_runtime(qc), "", CliOverrides{}, &warnings);
  EXPECT_EQ(c.max_input_length, 4096);
  EXPECT_EQ(c.provenance_of("max_input_length"), "checkpoint quantization_config.max_input_length");
  EXPECT_EQ(c.disabled, std::vector<std::string>{"cuda_gemv"});
  EXPECT_NE(c.provenance_of("disabled").find("use_exllama: false"), std::string::npos);
  EXPECT_EQ(c.backend, "cuda_marlin");
  EXPECT_TRUE(c.backend_is_hint);
  ASSERT_EQ(warnings.size(), 1u) << "exllama_config.version is moot once ExLlama is off";
  EXPECT_NE(warnings[0].find("use_cuda_fp16"), std::string::npos);
  // The CLI still wins over the checkpoint's length.
  CliOverrides cli;
  cli.max_input_length = 100;
  EXPECT_EQ(build_runtime_config(checkpoint_runtime(qc), "", cli).max_input_length, 100);
  // disable_exllama: true is the older spelling of use_exllama: false; a version alone is named.
  const auto old = build_runtime_config(
      checkpoint_runtime(parse_quantization_config(R"({"quant_method": "gptq", "bits": 4, "disable_exllama": true})")),
      "", CliOverrides{});
  EXPECT_EQ(old.disabled, std::vector<std::string>{"cuda_gemv"});
  warnings.clear();
  build_runtime_config(checkpoint_runtime(parse_quantization_config(
                           R"({"quant_method": "gptq", "bits": 4, "exllama_config": {"version": 1}})")),
                       "", CliOverrides{}, &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("exllama_config.version 1"), std::string::npos);
}

TEST(CheckpointRuntimeFields, AwqAndFp8FieldsAreNamed) {
  std::vector<std::string> warnings;
  build_runtime_config(checkpoint_runtime(parse_quantization_config(
                           R"({"quant_method": "awq", "bits": 4, "do_fuse": true, "fuse_max_seq_len": 512,
                               "modules_to_fuse": {"attention": ["q_proj"]}, "backend": "exllamav2"})")),
                       "", CliOverrides{}, &warnings);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("do_fuse / modules_to_fuse"), std::string::npos);
  EXPECT_NE(warnings[1].find("fuse_max_seq_len 512"), std::string::npos);
  warnings.clear();
  build_runtime_config(checkpoint_runtime(parse_quantization_config(
                           R"({"quant_method": "fp8", "activation_scheme": "static"})")),
                       "", CliOverrides{}, &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("input_scale"), std::string::npos);
  warnings.clear();
  build_runtime_config(checkpoint_runtime(parse_quantization_config(
                           R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups":
                               {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float",
                               "strategy": "channel"}, "input_activations": {"num_bits": 8, "type": "float",
                               "dynamic": false}}}})")),
                       "", CliOverrides{}, &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("input_activations (static)"), std::string::npos);
}

// Every name of the alias table is accepted inside a checkpoint as a hint for the backend it maps to.
TEST(CheckpointRuntimeFields, EveryAliasWorksInsideACheckpoint) {
  for (const auto& [alias, backend] : backend_alias_table()) {
    for (const char* method : {"gptq", "awq"}) {
      SCOPED_TRACE(std::string(method) + " backend " + alias);
      const QuantizationConfig qc = parse_quantization_config(std::string(R"({"quant_method": ")") + method +
                                                              R"(", "bits": 4, "backend": ")" + alias + "\"}");
      std::vector<std::string> warnings;
      const RuntimeConfig c = build_runtime_config(checkpoint_runtime(qc), "", CliOverrides{}, &warnings);
      EXPECT_TRUE(warnings.empty()) << warnings[0];
      if (alias == "auto") continue;
      EXPECT_EQ(c.backend, backend);
    }
  }
}

}  // namespace
}  // namespace qrt
