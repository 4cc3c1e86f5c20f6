// The runtime linear layer: one prepared kernel per range of M, chosen by the plan. Fallback
// happens here, twice: at prepare time (build) and on the first run of each M range (probe), the
// two places where a kernel finds out it cannot run (out of memory, parameters it rejects late).
// Every failure is reported through the caller's log.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <new>
#include <set>

#include "qrt/error.h"
#include "qrt/plan.h"

namespace qrt {

namespace {

std::string m_range_text(int64_t lo, int64_t hi) {
  return std::to_string(lo) + ".." + (hi == INT64_MAX ? std::string("") : std::to_string(hi));
}

std::string failure_list(const std::vector<std::string>& failures) {
  std::string all;
  for (const auto& f : failures) all += "\n    " + f;
  return all;
}

// x and y against the layer and what `b` runs on (the first run of each M range: kernels trust
// their arguments). Throws InvalidInput naming the layer and the backend.
void check_activations(const LayerSpec& layer, const Backend& b, const ActTensor& x, const ActTensor& y) {
  const BackendCapability& cap = b.capability();
  auto fail = [&](const std::string& what) { throw invalid_input(layer.name + ": " + b.name() + ": " + what); };
  if (x.device != cap.device || y.device != cap.device)
    fail(std::string("activations must live on the ") + device_kind_name(cap.device));
  const auto& dts = cap.activation_dtypes;
  if ((!dts.empty() && std::find(dts.begin(), dts.end(), x.dtype) == dts.end()) || y.dtype != x.dtype)
    fail(fmt::format("activations of dtype {} (x) and {} (y) are not ones it runs", dtype_name(x.dtype),
                     dtype_name(y.dtype)));
  if (x.cols != layer.in_features || y.cols != layer.out_features || x.rows != y.rows)
    fail(fmt::format("x is {}x{}, y is {}x{}; the layer needs x Mx{} and y Mx{}", x.rows, x.cols, y.rows, y.cols,
                     layer.in_features, layer.out_features));
  if (!x.data || !y.data) fail("null activation pointer");
}

}  // namespace

std::shared_ptr<PreparedLinear> QuantLinear::prepare(const Backend& b, const KernelParams& params) {
  const auto key = std::make_pair(b.name(), b.reads_call_params() ? b.packing_params(params).to_json()
                                                                    : params.to_json());
  for (auto& [k, p] : prepared_)
    if (k == key) return p;
  std::shared_ptr<const QuantizedWeight> weight = weight_;
  if (!weight) {
    if (!reload_) throw internal_error(layer_.name + ": the canonical weight is gone and cannot be re-read");
    weight = std::make_shared<const QuantizedWeight>(reload_());
  }
  std::shared_ptr<PreparedLinear> p = b.prepare(*weight, params, context_);
  if (!p) throw internal_error(b.name() + ": prepare returned nothing");
  prepared_.emplace_back(key, p);
  return p;
}

std::unique_ptr<QuantLinear> QuantLinear::build(const QuantizedWeight& weight, const LinearPlan& plan,
                                                const PrepareContext& context, const BackendRegistry& registry) {
  // Not owned: the caller keeps `weight` alive (documented in plan.h).
  return build(std::shared_ptr<const QuantizedWeight>(&weight, [](const QuantizedWeight*) {}), plan, context,
               registry);
}

std::unique_ptr<QuantLinear> QuantLinear::build(std::shared_ptr<const QuantizedWeight> weight, const LinearPlan& plan,
                                                const PrepareContext& context, const BackendRegistry& registry,
                                                std::function<QuantizedWeight()> reload) {
  const DeviceInfo& device = context.device;
  if (!plan.ok())
    throw Error(ErrorKind::NoBackend, plan.error.empty() ? plan.layer.name + ": plan has no kernel" : plan.error);
  if (!weight) throw internal_error(plan.layer.name + ": QuantLinear::build without a weight");
  auto out = std::unique_ptr<QuantLinear>(new QuantLinear());
  out->layer_ = weight->spec;
  out->weight_ = std::move(weight);
  out->context_ = context;
  out->reload_ = std::move(reload);
  out->registry_ = &registry;

  for (const KernelChoice& choice : plan.choices) {
    std::vector<std::string> failures;
    std::shared_ptr<PreparedLinear> kernel;
    std::string used;
    double prepare_s = 0;
    // The planned backend first, then the fallback list in order.
    std::vector<std::pair<std::string, bool>> attempts = {{choice.backend, true}};
    for (const auto& f : plan.fallback)
      if (f != choice.backend) attempts.emplace_back(f, false);
    size_t i = 0;
    for (; i < attempts.size(); ++i) {
      const auto& [name, planned] = attempts[i];
      const Backend* b = registry.find(name);
      if (!b) {
        failures.push_back(name + ": not registered");
        continue;
      }
      if (!planned && b->capability().max_m < choice.m_max) continue;  // cannot serve this range
      const KernelParams params = planned ? choice.params : b->default_params(plan.layer, choice.m_min, device);
      try {
        const auto t0 = std::chrono::steady_clock::now();
        kernel = out->prepare(*b, params);
        prepare_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        used = name;
        break;
      } catch (const Error& e) {
        failures.push_back(name + ": " + e.what());
      } catch (const std::bad_alloc&) {
        failures.push_back(name + ": out of host memory");
      }
      out->say(plan.layer.name + ": backend " + name + " failed to prepare (" + failures.back() + ")" +
               (i + 1 < attempts.size() ? "; trying the next fallback" : ""));
    }
    if (!kernel)
      throw Error(ErrorKind::NoBackend, plan.layer.name + ": no backend could be prepared for M " +
                                            m_range_text(choice.m_min, choice.m_max) + ":" + failure_list(failures));
    if (used != choice.backend)
      out->say(plan.layer.name + ": using fallback backend " + used + " instead of " + choice.backend);
    const Backend* ub = registry.find(used);
    KernelParams call = used == choice.backend ? choice.params : ub->default_params(plan.layer, choice.m_min, device);
    Range r;
    r.m_min = choice.m_min;
    r.m_max = choice.m_max;
    r.backend = used;
    r.kernel = std::move(kernel);
    r.params = std::move(call);
    r.source = used == choice.backend ? choice.source : ParamSource::Default;
    r.pass_params = ub->reads_call_params();
    r.prepare_s = prepare_s;
    for (size_t j = i + 1; j < attempts.size(); ++j) r.untried.push_back(attempts[j].first);
    for (auto& f : failures) r.failures.push_back(std::move(f) + " (prepare)");
    out->ranges_.push_back(std::move(r));
  }
  // Every range is prepared: the canonical weight is only needed again for a first-run fallback,
  // which re-reads it when the caller said how.
  if (out->reload_) out->weight_.reset();
  return out;
}

void QuantLinear::run(Range& r, const ActTensor& x, const ActTensor& y, const ExecContext& ctx) {
  if (r.pass_params) {
    ExecContext c = ctx;
    c.call_params = &r.params;
    r.kernel->forward(x, y, c);
  } else {
    r.kernel->forward(x, y, ctx);
  }
}

const QuantLinear::Range* QuantLinear::range_of(int64_t m) const {
  for (const auto& r : ranges_)
    if (m >= r.m_min && m <= r.m_max) return &r;
  return nullptr;
}

void QuantLinear::forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx) {
  if (x.rows <= 0) return;
  Range* r = range_of(x.rows);
  // Plans made by plan_layers cover [1, INT64_MAX); a plan built another way may not. Writing
  // nothing would leave y as it was, silently: say which M found no kernel instead.
  if (!r) no_range(x.rows);
  if (!r->probed) [[unlikely]] {
    probe(*r, x, y, ctx);
    return;
  }
  run(*r, x, y, ctx);
}

bool QuantLinear::fuses(const LinearFusion& f, int64_t m, DType dtype) const {
  const Range* r = range_of(m);
  return r && r->probed && r->kernel && r->kernel->fuses(f, m, dtype);
}

void QuantLinear::no_range(int64_t m) const {
  std::string ranges;
  for (const auto& r : ranges_) ranges += (ranges.empty() ? "" : ", ") + m_range_text(r.m_min, r.m_max);
  throw Error(ErrorKind::NoBackend, layer_.name + ": no kernel of its plan serves M = " + std::to_string(m) +
                                        " (the plan covers M " + (ranges.empty() ? std::string("nothing") : ranges) + ")");
}

// The first run of a range: the kernel's last chance to say it cannot run. Kept out of forward()
// so the hot path carries no handler. Each kernel writes every element of y, so a rerun after a
// failure leaves no half-written output.
void QuantLinear::probe(Range& r, const ActTensor& x, const ActTensor& y, const ExecContext& ctx) {
  const std::string at = "M=" + std::to_string(x.rows);
  for (;;) {
    check_activations(layer_, *registry_->find(r.backend), x, y);  // the caller's error: no fallback
    std::string why;
    try {
      run(r, x, y, ctx);
      r.probed = true;
      break;
    } catch (const Error& e) {
      why = e.what();
    } catch (const std::bad_alloc&) {
      why = "out of host memory";
    }
    r.failures.push_back(r.backend + ": " + why + " (first run at " + at + ")");
    const std::string failed = r.backend;
    say(layer_.name + ": backend " + failed + " failed on its first run at " + at + " (" + why + ")" +
        (r.untried.empty() ? "" : "; trying the next fallback"));
    // The next fallback that can serve this range and prepares.
    bool replaced = false;
    while (!r.untried.empty() && !replaced) {
      const std::string name = r.untried.front();
      r.untried.erase(r.untried.begin());
      const Backend* b = registry_->find(name);
      if (!b) {
        r.failures.push_back(name + ": not registered");
        continue;
      }
      if (b->capability().max_m < r.m_max) continue;
      KernelParams params = b->default_params(layer_, r.m_min, context_.device);
      try {
        r.kernel = prepare(*b, params);
      } catch (const Error& e) {
        r.failures.push_back(name + ": " + e.what() + " (prepare)");
        say(layer_.name + ": backend " + name + " failed to prepare (" + e.what() + ")");
        continue;
      } catch (const std::bad_alloc&) {
        r.failures.push_back(name + ": out of host memory (prepare)");
        say(layer_.name + ": backend " + name + " failed to prepare (out of host memory)");
        continue;
      }
      r.backend = name;
      r.params = std::move(params);
      r.source = ParamSource::Default;
      r.pass_params = b->reads_call_params();
      replaced = true;
      say(layer_.name + ": using fallback backend " + name + " instead of " + failed + " for M " +
          m_range_text(r.m_min, r.m_max));
    }
    if (!replaced)
      throw Error(ErrorKind::NoBackend, layer_.name + ": no backend could run M " + m_range_text(r.m_min, r.m_max) +
                                            " (first run at " + at + "):" + failure_list(r.failures));
  }
  r.untried.clear();
  r.untried.shrink_to_fit();
  r.failures.clear();
  r.failures.shrink_to_fit();
  // Once every range has run, nothing can fall back any more: drop what only fallback needed.
  for (const auto& other : ranges_)
    if (!other.probed) return;
  prepared_.clear();
  weight_.reset();
  reload_ = nullptr;
}

std::vector<std::string> QuantLinear::backends_used() const {
  std::vector<std::string> out;
  for (const auto& r : ranges_) out.push_back(r.backend);
  return out;
}

std::vector<KernelChoice> QuantLinear::kernels() const {
  std::vector<KernelChoice> out;
  for (const auto& r : ranges_) out.push_back({r.m_min, r.m_max, r.backend, r.params, r.source});
  return out;
}

void count_backends(const QuantLinear* q, std::map<std::string, int>& counts) {
  if (!q) {
    ++counts["dense"];
    return;
  }
  std::set<std::string> names;
  for (const auto& b : q->backends_used()) names.insert(b);
  for (const auto& b : names) ++counts[b];
}

std::vector<std::pair<std::string, double>> QuantLinear::prepare_seconds() const {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& r : ranges_) out.emplace_back(r.backend, r.prepare_s);
  return out;
}

int64_t QuantLinear::weight_bytes() const {
  int64_t total = 0;
  std::vector<const PreparedLinear*> seen;
  for (const auto& r : ranges_) {
    bool dup = false;
    for (auto* s : seen) dup |= (s == r.kernel.get());
    if (dup) continue;
    seen.push_back(r.kernel.get());
    total += r.kernel->weight_bytes();
  }
  return total;
}

}  // namespace qrt
