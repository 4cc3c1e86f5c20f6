// The runtime linear layer: one prepared kernel per range of M, chosen by the plan; fallback
// happens here, at prepare time, and every failure is reported through the caller's log.
#include <new>

#include "qrt/error.h"
#include "qrt/plan.h"

namespace qrt {

std::unique_ptr<QuantLinear> QuantLinear::build(const QuantizedWeight& weight, const LinearPlan& plan,
                                                const DeviceInfo& device,
                                                const std::function<void(const std::string&)>& log,
                                                const BackendRegistry& registry) {
  if (!plan.ok())
    throw Error(ErrorKind::NoBackend, plan.error.empty() ? plan.layer.name + ": plan has no kernel" : plan.error);
  auto out = std::unique_ptr<QuantLinear>(new QuantLinear());
  out->layer_ = weight.spec;
  auto say = [&](const std::string& m) {
    if (log) log(m);
  };

  // Prepared kernels by (backend, params): two M ranges with the same choice share one packing.
  std::vector<std::pair<std::pair<std::string, std::string>, std::shared_ptr<PreparedLinear>>> cache;
  auto prepare = [&](const Backend& b, const KernelParams& params) -> std::shared_ptr<PreparedLinear> {
    const auto key = std::make_pair(b.name(), b.reads_call_params() ? b.packing_params(params).to_json()
                                                                      : params.to_json());
    for (auto& [k, p] : cache)
      if (k == key) return p;
    std::shared_ptr<PreparedLinear> p = b.prepare(weight, params, device);
    if (!p) throw internal_error(b.name() + ": prepare returned nothing");
    cache.emplace_back(key, p);
    return p;
  };

  for (const KernelChoice& choice : plan.choices) {
    std::vector<std::string> failures;
    std::shared_ptr<PreparedLinear> kernel;
    std::string used;
    // The planned backend first, then the fallback list in order.
    std::vector<std::pair<std::string, bool>> attempts = {{choice.backend, true}};
    for (const auto& f : plan.fallback)
      if (f != choice.backend) attempts.emplace_back(f, false);
    for (size_t i = 0; i < attempts.size(); ++i) {
      const auto& [name, planned] = attempts[i];
      const Backend* b = registry.find(name);
      if (!b) {
        failures.push_back(name + ": not registered");
        continue;
      }
      if (!planned && b->capability().max_m < choice.m_max) continue;  // cannot serve this range
      const KernelParams params = planned ? choice.params : b->default_params(plan.layer, choice.m_min, device);
      try {
        kernel = prepare(*b, params);
        used = name;
        break;
      } catch (const Error& e) {
        failures.push_back(name + ": " + e.what());
      } catch (const std::bad_alloc&) {
        failures.push_back(name + ": out of host memory");
      }
      say(plan.layer.name + ": backend " + name + " failed to prepare (" + failures.back() + ")" +
          (i + 1 < attempts.size() ? "; trying the next fallback" : ""));
    }
    if (!kernel) {
      std::string all;
      for (const auto& f : failures) all += "\n    " + f;
      throw Error(ErrorKind::NoBackend, plan.layer.name + ": no backend could be prepared for M " +
                                            std::to_string(choice.m_min) + ".." +
                                            (choice.m_max == INT64_MAX ? std::string("") : std::to_string(choice.m_max)) +
                                            ":" + all);
    }
    if (used != choice.backend)
      say(plan.layer.name + ": using fallback backend " + used + " instead of " + choice.backend);
    const Backend* ub = registry.find(used);
    KernelParams call = used == choice.backend ? choice.params : ub->default_params(plan.layer, choice.m_min, device);
    out->ranges_.push_back({choice.m_min, choice.m_max, used, std::move(kernel), std::move(call), ub->reads_call_params()});
  }
  return out;
}

void QuantLinear::forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx) {
  if (x.rows <= 0) return;
  for (auto& r : ranges_)
    if (x.rows >= r.m_min && x.rows <= r.m_max) {
      if (r.pass_params) {
        ExecContext c = ctx;
        c.call_params = &r.params;
        r.kernel->forward(x, y, c);
      } else {
        r.kernel->forward(x, y, ctx);
      }
      return;
    }
  // Plans cover [1, INT64_MAX); reaching here is a bug, and the hot path does not throw.
}

std::vector<std::string> QuantLinear::backends_used() const {
  std::vector<std::string> out;
  for (const auto& r : ranges_) out.push_back(r.backend);
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
