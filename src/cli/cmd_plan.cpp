// `qrt plan MODEL`: the kernel decision table. For every quantized linear: its shape and weight
// kind, the backend chosen for each range of M, the kernel parameters and where they came from
// (default, checkpoint tune_metadata, global, tuned, override), and every other backend with the reason it was passed over.
// Reads metadata only (no weights), so it is instant on any model, and works for target profiles
// of devices that are not here (--target h100). Exit status 1 when some layer has no backend.
//
// The default view has one row per distinct (layer role, shape, weight kind, decision): 30 blocks
// x 7 linears collapse into 7 rows. --verbose prints every layer; --json is for machines.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "cli/command.h"
#include "model/fused_projections.h"
#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/plan.h"
#include "qrt/runtime_config.h"
#include "qrt/tuning_cache.h"

namespace qrt::cli {
namespace {

struct PlanOptions {
  std::string model, device = "auto", target, backend, config, tuning_cache;
  std::vector<std::string> fallback, disable;
  bool json = false, verbose = false, no_tuning_cache = false, ignore_bad_cache = false;
  CLI::Option *o_backend = nullptr, *o_fallback = nullptr, *o_disable = nullptr, *o_device = nullptr;
};

std::string m_range(const KernelChoice& c) {
  if (c.m_min == 1 && c.m_max == INT64_MAX) return "all M";
  if (c.m_max == INT64_MAX) return fmt::format("M>={}", c.m_min);
  if (c.m_min == c.m_max) return fmt::format("M={}", c.m_min);
  return fmt::format("M {}-{}", c.m_min, c.m_max);
}

// "model.layers.12.mlp.down_proj" -> "model.layers.*.mlp.down_proj" (the role of the layer).
std::string role_of(const std::string& name) {
  static const std::regex index(R"(\.\d+\.)");
  return std::regex_replace(name, index, ".*.", std::regex_constants::format_first_only);
}

// Backends by M range; adjacent ranges of one backend (differing only in parameters) are one.
std::string decision_text(const LinearPlan& p) {
  if (!p.ok()) return "NO BACKEND";
  std::vector<KernelChoice> merged;
  for (const auto& c : p.choices) {
    if (!merged.empty() && merged.back().backend == c.backend && merged.back().m_max + 1 == c.m_min)
      merged.back().m_max = c.m_max;
    else
      merged.push_back(c);
  }
  std::string s;
  for (const auto& c : merged) s += (s.empty() ? "" : ", ") + c.backend + " (" + m_range(c) + ")";
  return s;
}

std::string params_text(const LinearPlan& p) {
  std::string s;
  for (const auto& c : p.choices) {
    if (!s.empty()) s += "; ";
    if (p.choices.size() > 1) s += m_range(c) + ": ";
    s += (c.params.empty() ? std::string("-") : c.params.to_json()) + " (" + param_source_name(c.source) + ")";
  }
  return s.empty() ? "-" : s;
}

// Rejected backends grouped by identical reason: "cuda_fp8, cuda_marlin: not built in this binary".
std::vector<std::string> rejection_lines(const LinearPlan& p) {
  std::vector<std::pair<std::string, std::string>> groups;  // reason -> names (ordered)
  std::vector<std::string> used;
  for (const auto& c : p.choices) used.push_back(c.backend);
  for (const auto& [name, v] : p.verdicts) {
    std::string reason;
    if (v.ok) {
      if (std::find(used.begin(), used.end(), name) != used.end()) continue;
      const bool fb = std::find(p.fallback.begin(), p.fallback.end(), name) != p.fallback.end();
      reason = !p.ok() ? "ok (would work)"
               : fb    ? "ok, kept as fallback"
                       : "ok, not needed (an earlier backend covers every M)";
    } else {
      reason = v.reason;
    }
    bool merged = false;
    for (auto& [r, names] : groups)
      if (r == reason) {
        names += ", " + name;
        merged = true;
      }
    if (!merged) groups.emplace_back(reason, name);
  }
  std::vector<std::string> out;
  for (const auto& [r, names] : groups) out.push_back(names + ": " + r);
  return out;
}

nlohmann::ordered_json plan_json(const LinearPlan& p) {
  nlohmann::ordered_json j;
  j["name"] = p.layer.name;
  j["k"] = p.layer.in_features;
  j["n"] = p.layer.out_features;
  j["weight"] = p.layer.describe();
  j["format"] = p.layer.source_format;
  j["bits"] = p.layer.bits;
  j["group_size"] = p.layer.group_size;
  j["choices"] = nlohmann::ordered_json::array();
  for (const auto& c : p.choices) {
    nlohmann::ordered_json cj;
    cj["m_min"] = c.m_min;
    cj["m_max"] = c.m_max == INT64_MAX ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.m_max);
    cj["backend"] = c.backend;
    cj["params"] = nlohmann::ordered_json::parse(c.params.to_json());
    cj["source"] = param_source_name(c.source);
    j["choices"].push_back(cj);
  }
  j["fallback"] = p.fallback;
  j["verdicts"] = nlohmann::ordered_json::array();
  for (const auto& [name, v] : p.verdicts)
    j["verdicts"].push_back({{"backend", name}, {"ok", v.ok}, {"reason", v.reason}});
  j["notes"] = p.notes;
  if (!p.error.empty()) j["error"] = p.error;
  return j;
}

int run_plan(const PlanOptions& o) {
  const auto ck = open_checkpoint(o.model);
  // The layers `qrt run` runs through a backend (the loader decides through the same function,
  // including a quantized tied lm_head), so the plan and the run always count the same layers.
  const std::vector<LayerSpec> layers = quantized_linear_specs(*ck);
  int dense = 0;
  for (const auto& l : ck->linears())
    if (!l.quantized) ++dense;

  DeviceInfo device;
  std::string device_why;  // how "auto" chose (empty for a named device or a target)
  if (!o.target.empty()) {
    if (o.o_device && o.o_device->count() > 0)
      throw invalid_input("--device and --target exclude each other (--target plans for a device that is not here)");
    device = target_profile(o.target);
  } else {
    device = resolve_device(o.device, &device_why);
  }

  std::string checkpoint_backend;
  if (const auto* g = ck->quantization().get<GptqConfig>()) checkpoint_backend = g->backend;
  if (const auto* a = ck->quantization().get<AwqConfig>()) checkpoint_backend = a->backend;
  CliOverrides cli;
  if (o.o_backend && o.o_backend->count()) cli.backend = o.backend;
  if (o.o_fallback && o.o_fallback->count()) cli.fallback = o.fallback;
  if (o.o_disable && o.o_disable->count()) cli.disabled = o.disable;
  if (!o.tuning_cache.empty()) cli.tuning_cache_path = o.tuning_cache;
  if (o.no_tuning_cache) cli.use_tuning_cache = false;
  // HIGGS checkpoints may carry per-module kernel parameters: the lowest-priority parameter source.
  std::map<std::string, std::string> tune_metadata;
  if (const auto* h = ck->quantization().get<HiggsConfig>()) tune_metadata = h->tune_metadata;
  std::vector<std::string> warnings;
  RuntimeConfig config = build_runtime_config(checkpoint_backend, o.config, cli, &warnings, tune_metadata);
  if (o.ignore_bad_cache) config.ignore_bad_tuning_cache = true;

  std::unique_ptr<TuningCache> cache;
  std::string cache_path;
  if (config.use_tuning_cache) {
    cache_path = config.tuning_cache_path.empty() ? default_tuning_cache_path() : config.tuning_cache_path;
    cache = std::make_unique<TuningCache>(TuningCache::load(cache_path, device, config.ignore_bad_tuning_cache));
    for (const auto& w : cache->warnings()) warnings.push_back("tuning cache: " + w);
  }
  const auto plans = plan_layers(layers, config, device, cache.get());
  // The GPU engine runs q/k/v and gate/up as one GEMM each where it can (fused_projections.h):
  // those fused layers are planned as their own shapes.
  std::vector<LinearPlan> fused_plans;
  if (device.kind == DeviceKind::Cuda) fused_plans = plan_layers(fused_layer_specs(layers, config), config, device, cache.get());

  // Per-backend summary: layers and the M ranges they serve.
  std::map<std::string, std::map<std::string, int>> summary;  // backend -> range -> layers
  int failed = 0;
  for (const auto& p : plans) {
    if (!p.ok()) ++failed;
    for (const auto& c : p.choices) ++summary[c.backend][m_range(c)];
  }

  if (o.json) {
    nlohmann::ordered_json j;
    j["model"] = o.model;
    j["architecture"] = ck->config().architecture;
    j["quantization"] = ck->quantization().describe();
    j["device"] = {{"id", device.id}, {"description", device.describe()}, {"cache_key", device.cache_key()},
                   {"profile", device.profile}, {"chosen", device_why}};
    j["config"] = {{"backend", config.backend}, {"fallback", config.fallback}, {"disabled", config.disabled}};
    nlohmann::ordered_json prov = nlohmann::ordered_json::object();
    for (const auto& [f, s] : config.provenance) prov[f] = s;
    j["config"]["provenance"] = prov;
    j["tuning_cache"] = cache_path;
    j["warnings"] = warnings;
    j["layers"] = nlohmann::ordered_json::array();
    for (const auto& p : plans) j["layers"].push_back(plan_json(p));
    nlohmann::ordered_json sj = nlohmann::ordered_json::object();
    for (const auto& [b, ranges] : summary)
      for (const auto& [r, n] : ranges) sj[b][r] = n;
    j["summary"] = sj;
    j["dense_layers"] = dense;
    j["layers_without_backend"] = failed;
    j["fused_layers"] = nlohmann::ordered_json::array();  // GPU engine: q/k/v, gate/up as one GEMM each
    for (const auto& p : fused_plans) j["fused_layers"].push_back(plan_json(p));
    std::printf("%s\n", j.dump(2).c_str());
    return failed ? 1 : 0;
  }

  std::printf("model:   %s (%s, %s)\n", o.model.c_str(), ck->config().architecture.c_str(),
              ck->quantization().empty() ? "unquantized" : ck->quantization().describe().c_str());
  std::printf("device:  %s%s\n", device.describe().c_str(), device_why.empty() ? "" : (" (" + device_why + ")").c_str());
  std::printf("backend: %s (%s)", config.backend.c_str(), config.provenance_of("backend").c_str());
  if (!config.fallback.empty()) {
    std::string f;
    for (const auto& n : config.fallback) f += (f.empty() ? "" : ",") + n;
    std::printf("; fallback: %s", f.c_str());
  }
  if (!config.disabled.empty()) {
    std::string d;
    for (const auto& n : config.disabled) d += (d.empty() ? "" : ",") + n;
    std::printf("; disabled: %s (%s)", d.c_str(), config.provenance_of("disabled").c_str());
  }
  std::printf("\ntuning:  %s\n", cache ? (cache_path + " (" + std::to_string(cache->size()) + " entries)").c_str()
                                        : "off");
  for (const auto& w : warnings) std::printf("warning: %s\n", w.c_str());
  std::printf("\n");

  if (layers.empty()) std::printf("no quantized linear layers: every linear runs dense\n");

  // Rows: every layer (--verbose) or one per distinct (role, shape, kind, decision, reasons).
  struct Row {
    std::string label;
    int count = 0;
    const LinearPlan* plan = nullptr;
  };
  std::vector<Row> rows;
  std::map<std::string, size_t> index;
  for (const auto& p : plans) {
    const std::string label = o.verbose ? p.layer.name : role_of(p.layer.name);
    std::string key = label + "|" + std::to_string(p.layer.in_features) + "x" + std::to_string(p.layer.out_features) +
                      "|" + p.layer.describe() + "|" + decision_text(p) + "|" + params_text(p);
    for (const auto& l : rejection_lines(p)) key += "|" + l;
    if (o.verbose || !index.count(key)) {
      index[key] = rows.size();
      rows.push_back({label, 0, &p});
    }
    ++rows[index[key]].count;
  }
  size_t w_label = 5, w_shape = 5, w_kind = 6, w_dec = 7;
  for (const auto& r : rows) {
    w_label = std::max(w_label, r.label.size());
    w_shape = std::max(w_shape, fmt::format("{} x {}", r.plan->layer.in_features, r.plan->layer.out_features).size());
    w_kind = std::max(w_kind, r.plan->layer.describe().size());
    w_dec = std::max(w_dec, decision_text(*r.plan).size());
  }
  if (!rows.empty()) {
    std::printf("%-*s %5s  %-*s  %-*s  %-*s  %s\n", static_cast<int>(w_label), "layer", o.verbose ? "" : "count",
                static_cast<int>(w_shape), "K x N", static_cast<int>(w_kind), "weight", static_cast<int>(w_dec),
                "backend", "kernel params (source)");
  }
  for (const auto& r : rows) {
    const LinearPlan& p = *r.plan;
    std::printf("%-*s %5s  %-*s  %-*s  %-*s  %s\n", static_cast<int>(w_label), r.label.c_str(),
                o.verbose ? "" : std::to_string(r.count).c_str(), static_cast<int>(w_shape),
                fmt::format("{} x {}", p.layer.in_features, p.layer.out_features).c_str(), static_cast<int>(w_kind),
                p.layer.describe().c_str(), static_cast<int>(w_dec), decision_text(p).c_str(),
                p.ok() ? params_text(p).c_str() : "-");
    if (!p.ok()) {
      // The verdict list of the error is printed below, grouped; keep its summary line here.
      std::string first = p.error.substr(0, p.error.find('\n'));
      std::printf("    error: %s\n", first.c_str());
    }
    for (const auto& l : rejection_lines(p)) std::printf("    - %s\n", l.c_str());
    if (!p.fallback.empty()) {
      std::string f;
      for (const auto& n : p.fallback) f += (f.empty() ? "" : " -> ") + n;
      std::printf("    fallback if prepare or the first run fails: %s\n", f.c_str());
    }
    for (const auto& n : p.notes) std::printf("    note: %s\n", n.c_str());
  }

  std::printf("\nsummary:\n");
  for (const auto& [b, ranges] : summary) {
    std::string parts;
    for (const auto& [r, n] : ranges) parts += (parts.empty() ? "" : ", ") + fmt::format("{} layers ({})", n, r);
    const Backend* be = BackendRegistry::global().find(b);
    std::printf("  %-14s %s%s\n", b.c_str(), parts.c_str(),
                be && !be->built() ? "  [not built in this binary: planned for the target profile]" : "");
  }
  if (dense) std::printf("  %-14s %d layers (unquantized, run by the model's dense path)\n", "dense", dense);
  if (device.kind == DeviceKind::Cuda) {
    std::map<std::string, std::pair<int, std::string>> by_shape;  // "q/k/v groups as KxN" -> groups, plan
    for (const auto& p : fused_plans) {
      std::string how;
      for (const auto& c : p.choices) how += (how.empty() ? "" : ", ") + c.backend + " (" + m_range(c) + ")";
      const char* kind = p.layer.name.find("q_proj+") != std::string::npos ? "q/k/v" : "gate/up";
      auto& e = by_shape[fmt::format("{} groups as {}x{}", kind, p.layer.in_features, p.layer.out_features)];
      ++e.first;
      e.second = p.ok() ? how : "no backend: " + p.error.substr(0, p.error.find('\n'));
    }
    if (by_shape.empty())
      std::printf("  fused q/k/v, gate/up: none (fuse_projections %s)\n", config.fuse_projections ? "on" : "off");
    for (const auto& [what, e] : by_shape)
      std::printf("  %-14s %d %s: %s\n", "fused", e.first, what.c_str(), e.second.c_str());
  }
  if (failed) {
    std::printf("  %d of %zu quantized layers have NO backend on %s\n", failed, plans.size(), device.id.c_str());
    return 1;
  }
  return 0;
}

const CommandRegistrar registrar(
    "plan", "Show which backend runs each quantized layer (per range of M), with which parameters, and why",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<PlanOptions>();
      app.add_option("model", o->model, "checkpoint: a Hugging Face folder or a .gguf file")->required();
      o->o_device = app.add_option("--device", o->device, "auto (the device qrt run would use), cpu or cuda:N (a device of this machine)")->capture_default_str();
      app.add_option("--target", o->target,
                     "plan for a device that is not here: h100, h200, a100, l4, rtx4090, rtx3090, t4, v100, "
                     "cpu-avx2, cpu-avx512, cpu-baseline");
      o->o_backend = app.add_option("--backend", o->backend, "auto or a backend name (aliases: marlin, exllama_v2, gemm, ...)");
      o->o_fallback = app.add_option("--fallback", o->fallback, "backends to try in order when one fails")->delimiter(',');
      o->o_disable = app.add_option("--disable", o->disable, "backends never to choose")->delimiter(',');
      app.add_option("--config", o->config, "runtime config file (JSON, docs/CONFIG.md)");
      app.add_option("--tuning-cache", o->tuning_cache, "tuning cache file (default: ~/.cache/qrt/tuning.json)");
      app.add_flag("--no-tuning-cache", o->no_tuning_cache, "ignore the tuning cache");
      app.add_flag("--ignore-bad-tuning-cache", o->ignore_bad_cache, "run on defaults when the tuning cache is corrupt");
      app.add_flag("--json", o->json, "machine-readable output");
      app.add_flag("-v,--verbose", o->verbose, "one row per layer instead of one per distinct decision");
      return [o] { return run_plan(*o); };
    });

}  // namespace
}  // namespace qrt::cli
