// The float weights of one decoder layer as calibration reads them (quant/calibration.h): the
// checkpoint's linears dequantized to float32 [out][in], the two RMSNorm weights, and the dense
// matmul that applies a linear to a block of token rows. Shared by the model-sampled calibration
// text (calibration_samples.h) and the layer-by-layer quantizer (layerwise_calibrate.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qrt/checkpoint.h"

namespace qrt {
class ThreadPool;

struct DenseLinear {
  std::string name;        // "model.layers.0.self_attn.q_proj"
  int64_t in = 0, out = 0;
  std::vector<float> w;    // [out][in]
  std::vector<float> bias; // [out] or empty
};

struct DenseDecoderLayer {
  std::vector<float> input_norm, post_attention_norm;  // [hidden]
  DenseLinear q, k, v, o, gate, up, down;
};

// Throws qrt::Error naming the checkpoint and tensor when a linear is missing or mis-sized.
DenseLinear load_dense_linear(const Checkpoint& ck, const std::string& name);
DenseDecoderLayer load_dense_decoder_layer(const Checkpoint& ck, int64_t layer);

// y[T][out] = x[T][in] W^T + bias (y is resized).
void apply_dense(const DenseLinear& l, const float* x, int64_t T, std::vector<float>& y, ThreadPool& pool);

}  // namespace qrt
