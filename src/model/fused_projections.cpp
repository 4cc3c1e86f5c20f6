// Fused q/k/v and gate/up projections (see fused_projections.h).
#include "model/fused_projections.h"

#include <fmt/format.h>

#include <map>

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

std::vector<std::string> suffixes_of(const std::string& kind) {
  if (kind == "attn") return {"q_proj", "k_proj", "v_proj"};
  return {"gate_proj", "up_proj"};
}

std::string spec_obstacle(const std::vector<const LayerSpec*>& parts, const RuntimeConfig& config);

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

namespace {

// What the parts' specs and the config say against fusing them ("" = nothing).
std::string spec_obstacle(const std::vector<const LayerSpec*>& parts, const RuntimeConfig& config) {
  if (!config.fuse_projections) return "fuse_projections is off";
  if (parts.size() < 2) return "fewer than two projections";
  for (const LayerSpec* p : parts) {
    if (config.override_for(p->name)) return p->name + " has a per-layer override";
    if (config.checkpoint_params_for(p->name)) return p->name + " has checkpoint kernel parameters";
  }
  const LayerSpec& sa = *parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    const LayerSpec& sb = *parts[i];
    if (sa.encoding != sb.encoding || sa.bits != sb.bits || sa.group_size != sb.group_size ||
        sa.zero_kind != sb.zero_kind || sa.in_features != sb.in_features || sa.act_order != sb.act_order ||
        sa.scale_block_n != sb.scale_block_n || sa.scale_block_k != sb.scale_block_k)
      return fmt::format("{} is {}, {} is {}", sa.name, sa.describe(), sb.name, sb.describe());
    if (sa.has_bias != sb.has_bias) return "only some of the projections have a bias";
  }
  if (sa.encoding == WeightEncoding::Fp8E4M3) {
    // Scale blocks must not straddle two parts: every part's N a multiple of the block height,
    // and no part with a single scale for all its rows (per-tensor scales differ between parts).
    for (const LayerSpec* s : parts)
      if (s->scale_block_n <= 0 || s->out_features % s->scale_block_n != 0 || s->scale_block_n >= s->out_features)
        return s->name + ": FP8 scales per tensor or in blocks that do not tile N";
  }
  return "";
}

}  // namespace

std::string fusion_obstacle(const ProjectionGroup& group, const RuntimeConfig& config) {
  std::vector<const LayerSpec*> specs;
  for (const LinearWeight* p : group.parts) {
    if (!p->is_quantized()) return p->name + " is not quantized";
    specs.push_back(&p->quantized->spec);
  }
  if (std::string why = spec_obstacle(specs, config); !why.empty()) return why;
  const QuantizedWeight& a = *group.parts[0]->quantized;
  for (size_t i = 1; i < group.parts.size(); ++i) {
    const QuantizedWeight& b = *group.parts[i]->quantized;
    if (a.g_idx != b.g_idx) return a.spec.name + " and " + b.spec.name + " have different act-order group indices";
    if (a.bias.empty() != b.bias.empty()) return "only some of the projections have a bias";
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

std::vector<LayerSpec> fused_layer_specs(const std::vector<LayerSpec>& quantized, const RuntimeConfig& config) {
  std::map<std::string, const LayerSpec*> by_name;
  for (const auto& s : quantized) by_name[s.name] = &s;
  std::vector<LayerSpec> out;
  for (const auto& s : quantized) {
    // A group starts at its first part: "<block>.self_attn.q_proj" or "<block>.mlp.gate_proj".
    const std::string last = last_component(s.name);
    if (last != "q_proj" && last != "gate_proj") continue;
    const std::string prefix = s.name.substr(0, s.name.size() - last.size());
    std::vector<const LayerSpec*> parts;
    std::string name;
    for (const auto& suffix : suffixes_of(last == "q_proj" ? "attn" : "mlp")) {
      auto it = by_name.find(prefix + suffix);
      if (it == by_name.end()) break;
      parts.push_back(it->second);
      name += name.empty() ? prefix + suffix : "+" + suffix;
    }
    if (parts.size() != suffixes_of(last == "q_proj" ? "attn" : "mlp").size()) continue;
    if (!spec_obstacle(parts, config).empty()) continue;
    LayerSpec f = s;
    f.name = name;
    f.out_features = 0;
    for (const LayerSpec* p : parts) f.out_features += p->out_features;
    out.push_back(f);
  }
  return out;
}

QuantizedWeight load_fused(const std::string& fused_name,
                           const std::function<QuantizedWeight(const std::string&)>& load) {
  const size_t plus = fused_name.find('+');
  const size_t dot = fused_name.rfind('.', plus);
  if (plus == std::string::npos || dot == std::string::npos)
    throw invalid_input("'" + fused_name + "' is not a fused projection name (<block>.q_proj+k_proj+v_proj)");
  const std::string prefix = fused_name.substr(0, dot + 1);
  std::vector<std::string> names{fused_name.substr(0, plus)};
  for (size_t b = plus + 1; b <= fused_name.size();) {
    const size_t e = std::min(fused_name.find('+', b), fused_name.size());
    names.push_back(prefix + fused_name.substr(b, e - b));
    b = e + 1;
  }
  std::vector<LinearWeight> parts(names.size());
  ProjectionGroup g;
  g.name = fused_name;
  for (size_t i = 0; i < names.size(); ++i) {
    parts[i].name = names[i];
    parts[i].quantized = std::make_shared<QuantizedWeight>(load(names[i]));
    parts[i].in_features = parts[i].quantized->K();
    parts[i].out_features = parts[i].quantized->N();
    g.parts.push_back(&parts[i]);
  }
  return *fuse_weights(g);
}

std::vector<LayerSpec> fused_layer_specs(const ModelWeights& w, const RuntimeConfig& config) {
  std::vector<LayerSpec> out;
  for (const auto& g : projection_groups(w))
    if (fusion_obstacle(g, config).empty()) out.push_back(fused_spec(g));
  return out;
}

}  // namespace qrt
