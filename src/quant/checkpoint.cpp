// open_checkpoint: dispatch on what the path is (a folder with config.json or a GGUF file), and
// helpers shared by both readers.
#include <filesystem>
#include <fstream>

#include "qrt/error.h"
#include "quant/checkpoint_impl.h"

namespace qrt {

std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw no_such_path(path);
  if (fs::is_directory(st)) return quant::open_hf_checkpoint(path);
  if (!fs::is_regular_file(st))
    throw invalid_input(path + ": not a regular file (a FIFO, device or socket); pass a Hugging Face model folder "
                        "or a .gguf file");
  // A file: GGUF by its magic; a lone config.json or .safetensors gets a hint.
  char magic[4] = {0, 0, 0, 0};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path + ": cannot open");
    in.read(magic, 4);
  }
  if (std::string(magic, 4) == "GGUF") return quant::open_gguf_checkpoint(path);
  throw invalid_input(path + ": not a GGUF file (no GGUF magic) and not a folder; pass a Hugging Face model folder "
                      "(with config.json) or a .gguf file");
}

int64_t check_quantized_tensors(const Checkpoint& ck) {
  int64_t n = 0;
  for (const CheckpointLinear& l : ck.linears())
    if (l.quantized) {
      ck.load_quantized(l.spec.name);   // decodes and validates; throws naming the tensor
      ++n;
    }
  return n;
}

namespace quant {

std::vector<LinearSlot> llama_linear_slots(const ModelConfig& c, bool include_lm_head) {
  std::vector<LinearSlot> out;
  const int64_t h = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    if (c.architecture == "Phi3ForCausalLM") {
      // Phi-3 stores q/k/v and gate/up as one matrix each (rows q | k | v and gate | up).
      out.push_back({p + "self_attn.qkv_proj", qd + 2 * kvd, h});
      out.push_back({p + "self_attn.o_proj", h, qd});
      out.push_back({p + "mlp.gate_up_proj", 2 * c.intermediate_size, h});
      out.push_back({p + "mlp.down_proj", h, c.intermediate_size});
      continue;
    }
    out.push_back({p + "self_attn.q_proj", qd, h});
    out.push_back({p + "self_attn.k_proj", kvd, h});
    out.push_back({p + "self_attn.v_proj", kvd, h});
    out.push_back({p + "self_attn.o_proj", h, qd});
    out.push_back({p + "mlp.gate_proj", c.intermediate_size, h});
    out.push_back({p + "mlp.up_proj", c.intermediate_size, h});
    out.push_back({p + "mlp.down_proj", h, c.intermediate_size});
  }
  if (include_lm_head) out.push_back({"lm_head", c.vocab_size, h});
  return out;
}

std::vector<std::string> block_norm_names(const ModelConfig& c) {
  if (c.architecture == "Gemma2ForCausalLM")
    return {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"};
  return {"input_layernorm", "post_attention_layernorm"};
}

void permute_rows(std::vector<float>& rows, int64_t row_len, const std::vector<int64_t>& src) {
  if (row_len <= 0) return;
  const int64_t n = static_cast<int64_t>(src.size());
  if (static_cast<int64_t>(rows.size()) != n * row_len) throw internal_error("permute_rows: size mismatch");
  std::vector<float> out(rows.size());
  for (int64_t r = 0; r < n; ++r)
    std::copy(rows.begin() + src[r] * row_len, rows.begin() + (src[r] + 1) * row_len, out.begin() + r * row_len);
  rows.swap(out);
}

void permute_rows(QuantizedWeight& w, const std::vector<int64_t>& src) {
  const int64_t n = w.N(), k = w.K();
  if (static_cast<int64_t>(src.size()) != n) throw internal_error("permute_rows: row count mismatch");
  if (w.spec.encoding == WeightEncoding::Fp8E4M3 && w.spec.scale_block_n != 1 && w.spec.scale_block_n < n)
    throw unsupported(w.spec.name + ": cannot permute rows of an FP8 weight with block scales");
  std::vector<uint8_t> codes(w.codes.size());
  for (int64_t r = 0; r < n; ++r)
    std::copy(w.codes.begin() + src[r] * k, w.codes.begin() + (src[r] + 1) * k, codes.begin() + r * k);
  w.codes.swap(codes);
  const int64_t g = n > 0 ? static_cast<int64_t>(w.scales.size()) / n : 0;
  if (w.spec.encoding != WeightEncoding::Fp8E4M3 || w.spec.scale_block_n == 1) permute_rows(w.scales, g, src);
  if (!w.zeros.empty()) permute_rows(w.zeros, g, src);
  if (!w.bias.empty()) permute_rows(w.bias, 1, src);
}

}  // namespace quant
}  // namespace qrt
