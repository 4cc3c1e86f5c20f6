// Float decoder-layer weights for calibration (see calibration_layer.h).
#include "model/calibration_layer.h"

#include <fmt/format.h>

#include "model/ops.h"
#include "qrt/error.h"

namespace qrt {

DenseLinear load_dense_linear(const Checkpoint& ck, const std::string& name) {
  DenseLinear l;
  l.name = name;
  for (const auto& cl : ck.linears())
    if (cl.spec.name == name) {
      l.in = cl.spec.in_features;
      l.out = cl.spec.out_features;
    }
  if (l.in == 0) throw invalid_input(fmt::format("{}: linear {} is missing", ck.path(), name));
  l.w = ck.load_float(name + ".weight");
  if (static_cast<int64_t>(l.w.size()) != l.in * l.out)
    throw invalid_input(fmt::format("{}: {} has {} values, expected {} x {}", ck.path(), name, l.w.size(), l.out, l.in));
  if (ck.has_tensor(name + ".bias")) {
    l.bias = ck.load_float(name + ".bias");
    if (static_cast<int64_t>(l.bias.size()) != l.out)
      throw invalid_input(fmt::format("{}: {}.bias has {} values, expected {}", ck.path(), name, l.bias.size(), l.out));
  }
  return l;
}

DenseDecoderLayer load_dense_decoder_layer(const Checkpoint& ck, int64_t layer) {
  const std::string p = fmt::format("model.layers.{}.", layer);
  DenseDecoderLayer d;
  const int64_t h = ck.config().hidden_size;
  d.input_norm = ck.load_float(p + "input_layernorm.weight");
  d.post_attention_norm = ck.load_float(p + "post_attention_layernorm.weight");
  if (static_cast<int64_t>(d.input_norm.size()) != h || static_cast<int64_t>(d.post_attention_norm.size()) != h)
    throw invalid_input(fmt::format("{}: the norms of layer {} do not have hidden_size {} values", ck.path(), layer, h));
  d.q = load_dense_linear(ck, p + "self_attn.q_proj");
  d.k = load_dense_linear(ck, p + "self_attn.k_proj");
  d.v = load_dense_linear(ck, p + "self_attn.v_proj");
  d.o = load_dense_linear(ck, p + "self_attn.o_proj");
  d.gate = load_dense_linear(ck, p + "mlp.gate_proj");
  d.up = load_dense_linear(ck, p + "mlp.up_proj");
  d.down = load_dense_linear(ck, p + "mlp.down_proj");
  return d;
}

void apply_dense(const DenseLinear& l, const float* x, int64_t T, std::vector<float>& y, ThreadPool& pool) {
  y.resize(static_cast<size_t>(T * l.out));
  ops::dense_matmul(x, T, l.in, l.w.data(), l.out, l.bias.empty() ? nullptr : l.bias.data(), y.data(), l.out, &pool);
}

}  // namespace qrt
