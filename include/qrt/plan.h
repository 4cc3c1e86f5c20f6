// Selection: for every quantized layer, which backend runs it (per range of M), with which
// parameters, and why the others were rejected. Also the runtime object that dispatches by M.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qrt/backend.h"
#include "qrt/runtime_config.h"

namespace qrt {

class TuningCache;

class BackendRegistry {
 public:
  // The process-wide registry with every built-in backend (CUDA ones appear as "not built in this
  // binary" in a CPU-only build, never silently absent).
  static BackendRegistry& global();
  void add(std::unique_ptr<Backend> backend);
  const Backend* find(const std::string& name) const;   // exact qrt name; nullptr if absent
  std::vector<const Backend*> all() const;
  std::vector<std::string> names() const;
  // Auto priority list for a device (data, see backends/priorities.cpp).
  std::vector<std::string> auto_order(const DeviceInfo& device, const LayerSpec& layer) const;
  // Replaces the auto list of one device class ("cpu", "cuda_sm80", "cuda_sm70", "cuda_fp8") in
  // this registry only (tests register fake backends in a local registry and list them here).
  void set_auto_order(const std::string& device_class, std::vector<std::string> backends);

 private:
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::pair<std::string, std::vector<std::string>>> auto_overrides_;
};

// Where a choice's kernel parameters came from: the most specific source that set one of them.
// Precedence (lowest first): Default < Checkpoint (tune_metadata) < Global < Tuned < Override.
enum class ParamSource : uint8_t { Default, Global, Tuned, Override, Checkpoint };
const char* param_source_name(ParamSource s);

struct KernelChoice {
  int64_t m_min = 1, m_max = INT64_MAX;   // inclusive range of rows this choice serves
  std::string backend;
  KernelParams params;
  ParamSource source = ParamSource::Default;
};

struct LinearPlan {
  LayerSpec layer;
  std::vector<KernelChoice> choices;                         // sorted by m_min, cover [1, max)
  std::vector<std::pair<std::string, Verdict>> verdicts;     // every backend considered, in order
  std::vector<std::string> fallback;                         // backends to try if prepare fails
  std::string error;                                         // non-empty: no backend can run it
  // Things a person should know about this decision (explicit backend limited to an M range,
  // a checkpoint backend hint that could not be honoured, parameters a backend rejected...).
  std::vector<std::string> notes;
  bool ok() const { return error.empty() && !choices.empty(); }
};

// The plans of one model on one device (qrt/setup.h: resolve_setup, plan_model).
struct ModelPlan {
  std::vector<LinearPlan> layers;  // every quantized linear, in model order (7 per block, then lm_head)
  // The q/k/v and gate/up groups of each block that the device's engine runs as one linear each
  // (fused_projections.h), named "<block>.self_attn.q_proj+k_proj+v_proj"; empty when it does not fuse.
  std::vector<LinearPlan> fused;
  // The plan of a layer or fused group by name, or nullptr.
  const LinearPlan* find(const std::string& name) const;
};

// Decides every layer. Never throws for a layer it cannot place: that layer's plan has `error`
// (qrt plan prints all of them; loading a model turns the first into an Error).
std::vector<LinearPlan> plan_layers(const std::vector<LayerSpec>& layers, const RuntimeConfig& config,
                                    const DeviceInfo& device, const TuningCache* cache = nullptr,
                                    const BackendRegistry& registry = BackendRegistry::global());

// What an engine reports when some plans failed ("" when none did): the first failing layer's
// error, whose first line is a one-line summary (the layer, why, and which backends would work),
// with the count of failing layers appended to that line, then that layer's details (every
// backend's verdict) on the following lines.
std::string plan_failure_message(const std::vector<LinearPlan>& plans);

// The runtime linear: prepared kernels per M range, with fallback applied at prepare time and on
// the first run of each range.
class QuantLinear {
 public:
  // Prepares every choice of `plan` with `context` (the device, the rows per call, the log);
  // when prepare throws, tries plan.fallback in order and logs each failure through context.log.
  // Throws qrt::Error when nothing can be prepared.
  // `weight` and `registry` must outlive the first forward() of every M range: a kernel that fails
  // its first run is replaced by one prepared from them (engines keep their ModelWeights alive).
  static std::unique_ptr<QuantLinear> build(const QuantizedWeight& weight, const LinearPlan& plan,
                                            const PrepareContext& context,
                                            const BackendRegistry& registry = BackendRegistry::global());
  // The same, keeping `weight` alive for as long as this object needs it. With `reload` (which
  // reads the canonical weight again, e.g. from its checkpoint) it is released as soon as every
  // range is prepared, and a fallback on a first run re-reads it.
  static std::unique_ptr<QuantLinear> build(std::shared_ptr<const QuantizedWeight> weight, const LinearPlan& plan,
                                            const PrepareContext& context,
                                            const BackendRegistry& registry = BackendRegistry::global(),
                                            std::function<QuantizedWeight()> reload = {});
  // y = x * W^T (+ bias) with the kernel of x.rows' M range. The first call of each range checks
  // x and y against the layer and the backend's capability (qrt::Error InvalidInput naming the
  // layer; kernels trust their arguments) and is a probe: when the kernel throws qrt::Error (out of memory in a workspace, parameters it finds
  // unsupported at run time), the failure is logged, the next backend of the fallback list is
  // prepared and the call is rerun, rewriting y fully. Only that first call can throw (qrt::Error
  // naming the layer and every failure, when no backend can run the range); once a range has run
  // once, its calls go straight to the kernel: no try/catch, no allocation, no throw. A CUDA
  // engine that captures graphs should run each M range once eagerly before capturing it.
  // An M no range of the plan covers (a plan not made by plan_layers) throws Error(NoBackend)
  // naming the layer, M and the ranges, instead of leaving y unwritten.
  void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx);
  // Whether the kernel of M's range, once it has run (it may have fallen back), honours
  // ExecContext::fusion = `f` for activations of `dtype`. False for a range not run yet.
  bool fuses(const LinearFusion& f, int64_t m, DType dtype) const;
  const LayerSpec& layer() const { return layer_; }
  // Backend names actually used (after fallback), one per M range.
  std::vector<std::string> backends_used() const;
  // What runs, one entry per M range: the plan's choice, or after a fallback the backend that
  // replaced it with its default parameters (source Default).
  std::vector<KernelChoice> kernels() const;
  int64_t weight_bytes() const;
  // Wall seconds each M range's prepare took (repacking, uploads), with its backend: how an
  // engine says where its build time went. A kernel shared between ranges counts once.
  std::vector<std::pair<std::string, double>> prepare_seconds() const;

 private:
  struct Range {
    int64_t m_min = 1, m_max = INT64_MAX;
    std::string backend;
    std::shared_ptr<PreparedLinear> kernel;  // shared when two ranges use the same backend + packing
    KernelParams params;                      // the plan's parameters for this range
    ParamSource source = ParamSource::Default;  // where `params` came from
    bool pass_params = false;                 // backend reads ExecContext::call_params
    bool probed = false;                      // has run once: the hot path needs no guard
    std::vector<std::string> untried;         // fallback backends not tried yet for this range
    std::vector<std::string> failures;        // "backend: reason" of every failed attempt
    double prepare_s = 0;                     // wall time of the prepare that succeeded
  };
  // The range that serves M rows; nullptr when none does.
  const Range* range_of(int64_t m) const;
  Range* range_of(int64_t m) { return const_cast<Range*>(std::as_const(*this).range_of(m)); }
  static void run(Range& r, const ActTensor& x, const ActTensor& y, const ExecContext& ctx);
  void probe(Range& r, const ActTensor& x, const ActTensor& y, const ExecContext& ctx);
  [[noreturn]] void no_range(int64_t m) const;
  std::shared_ptr<PreparedLinear> prepare(const Backend& b, const KernelParams& params);
  void say(const std::string& message) const { context_.say(message); }

  LayerSpec layer_;
  std::vector<Range> ranges_;
  // Kept for fallback on a first-run failure (released once every range has run), or re-read
  // through reload_ when the caller can (then released right after build).
  std::shared_ptr<const QuantizedWeight> weight_;
  std::function<QuantizedWeight()> reload_;
  PrepareContext context_;
  const BackendRegistry* registry_ = nullptr;
  // Prepared kernels by (backend, packing params): M ranges with the same choice share one.
  std::vector<std::pair<std::pair<std::string, std::string>, std::shared_ptr<PreparedLinear>>> prepared_;
};

// One linear's share of the "backends: ..." summary of a model: +1 for each distinct backend `q`
// runs (after fallback), or +1 to "dense" for an unquantized linear (q == nullptr).
void count_backends(const QuantLinear* q, std::map<std::string, int>& counts);

}  // namespace qrt
