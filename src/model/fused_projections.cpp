// Fused q/k/v and gate/up projections (see fused_projections.h).
#include "model/fused_projections.h"

#include <fmt/format.h>

#include <map>

#include "qrt/error.h"

namespace qrt {
namespace {

// The projections fused together, by the last component of their module names.
const std::vector<std::vector<std::string>> kGroups = {{"q_proj", "k_proj", "v_proj"}, {"gate_proj", "up_proj"}};

std::string last_component(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

// "<block>.self_attn.q_proj+k_proj+v_proj": the first part's name, then the others' last components.
std::string fused_name(const std::vector<std::string>& names) {
  std::string name = names[0];
  for (size_t i = 1; i < names.size(); ++i) {
    name += '+';
    name += last_component(names[i]);
  }
  return name;
}

// The fused layer's spec: the first part's, with N summed and the fused name.
LayerSpec fused_spec(const std::vector<const LayerSpec*>& parts) {
  LayerSpec spec = *parts[0];
  std::vector<std::string> names;
  spec.out_features = 0;
  for (const LayerSpec* p : parts) {
    names.push_back(p->name);
    spec.out_features += p->out_features;
  }
  spec.name = fused_name(names);
  return spec;
}

std::vector<const LayerSpec*> specs_of(const ProjectionGroup& group) {
  std::vector<const LayerSpec*> specs;
  for (const LinearWeight* p : group.parts) specs.push_back(&p->quantized->spec);
  return specs;
}

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
        sa.scale_block_n != sb.scale_block_n || sa.scale_block_k != sb.scale_block_k || sa.codebook != sb.codebook ||
        sa.codebook_dim != sb.codebook_dim || sa.hadamard_size != sb.hadamard_size ||
        sa.llm_int8_threshold != sb.llm_int8_threshold)
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

std::vector<ProjectionGroup> projection_groups(const ModelWeights& w) {
  std::vector<ProjectionGroup> groups;
  for (const auto& l : w.layers) {
    for (std::vector<const LinearWeight*> parts :
         {std::vector<const LinearWeight*>{&l.q_proj, &l.k_proj, &l.v_proj},
          std::vector<const LinearWeight*>{&l.gate_proj, &l.up_proj}}) {
      if (parts[0]->name.empty()) continue;  // stored fused (Phi-3): already one linear
      ProjectionGroup g;
      std::vector<std::string> names;
      for (const LinearWeight* p : parts) names.push_back(p->name);
      g.name = fused_name(names);
      g.parts = std::move(parts);
      groups.push_back(std::move(g));
    }
  }
  return groups;
}

std::string fusion_obstacle(const ProjectionGroup& group, const RuntimeConfig& config) {
  for (const LinearWeight* p : group.parts)
    if (!p->is_quantized()) return p->name + " is not quantized";
  if (std::string why = spec_obstacle(specs_of(group), config); !why.empty()) return why;
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
  fused->spec = fused_spec(specs_of(group));
  fused->g_idx = group.parts[0]->quantized->g_idx;
  // Sized once: growing by doubling copied a 7B gate/up pair's 90 M codes twice more.
  size_t codes = 0, scales = 0, zeros = 0, bias = 0;
  for (const LinearWeight* p : group.parts) {
    codes += p->quantized->codes.size();
    scales += p->quantized->scales.size();
    zeros += p->quantized->zeros.size();
    bias += p->quantized->bias.size();
  }
  fused->codes.reserve(codes);
  fused->scales.reserve(scales);
  fused->zeros.reserve(zeros);
  fused->bias.reserve(bias);
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
    for (const auto& suffixes : kGroups) {
      if (last != suffixes[0]) continue;
      const std::string prefix = s.name.substr(0, s.name.size() - last.size());
      std::vector<const LayerSpec*> parts;
      for (const auto& suffix : suffixes)
        if (auto it = by_name.find(prefix + suffix); it != by_name.end()) parts.push_back(it->second);
      if (parts.size() == suffixes.size() && spec_obstacle(parts, config).empty()) out.push_back(fused_spec(parts));
    }
  }
  return out;
}

std::vector<std::string> fused_part_names(const std::string& fused_name) {
  const size_t plus = fused_name.find('+');
  const size_t dot = fused_name.rfind('.', plus);
  if (plus == std::string::npos || dot == std::string::npos) return {};
  const std::string prefix = fused_name.substr(0, dot + 1);
  std::vector<std::string> names{fused_name.substr(0, plus)};
  for (size_t b = plus + 1; b <= fused_name.size();) {
    const size_t e = std::min(fused_name.find('+', b), fused_name.size());
    names.push_back(prefix + fused_name.substr(b, e - b));
    b = e + 1;
  }
  return names;
}

QuantizedWeight load_fused(const std::string& fused_name,
                           const std::function<QuantizedWeight(const std::string&)>& load) {
  const std::vector<std::string> names = fused_part_names(fused_name);
  if (names.empty())
    throw invalid_input("'" + fused_name + "' is not a fused projection name (<block>.q_proj+k_proj+v_proj)");
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

QuantizedWeight load_layer_or_fused(const std::string& name,
                                    const std::function<QuantizedWeight(const std::string&)>& load) {
  return name.find('+') != std::string::npos ? load_fused(name, load) : load(name);
}

std::vector<LayerSpec> fused_layer_specs(const ModelWeights& w, const RuntimeConfig& config) {
  std::vector<LayerSpec> out;
  for (const auto& g : projection_groups(w))
    if (fusion_obstacle(g, config).empty()) out.push_back(fused_spec(specs_of(g)));
  return out;
}

}  // namespace qrt
