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
#include <regex>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/engine_cli.h"
#include "cli/model_argument.h"
#include "core/text_escape.h"
#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/model.h"
#include "qrt/plan.h"
#include "qrt/plan_report.h"
#include "qrt/runtime_config.h"
#include "qrt/setup.h"
#include "qrt/tuning_cache.h"

namespace qrt::cli {
namespace {

struct PlanOptions {
  std::string model, target;
  bool json = false, verbose = false;
  EngineCliOptions setup;  // the flags run and perplexity take (engine_cli.h)
  CLI::Option* o_device = nullptr;
};

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
  for (const auto& c : merged) s += (s.empty() ? "" : ", ") + c.backend + " (" + describe_m_range(c) + ")";
  return s;
}

std::string params_text(const LinearPlan& p) {
  std::string s;
  for (const auto& c : p.choices) {
    if (!s.empty()) s += "; ";
    if (p.choices.size() > 1) s += describe_m_range(c) + ": ";
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

int run_plan(const PlanOptions& o) {
  if (o.model.empty()) throw invalid_input("qrt plan: give the MODEL to plan (a Hugging Face folder or a .gguf file)");
  const auto ck = open_checkpoint(o.model);
  // What `qrt run` would refuse in the tensors (layouts, NaN scales) is refused here too, so a plan
  // that exits 0 loads.
  check_quantized_tensors(*ck);
  if (!o.target.empty() && o.o_device && o.o_device->count() > 0)
    throw invalid_input("--device and --target exclude each other (--target plans for a device that is not here)");
  SetupRequest request = o.setup.setup_request({});
  request.target = o.target;
  if (!o.target.empty()) request.device = "auto";
  // The setup `qrt run` makes from the same flags: its layers are the ones the run executes
  // through a backend (quantized_linear_specs, a quantized tied lm_head included).
  const ResolvedSetup setup = resolve_setup(*ck, request);
  const RuntimeConfig& config = setup.runtime;
  const DeviceInfo& device = setup.device;
  const std::string& device_why = setup.device_why;
  const std::string& cache_path = setup.tuning_cache_path;
  const TuningCache* cache = setup.tuning_cache.get();
  const std::vector<std::string>& warnings = setup.warnings;
  const std::vector<LinearPlan>& plans = setup.plan->layers;
  // The GPU engine runs q/k/v and gate/up as one linear each where it can (fused_projections.h):
  // those fused layers are planned as their own shapes.
  const std::vector<LinearPlan>& fused_plans = setup.plan->fused;
  const PlanSummary summary = summarize_plan(*ck, setup);
  const int failed = summary.layers_without_backend;
  const int dense = summary.dense_layers;
  if (o.json) {
    std::printf("%s\n", plan_report_json(o.model, *ck, setup).c_str());
    return failed ? 1 : 0;
  }

  std::printf("model:   %s (%s, %s)\n", escape_untrusted(o.model).c_str(), ck->config().architecture.c_str(),
              ck->quantization().empty() ? "unquantized" : escape_untrusted(ck->quantization().describe()).c_str());
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
  // The prompt length the buffers are sized for, when something other than the default set it (a
  // GPTQ checkpoint's max_input_length, a config file, the command line).
  if (config.provenance_of("max_input_length") != "default")
    std::printf("\ncontext: max_input_length %lld (%s)", static_cast<long long>(config.max_input_length),
                config.provenance_of("max_input_length").c_str());
  std::printf("\ntuning:  %s\n", cache ? (cache_path + " (" + std::to_string(cache->size()) + " entries)").c_str()
                                        : "off");
  for (const auto& w : warnings) std::printf("warning: %s\n", escape_message(w).c_str());
  std::printf("\n");

  if (plans.empty()) std::printf("no quantized linear layers: every linear runs dense\n");

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
      std::printf("    error: %s\n", escape_untrusted(first).c_str());
    }
    for (const auto& l : rejection_lines(p)) std::printf("    - %s\n", escape_untrusted(l).c_str());
    if (!p.fallback.empty()) {
      std::string f;
      for (const auto& n : p.fallback) f += (f.empty() ? "" : " -> ") + n;
      std::printf("    fallback if prepare or the first run fails: %s\n", f.c_str());
    }
    for (const auto& n : p.notes) std::printf("    note: %s\n", escape_untrusted(n).c_str());
  }

  std::printf("\nsummary:\n");
  for (const auto& [b, ranges] : summary.by_backend) {
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
      for (const auto& c : p.choices) how += (how.empty() ? "" : ", ") + c.backend + " (" + describe_m_range(c) + ")";
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
      add_model_argument(app, o->model, "");
      o->setup.add_setup_options(app);
      o->o_device = app.get_option("--device");
      app.add_option("--target", o->target,
                     "plan for a device that is not here: h100, h200, a100, l4, rtx4090, rtx3090, t4, v100, "
                     "cpu-avx2, cpu-avx512, cpu-baseline");
      app.add_flag("--json", o->json, "machine-readable output");
      app.add_flag("-v,--verbose", o->verbose, "one row per layer instead of one per distinct decision");
      return [o] { return run_plan(*o); };
    });

}  // namespace
}  // namespace qrt::cli
