// `qrt plan`'s summary and JSON form (see qrt/plan_report.h). Reads metadata only.
#include "qrt/plan_report.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <set>

#include "model/fused_projections.h"

namespace qrt {
namespace {

using nlohmann::ordered_json;

ordered_json plan_json(const LinearPlan& p) {
  ordered_json j;
  j["name"] = p.layer.name;
  j["k"] = p.layer.in_features;
  j["n"] = p.layer.out_features;
  j["weight"] = p.layer.describe();
  j["format"] = p.layer.source_format;
  j["bits"] = p.layer.bits;
  j["group_size"] = p.layer.group_size;
  if (p.layer.is_llm_int8()) j["llm_int8_threshold"] = p.layer.llm_int8_threshold;
  j["choices"] = ordered_json::array();
  for (const auto& c : p.choices) {
    ordered_json cj;
    cj["m_min"] = c.m_min;
    cj["m_max"] = c.m_max == INT64_MAX ? ordered_json(nullptr) : ordered_json(c.m_max);
    cj["backend"] = c.backend;
    cj["params"] = ordered_json::parse(c.params.to_json());
    cj["source"] = param_source_name(c.source);
    j["choices"].push_back(cj);
  }
  j["fallback"] = p.fallback;
  j["verdicts"] = ordered_json::array();
  for (const auto& [name, v] : p.verdicts) j["verdicts"].push_back({{"backend", name}, {"ok", v.ok}, {"reason", v.reason}, {"note", v.note}});
  j["notes"] = p.notes;
  if (!p.error.empty()) j["error"] = p.error;
  return j;
}

}  // namespace

std::string describe_m_range(const KernelChoice& c) {
  if (c.m_min == 1 && c.m_max == INT64_MAX) return "all M";
  if (c.m_max == INT64_MAX) return fmt::format("M>={}", c.m_min);
  if (c.m_min == c.m_max) return fmt::format("M={}", c.m_min);
  return fmt::format("M {}-{}", c.m_min, c.m_max);
}

PlanSummary summarize_plan(const Checkpoint& checkpoint, const ResolvedSetup& setup) {
  PlanSummary s;
  for (const auto& f : setup.plan->fused)
    if (f.ok())
      for (const auto& part : fused_part_names(f.layer.name)) s.fused_into[part] = f.layer.name;
  // Linears of the checkpoint that run dense (unquantized and not quantized on load).
  std::set<std::string> planned;
  for (const auto& p : setup.plan->layers) planned.insert(p.layer.name);
  for (const auto& l : checkpoint.linears())
    if (!planned.count(l.spec.name)) ++s.dense_layers;
  for (const auto& p : setup.plan->layers) {
    if (!p.ok()) ++s.layers_without_backend;
    for (const auto& c : p.choices) ++s.by_backend[c.backend][describe_m_range(c)];
  }
  return s;
}

std::string plan_report_json(const std::string& model, const Checkpoint& checkpoint, const ResolvedSetup& setup) {
  const PlanSummary summary = summarize_plan(checkpoint, setup);
  const RuntimeConfig& config = setup.runtime;
  const DeviceInfo& device = setup.device;
  ordered_json j;
  j["model"] = model;
  j["architecture"] = checkpoint.config().architecture;
  j["quantization"] = checkpoint.quantization().describe();
  j["device"] = {{"id", device.id}, {"description", device.describe()}, {"cache_key", device.cache_key()},
                 {"profile", device.profile}, {"chosen", setup.device_why}};
  j["config"] = {{"backend", config.backend}, {"fallback", config.fallback}, {"disabled", config.disabled},
                 {"max_input_length", config.max_input_length}};
  ordered_json prov = ordered_json::object();
  for (const auto& [f, s] : config.provenance) prov[f] = s;
  j["config"]["provenance"] = prov;
  j["tuning_cache"] = setup.tuning_cache_path;
  j["warnings"] = setup.warnings;
  j["layers"] = ordered_json::array();
  for (const auto& p : setup.plan->layers) {
    ordered_json lj = plan_json(p);
    if (auto it = summary.fused_into.find(p.layer.name); it != summary.fused_into.end()) lj["runs_fused_in"] = it->second;
    j["layers"].push_back(lj);
  }
  ordered_json sj = ordered_json::object();
  for (const auto& [b, ranges] : summary.by_backend)
    for (const auto& [range, n] : ranges) sj[b][range] = n;
  j["summary"] = sj;
  j["dense_layers"] = summary.dense_layers;
  j["layers_without_backend"] = summary.layers_without_backend;
  j["fused_layers"] = ordered_json::array();  // GPU engine: q/k/v, gate/up as one GEMM each
  for (const auto& p : setup.plan->fused) j["fused_layers"].push_back(plan_json(p));
  // ensure_ascii: names and notes from the checkpoint reach the terminal as \uXXXX, never raw.
  return j.dump(2, ' ', true, nlohmann::json::error_handler_t::replace);
}

}  // namespace qrt
