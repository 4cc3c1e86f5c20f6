// The plan an engine runs (internal to src/model): the one resolve_setup() made, or, for weights
// built in memory without a setup, the same plan_model() over their quantized linears.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "qrt/model.h"
#include "qrt/plan.h"

namespace qrt {

// options.plan, or plan_model() of w's quantized linears with the tuning cache options.runtime
// names (its warnings go to `log`). Throws Error(NoBackend) with plan_failure_message() when a
// layer has no backend, and internal_error when a quantized linear of `w` has no plan or a plan
// whose weight description differs from the weight's (the plan was made for another model).
std::shared_ptr<const ModelPlan> engine_plan(const ModelWeights& w, const EngineOptions& options,
                                             const std::function<void(const std::string&)>& log);

}  // namespace qrt
