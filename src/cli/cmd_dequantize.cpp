// `qrt dequantize IN OUT [--dtype f16|bf16|f32] [--force]`: writes a plain Hugging Face folder with
// every quantized linear dequantized by the reference dequantizer (GPTQ, AWQ, FP8, LLM.int8, GGUF
// blocks). config.json loses its quantization_config (for GGUF input it is synthesized from the
// metadata); tokenizer files are copied (for GGUF input a tokenizer.json is written from the GGUF
// vocabulary when it is a byte-level BPE one). OUT is written atomically (temp folder, then rename).
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "cli/progress.h"
#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "io/json_strict.h"
#include "quant/checkpoint_impl.h"
#include "quant/gguf_tokenizer_export.h"
#include "quant/hf_writer.h"

namespace qrt::cli {
namespace {

struct Options {
  std::string in, out, dtype = "f16";
  bool force = false;
};

using qrt::cli::Progress;

int run(const Options& o) {
  const DType dtype = quant::parse_float_dtype(o.dtype, "--dtype");
  quant::check_output_folder(o.out, o.force, o.in);
  std::unique_ptr<Checkpoint> ck = open_checkpoint(o.in);
  const bool gguf = ck->kind() == CheckpointKind::Gguf;
  quant::HfFolderWriter writer(o.out, o.force, o.in);
  Progress progress("dequantizing");
  const auto& tensors = ck->tensors();
  int64_t done = 0, dequantized = 0;
  for (const CheckpointTensor& t : tensors) {
    progress.update(done++, static_cast<int64_t>(tensors.size()));
    // GGUF tensors with no HF counterpart (rope_freqs.weight, ...) are not model parameters in HF.
    if (gguf && t.name.rfind("model.", 0) != 0 && t.name != "lm_head.weight") {
      std::fprintf(stderr, "qrt: warning: %s: GGUF tensor with no Hugging Face counterpart, not written\n",
                   io::quote_name(t.name).c_str());
      continue;
    }
    const bool quantized = t.dtype == DType::Unknown;   // logical quantized weight or GGUF block type
    if (quantized || dtype_is_float(t.dtype)) {
      writer.add_float(t.name, dtype, t.shape, ck->load_float(t.name));
      dequantized += quantized;
    } else {
      RawTensor raw = ck->load_raw(t.name);   // integer tensors stay as they are
      writer.add(t.name, raw.dtype, raw.shape, std::move(raw.data));
    }
  }
  progress.update(static_cast<int64_t>(tensors.size()), static_cast<int64_t>(tensors.size()));
  progress.done();

  nlohmann::json config = nlohmann::json::parse(ck->config_json());
  config.erase("quantization_config");
  config["torch_dtype"] = quant::torch_dtype_name(dtype);
  writer.add_text_file("config.json", config.dump(2) + "\n");
  for (const std::string& f : ck->tokenizer_files()) writer.copy_file(f);
  if (!gguf) {
    const std::string gen = ck->path() + "/generation_config.json";
    if (access(gen.c_str(), R_OK) == 0) writer.copy_file(gen);
  } else {
    nlohmann::json gen;
    const ModelConfig& c = ck->config();
    if (c.bos_token_id >= 0) gen["bos_token_id"] = c.bos_token_id;
    if (c.eos_token_ids.size() == 1) gen["eos_token_id"] = c.eos_token_ids[0];
    else if (!c.eos_token_ids.empty()) gen["eos_token_id"] = c.eos_token_ids;
    writer.add_text_file("generation_config.json", gen.dump(2) + "\n");
    std::string why;
    if (!quant::write_tokenizer_from_gguf(ck->path(), writer, &why))
      std::fprintf(stderr, "qrt: warning: tokenizer not written: %s; copy tokenizer.json from the original model\n",
                   why.c_str());
  }
  writer.finish();
  std::printf("wrote %s: %zu tensors (%lld dequantized), %.1f MB as %s\n", o.out.c_str(), tensors.size(),
              static_cast<long long>(dequantized), writer.tensor_bytes() / 1e6, quant::torch_dtype_name(dtype));
  return 0;
}

const CommandRegistrar kRegistrar(
    "dequantize", "Write a plain Hugging Face folder with every quantized linear dequantized", [](CLI::App& app) {
      auto o = std::make_shared<Options>();
      app.add_option("IN", o->in, "Quantized Hugging Face folder or GGUF file")->required();
      app.add_option("OUT", o->out, "Output folder (must not exist unless --force)")->required();
      app.add_option("--dtype", o->dtype, "Output float type: f16, bf16 or f32")->capture_default_str();
      app.add_flag("--force", o->force, "Replace OUT if it exists");
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace qrt::cli
