// Selection: for each quantized layer, which backend serves which range of M, with which kernel
// parameters and why every other backend was passed over. Reads only declarations (check,
// capability().max_m, the priority lists, the config, the tuning cache): no kernel is run here,
// so plans for target profiles work without the hardware.
#include <algorithm>
#include <set>

#include "backends/backends_internal.h"
#include "qrt/error.h"
#include "qrt/plan.h"
#include "qrt/tuning_cache.h"

namespace qrt {

namespace {

constexpr int64_t kMaxM = INT64_MAX;

std::string layer_title(const LayerSpec& l) {
  return l.name + " (" + l.describe() + ", K=" + std::to_string(l.in_features) + " N=" +
         std::to_string(l.out_features) + ")";
}

std::string verdict_summary(const std::vector<std::pair<std::string, Verdict>>& verdicts) {
  std::string out;
  for (const auto& [name, v] : verdicts) out += "\n    " + name + ": " + (v.ok ? "ok" : v.reason);
  return out;
}

std::vector<std::string> passing(const std::vector<std::pair<std::string, Verdict>>& verdicts) {
  std::vector<std::string> out;
  for (const auto& [name, v] : verdicts)
    if (v.ok) out.push_back(name);
  return out;
}

const Verdict* verdict_of(const LinearPlan& plan, const std::string& name) {
  for (const auto& [n, v] : plan.verdicts)
    if (n == name) return &v;
  return nullptr;
}

std::string range_text(int64_t lo, int64_t hi) {
  if (hi == kMaxM) return "M >= " + std::to_string(lo);
  if (lo == hi) return "M = " + std::to_string(lo);
  return "M " + std::to_string(lo) + ".." + std::to_string(hi);
}

// Walks `order` from row count `start`, appending choices until every M is covered. Returns the
// first uncovered M (kMaxM when everything is covered... signalled by `covered`).
bool walk(const std::vector<std::string>& order, const LinearPlan& plan, const BackendRegistry& registry,
          int64_t start, std::vector<KernelChoice>& out) {
  for (const auto& name : order) {
    const Verdict* v = verdict_of(plan, name);
    if (!v || !v->ok) continue;
    const int64_t max_m = registry.find(name)->capability().max_m;
    if (max_m < start) continue;
    KernelChoice c;
    c.m_min = start;
    c.m_max = max_m;
    c.backend = name;
    out.push_back(c);
    if (max_m == kMaxM) return true;
    start = max_m + 1;
  }
  return false;
}

void add_note(std::vector<std::string>& notes, const std::string& note) {
  if (std::find(notes.begin(), notes.end(), note) == notes.end()) notes.push_back(note);
}

// The checkpoint's tune_metadata for this layer, merged over the backend's defaults key by key.
// The checkpoint may be made for another tool (HIGGS metadata is FLUTE's), so a key the backend
// rejects is left out with a note, never an error; the rest is used.
void apply_checkpoint_params(const Backend& b, const LayerSpec& layer, const LayerOverride& ck, KernelChoice& c,
                             std::vector<std::string>& notes) {
  KernelParams accepted = c.params;
  bool used = false;
  for (const auto& [key, value] : ck.params.values) {
    KernelParams one;
    one.values[key] = value;
    const KernelParams candidate = accepted.merged(one);
    const Verdict v = b.validate_params(layer, candidate);
    if (v.ok) {
      accepted = candidate;
      used = true;
    } else {
      add_note(notes, "checkpoint tune_metadata '" + ck.pattern + "' key '" + key + "' " + one.to_json() +
                          " not used by " + b.name() + ": " + v.reason);
    }
  }
  if (!used) return;
  c.params = std::move(accepted);
  c.source = ParamSource::Checkpoint;
}

// Parameter resolution for one choice, most specific last:
// default < checkpoint tune_metadata < global < tuned < override.
// May split the choice at the M buckets of the tuning cache. Returns "" or an error.
std::string assign_params(const Backend& b, const KernelChoice& base, const LayerSpec& layer,
                          const RuntimeConfig& config, const LayerOverride* ov, const DeviceInfo& device,
                          const TuningCache* cache, std::vector<KernelChoice>& out,
                          std::vector<std::string>& notes) {
  // Pieces of [m_min, m_max] by tuned bucket: bucket b_i serves (b_{i-1}, b_i]; the last one
  // also serves everything above it (nearest tuned M wins, as vLLM's tuned configs do).
  std::vector<const TuningEntry*> tuned;
  if (cache) tuned = cache->entries_for(device, b, layer);
  struct Piece {
    int64_t lo, hi;
    const TuningEntry* entry;
  };
  std::vector<Piece> tuned_pieces;
  if (tuned.empty()) {
    tuned_pieces.push_back({base.m_min, base.m_max, nullptr});
  } else {
    int64_t prev = 0;
    for (size_t i = 0; i < tuned.size(); ++i) {
      const int64_t lo = prev + 1;
      const int64_t hi = (i + 1 == tuned.size()) ? kMaxM : tuned[i]->key.m;
      prev = hi;
      const int64_t a = std::max(lo, base.m_min), z = std::min(hi, base.m_max);
      if (a <= z) tuned_pieces.push_back({a, z, tuned[i]});
    }
  }
  // Default heuristics depend on M (a row tile for decode, another for prefill): for a backend that
  // reads per-call parameters (so a split costs no second packing), probe each piece at its start
  // and at every power of two inside it (up to 4096) and split where the defaults change.
  std::vector<Piece> pieces;
  for (const Piece& tp : tuned_pieces) {
    int64_t seg_lo = tp.lo;
    KernelParams seg_params = b.default_params(layer, tp.lo, device);
    for (int64_t m = 2; b.reads_call_params() && m <= 4096 && m <= tp.hi; m *= 2) {
      if (m <= tp.lo) continue;
      KernelParams p = b.default_params(layer, m, device);
      if (p == seg_params) continue;
      pieces.push_back({seg_lo, m - 1, tp.entry});
      seg_lo = m;
      seg_params = std::move(p);
    }
    pieces.push_back({seg_lo, tp.hi, tp.entry});
  }

  const LayerOverride* ck_params = config.checkpoint_params_for(layer.name);
  KernelParams global = config.kernel_params;
  if (auto it = config.backend_params.find(b.name()); it != config.backend_params.end())
    global = global.merged(it->second);

  for (const Piece& piece : pieces) {
    KernelChoice c = base;
    c.m_min = piece.lo;
    c.m_max = piece.hi;
    c.params = b.default_params(layer, piece.lo, device);
    c.source = ParamSource::Default;
    if (ck_params && !ck_params->params.empty()) apply_checkpoint_params(b, layer, *ck_params, c, notes);
    if (!global.empty()) {
      c.params = c.params.merged(global);
      c.source = ParamSource::Global;
      const Verdict v = b.validate_params(layer, c.params);
      if (!v.ok)
        return "global kernel_params " + global.to_json() + " rejected by " + b.name() + ": " + v.reason +
               " (set them per backend: \"kernel_params\": {\"" + b.name() + "\": {...}})";
    }
    if (piece.entry) {
      const KernelParams candidate = c.params.merged(piece.entry->params);
      const Verdict v = b.validate_params(layer, candidate);
      if (v.ok) {
        c.params = candidate;
        c.source = ParamSource::Tuned;
      } else {
        notes.push_back("tuning cache entry for " + b.name() + " at M=" + std::to_string(piece.entry->key.m) +
                        " ignored: " + v.reason);
      }
    }
    if (ov && !ov->params.empty()) {
      c.params = c.params.merged(ov->params);
      c.source = ParamSource::Override;
      const Verdict v = b.validate_params(layer, c.params);
      if (!v.ok)
        return "kernel parameters of override '" + ov->pattern + "' " + ov->params.to_json() + " rejected by " +
               b.name() + ": " + v.reason;
    } else {
      const Verdict v = b.validate_params(layer, c.params);
      if (!v.ok)
        return std::string(param_source_name(c.source)) + " kernel parameters " + c.params.to_json() +
               " rejected by " + b.name() + ": " + v.reason;
    }
    // Adjacent pieces that ended up identical are one choice.
    if (!out.empty() && out.back().backend == c.backend && out.back().params == c.params &&
        out.back().source == c.source && out.back().m_max + 1 == c.m_min) {
      out.back().m_max = c.m_max;
    } else {
      out.push_back(c);
    }
  }
  return "";
}

LinearPlan plan_one(const LayerSpec& layer, const RuntimeConfig& config, const DeviceInfo& device,
                    const TuningCache* cache, const BackendRegistry& registry) {
  LinearPlan plan;
  plan.layer = layer;
  const LayerOverride* ov = config.override_for(layer.name);
  const bool override_backend = ov && !ov->backend.empty();
  const std::string requested = override_backend ? ov->backend : config.backend;
  const bool hint = !override_backend && config.backend_is_hint;

  std::set<std::string> disabled(config.disabled.begin(), config.disabled.end());
  const std::string disabled_from = config.provenance_of("disabled");

  // Every backend gets a verdict: the auto list of this device class first, in order, then the rest.
  std::vector<std::string> order = registry.auto_order(device, layer);
  std::vector<std::string> considered = order;
  for (const auto& n : registry.names())
    if (std::find(considered.begin(), considered.end(), n) == considered.end()) considered.push_back(n);
  for (const auto& n : considered) {
    if (disabled.count(n)) {
      plan.verdicts.emplace_back(n, Verdict::no("disabled (" + disabled_from + ")"));
      continue;
    }
    plan.verdicts.emplace_back(n, registry.find(n)->check(layer, device));
  }

  std::vector<KernelChoice> ranges;
  bool covered = false;
  std::string chosen_backend = requested;   // the explicit backend, or the fallback standing in for it
  if (requested != "auto" && !requested.empty()) {
    const Backend* b = registry.find(requested);
    const std::string why_src = override_backend ? "override '" + ov->pattern + "'"
                                                 : config.provenance_of("backend");
    if (!b) {
      plan.error = layer.name + ": backend '" + requested + "' (from " + why_src + ") is not registered; available: " +
                   join_names(registry.names());
      return plan;
    }
    const Verdict* v = verdict_of(plan, requested);
    // An explicit backend that cannot run here goes to the user's own fallback list, in order,
    // at plan time: "--backend marlin --fallback cpu_simd" on a CPU runs cpu_simd, with a note.
    if (!v->ok && !hint) {
      for (const auto& f : config.fallback) {
        const Verdict* fv = verdict_of(plan, f);
        if (f == requested || !fv || !fv->ok) continue;
        plan.notes.push_back("backend " + requested + " (from " + why_src + ") cannot run this layer on " + device.id +
                             " (" + v->reason + "); using fallback " + f);
        chosen_backend = f;
        b = registry.find(f);
        v = fv;
        break;
      }
    }
    if (!v->ok) {
      const auto ok = passing(plan.verdicts);
      const std::string msg = "backend " + requested + " (from " + why_src + ") cannot run " + layer_title(layer) +
                              " on " + device.id + ": " + v->reason;
      if (hint) {
        plan.notes.push_back(msg + "; the checkpoint's backend is a hint, using auto");
      } else {
        // First line: the whole story for a script or a terminal; then the verdicts.
        plan.error = msg + "; would work: " + (ok.empty() ? std::string("none") : join_names(ok)) +
                     "\n  every backend's verdict:" + verdict_summary(plan.verdicts);
        return plan;
      }
    } else {
      KernelChoice c;
      c.backend = chosen_backend;
      c.m_max = b->capability().max_m;
      ranges.push_back(c);
      covered = c.m_max == kMaxM;
      if (!covered)
        plan.notes.push_back(chosen_backend + " serves " + range_text(1, c.m_max) + " only (its max_m); larger M is "
                             "planned by auto");
    }
  }
  if (!covered) {
    const int64_t start = ranges.empty() ? 1 : ranges.back().m_max + 1;
    covered = walk(order, plan, registry, start, ranges);
  }
  if (!covered) {
    const int64_t start = ranges.empty() ? 1 : ranges.back().m_max + 1;
    const auto ok = passing(plan.verdicts);
    plan.error = "no backend can run " + layer_title(layer) + " on " + device.describe() +
                 (start > 1 ? " for " + range_text(start, kMaxM) : std::string()) +
                 (ok.empty() ? std::string() : "; passing but not in the auto list for this device: " + join_names(ok)) +
                 "\n  every backend's verdict:" + verdict_summary(plan.verdicts);
    return plan;
  }

  // A loud note when a range lands on the device's last resort (dequant + cuBLAS, the CPU
  // reference) although faster backends exist: users otherwise meet a silent slowdown.
  if (!order.empty()) {
    for (const auto& r : ranges) {
      if (r.backend != order.back() || order.size() < 2) continue;
      std::string why;
      for (const auto& n : order) {
        if (n == r.backend) break;
        const Verdict* v = verdict_of(plan, n);
        if (v && !v->ok) why += (why.empty() ? "" : "; ") + n + ": " + v->reason;
      }
      if (!why.empty())
        plan.notes.push_back(r.backend + " is the last-resort backend on " + device.id + " (slower); " +
                             "faster ones rejected this layer: " + why);
    }
  }

  // A backend that runs this layer differently from what its name promises says so in its verdict.
  for (const auto& r : ranges)
    if (const Verdict* v = verdict_of(plan, r.backend); v && !v->note.empty()) add_note(plan.notes, r.backend + ": " + v->note);

  for (const auto& r : ranges) {
    // An override that names a backend carries that backend's parameters: the M ranges another
    // backend serves (beyond a GEMV's max_m, say) are planned with their own.
    const LayerOverride* range_ov = ov;
    if (override_backend && r.backend != ov->backend) {
      range_ov = nullptr;
      if (!ov->params.empty())
        add_note(plan.notes, "override '" + ov->pattern + "' parameters " + ov->params.to_json() + " are for " +
                                 ov->backend + "; " + r.backend + " serves " + range_text(r.m_min, r.m_max) +
                                 " with its own");
    }
    const std::string err = assign_params(*registry.find(r.backend), r, layer, config, range_ov, device, cache,
                                          plan.choices, plan.notes);
    if (!err.empty()) {
      plan.error = layer_title(layer) + ": " + err;
      plan.choices.clear();
      return plan;
    }
  }

  // Fallback: the configured list (each must pass check), then, under auto, the remaining passing
  // backends of the auto list (a universal last resort, e.g. cuda_dequant, cpu_ref).
  std::set<std::string> chosen;
  for (const auto& c : plan.choices) chosen.insert(c.backend);
  for (const auto& f : config.fallback) {
    const Verdict* v = verdict_of(plan, f);
    if (chosen.count(f)) continue;   // already serving a range: not a fallback of itself
    if (!v) {
      plan.notes.push_back("fallback '" + f + "' is not a registered backend; skipped");
    } else if (!v->ok) {
      plan.notes.push_back("fallback " + f + " cannot run this layer (" + v->reason + "); skipped");
    } else if (std::find(plan.fallback.begin(), plan.fallback.end(), f) == plan.fallback.end()) {
      plan.fallback.push_back(f);
    }
  }
  if (requested == "auto" || requested.empty() || hint) {
    for (const auto& n : order) {
      const Verdict* v = verdict_of(plan, n);
      if (v && v->ok && registry.find(n)->capability().max_m == kMaxM && !chosen.count(n) &&
          std::find(plan.fallback.begin(), plan.fallback.end(), n) == plan.fallback.end())
        plan.fallback.push_back(n);
    }
  }
  return plan;
}

}  // namespace

const LinearPlan* ModelPlan::find(const std::string& name) const {
  for (const auto* list : {&layers, &fused})
    for (const auto& p : *list)
      if (p.layer.name == name) return &p;
  return nullptr;
}

std::string plan_failure_message(const std::vector<LinearPlan>& plans) {
  const LinearPlan* first = nullptr;
  size_t failed = 0;
  for (const auto& p : plans)
    if (!p.ok()) {
      if (!first) first = &p;
      ++failed;
    }
  if (!first) return "";
  const std::string& e = first->error.empty() ? std::string("plan has no kernel") : first->error;
  const size_t nl = e.find('\n');
  std::string out = e.substr(0, nl);
  if (failed > 1)
    out += " (" + std::to_string(failed) + " of " + std::to_string(plans.size()) +
           " quantized layers cannot be planned; the first is shown)";
  if (nl != std::string::npos) out += e.substr(nl);
  return out;
}

std::vector<LinearPlan> plan_layers(const std::vector<LayerSpec>& layers, const RuntimeConfig& config,
                                    const DeviceInfo& device, const TuningCache* cache,
                                    const BackendRegistry& registry) {
  std::vector<LinearPlan> plans;
  plans.reserve(layers.size());
  for (const auto& l : layers) plans.push_back(plan_one(l, config, device, cache, registry));
  return plans;
}

}  // namespace qrt
