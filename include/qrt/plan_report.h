// The decision table of `qrt plan` in one place for the command and the embedding APIs: what a
// resolved setup (qrt/setup.h) plans for a checkpoint, summarized, and the JSON form that
// `qrt plan --json`, qrt_model_plan_json() (C) and qrt.Model.plan() (Python) all return.
#pragma once

#include <map>
#include <string>

#include "qrt/checkpoint.h"
#include "qrt/plan.h"
#include "qrt/setup.h"

namespace qrt {

struct PlanSummary {
  int dense_layers = 0;                      // linears that run dense (not planned through a backend)
  int layers_without_backend = 0;
  // backend -> M range (describe_m_range) -> number of layers it serves that range for.
  std::map<std::string, std::map<std::string, int>> by_backend;
  std::map<std::string, std::string> fused_into;  // part layer -> the fused layer that runs it
};

PlanSummary summarize_plan(const Checkpoint& checkpoint, const ResolvedSetup& setup);

// The JSON object `qrt plan --json` prints (2-space indent); `model` is the path as the user gave it.
std::string plan_report_json(const std::string& model, const Checkpoint& checkpoint, const ResolvedSetup& setup);

// The rows a kernel choice serves: "all M", "M=1", "M 1-8", "M>=9".
std::string describe_m_range(const KernelChoice& choice);

}  // namespace qrt
