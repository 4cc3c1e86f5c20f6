// Fused projections: the q/k/v projections of a decoder block read the same normalised input, and
// so do gate/up. Run as one GEMM over their weights concatenated along N, they cost one launch
// instead of three (two), and a GEMV over a wider N streams its weights better. The GPU engine
// fuses; `qrt tune` times the fused shapes so that the engine finds them in the tuning cache.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qrt/model.h"
#include "qrt/runtime_config.h"

namespace qrt {

// The projections fused in one block: {q, k, v} or {gate, up}, and the fused layer's name
// ("model.layers.3.self_attn.q_proj+k_proj+v_proj").
struct ProjectionGroup {
  std::string name;
  std::vector<const LinearWeight*> parts;
};

// Every group of every block, q/k/v first, then gate/up, block by block.
std::vector<ProjectionGroup> projection_groups(const ModelWeights& w);

// Why `group` cannot be fused under `config` ("" = it can): a part not quantized, formats or
// act-order orders that differ, a bias on some parts only, fusion switched off, or a per-layer
// override / checkpoint parameter naming a part (that decision belongs to the part alone).
std::string fusion_obstacle(const ProjectionGroup& group, const RuntimeConfig& config);

// The parts' weights concatenated along N (rows of codes, scales, zeros and bias in part order),
// named group.name. Requires fusion_obstacle(...) == "" (throws internal_error otherwise).
std::shared_ptr<const QuantizedWeight> fuse_weights(const ProjectionGroup& group);

// LayerSpecs of the groups that can be fused under `config` (for the tuner).
std::vector<LayerSpec> fused_layer_specs(const ModelWeights& w, const RuntimeConfig& config);

// The same from the quantized layers' specs alone (a checkpoint's list, nothing loaded): groups
// whose parts' formats allow fusion (act-order orders are not compared: that needs the data).
std::vector<LayerSpec> fused_layer_specs(const std::vector<LayerSpec>& quantized, const RuntimeConfig& config);

// The parts' layer names of a fused layer named as fused_layer_specs() names it
// ("<block>.self_attn.q_proj+k_proj+v_proj" -> its q_proj, k_proj and v_proj); empty when
// `fused_name` is not such a name.
std::vector<std::string> fused_part_names(const std::string& fused_name);

// Loads and fuses the parts of a fused layer named as fused_layer_specs() names it, each part
// through `load` (e.g. Checkpoint::load_quantized). Throws if the name is not a fused name.
QuantizedWeight load_fused(const std::string& fused_name,
                           const std::function<QuantizedWeight(const std::string&)>& load);
// A layer of a tuning or benchmark list: a fused name (fused_layer_specs) through load_fused,
// any other through `load` itself.
QuantizedWeight load_layer_or_fused(const std::string& name,
                                    const std::function<QuantizedWeight(const std::string&)>& load);

}  // namespace qrt
