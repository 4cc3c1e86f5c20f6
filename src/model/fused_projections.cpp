// Fused q/k/v and gate/up projections (see fused_projections.h).
#include "model/fused_projections.h"

#include <fmt/format.h>

#include "qrt/error.h"

namespace qrt {
namespace {

std::string last_component(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

std::string group_name(const std::vector<const LinearWeight*>& parts) {
  std::string name = parts[0]->name;
  for (size_t i = 1; i < parts.size(); ++i) {
    name += '+';
    name += last_component(parts[i]->name);
  }
  return name;
}

// The fused layer's spec: the first part's, with N summed and the group's name.
LayerSpec fused_spec(const ProjectionGroup& group) {
  LayerSpec spec = group.parts[0]->quantized->spec;
  spec.name = group.name;
  spec.out_features = 0;
  for (const LinearWeight* p : group.parts) spec.out_features += p->quantized->spec.out_features;
  return spec;
}

}  // namespace

std::vector<ProjectionGroup> projection_groups(const ModelWeights& w) {
  std::vector<ProjectionGroup> groups;
  for (const auto& l : w.layers) {
    for (std::vector<const LinearWeight*> parts :
         {std::vector<const LinearWeight*>{&l.q_proj, &l.k_proj, &l.v_proj},
          std::vector<const LinearWeight*>{&l.gate_proj, &l.up_proj}}) {
      ProjectionGroup g;
      g.name = group_name(parts);
      g.parts = std::move(parts);
      groups.push_back(std::move(g));
    }
  }
  return groups;
}

std::string fusion_obstacle(const ProjectionGroup& group, const RuntimeConfig& config) {
  if (!config.fuse_projections) return "fuse_projections is off";
  if (group.parts.size() < 2) return "fewer than two projections";
  for (const LinearWeight* p : group.parts) {
    if (!p->is_quantized()) return p->name + " is not quantized";
    if (config.override_for(p->name)) return p->name + " has a per-layer override";
    if (config.checkpoint_params_for(p->name)) return p->name + " has checkpoint kernel parameters";
  }
  const QuantizedWeight& a = *group.parts[0]->quantized;
  for (size_t i = 1; i < group.parts.size(); ++i) {
    const QuantizedWeight& b = *group.parts[i]->quantized;
    const LayerSpec &sa = a.spec, &sb = b.spec;
    if (sa.encoding != sb.encoding || sa.bits != sb.bits || sa.group_size != sb.group_size ||
        sa.zero_kind != sb.zero_kind || sa.in_features != sb.in_features ||
        sa.scale_block_n != sb.scale_block_n || sa.scale_block_k != sb.scale_block_k)
      return fmt::format("{} is {}, {} is {}", sa.name, sa.describe(), sb.name, sb.describe());
    if (a.g_idx != b.g_idx) return sa.name + " and " + sb.name + " have different act-order group indices";
    if (a.bias.empty() != b.bias.empty()) return "only some of the projections have a bias";
  }
  if (a.spec.encoding == WeightEncoding::Fp8E4M3) {
    // Scale blocks must not straddle two parts: every part's N a multiple of the block height,
    // and no part with a single scale for all its rows (per-tensor scales differ between parts).
    for (const LinearWeight* p : group.parts) {
      const LayerSpec& s = p->quantized->spec;
      if (s.scale_block_n <= 0 || s.out_features % s.scale_block_n != 0 || s.scale_block_n >= s.out_features)
        return s.name + ": FP8 scales per tensor or in blocks that do not tile N";
    }
  }
  return "";
}

std::shared_ptr<const QuantizedWeight> fuse_weights(const ProjectionGroup& group) {
  // Placeholder config: only the structural checks matter here (fusion on, no overrides).
  if (std::string why = fusion_obstacle(group, RuntimeConfig{}); !why.empty())
    throw internal_error("fuse_weights(" + group.name + "): " + why);
  auto fused = std::make_shared<QuantizedWeight>();
  fused->spec = fused_spec(group);
  fused->g_idx = group.parts[0]->quantized->g_idx;
  for (const LinearWeight* p : group.parts) {
    const QuantizedWeight& q = *p->quantized;
    fused->codes.insert(fused->codes.end(), q.codes.begin(), q.codes.end());
    fused->scales.insert(fused->scales.end(), q.scales.begin(), q.scales.end());
    fused->zeros.insert(fused->zeros.end(), q.zeros.begin(), q.zeros.end());
    fused->bias.insert(fused->bias.end(), q.bias.begin(), q.bias.end());
  }
  fused->validate();
  return fused;
}

std::vector<LayerSpec> fused_layer_specs(const ModelWeights& w, const RuntimeConfig& config) {
  std::vector<LayerSpec> out;
  for (const auto& g : projection_groups(w))
    if (fusion_obstacle(g, config).empty()) out.push_back(fused_spec(g));
  return out;
}

}  // namespace qrt
