// The backend registry: every built-in backend, including the CUDA ones of a CPU-only build, which
// are registered as "not built in this binary" stubs carrying their real declared capability (so
// they show up in every verdict list and `qrt plan --target h100` plans as a CUDA build would).
#include <algorithm>

#include "backends/backend_factories.h"
#include "backends/backends_internal.h"
#include "backends/cuda_capabilities.h"
#include "qrt/error.h"
#include "qrt/plan.h"

namespace qrt {

namespace {

class NotBuiltBackend final : public Backend {
 public:
  explicit NotBuiltBackend(const CudaBackendDeclaration& d) : decl_(d) {}
  const std::string& name() const override { return decl_.name; }
  const std::string& summary() const override { return decl_.summary; }
  const BackendCapability& capability() const override { return decl_.capability; }
  bool built() const override { return false; }

  // A target profile is planned as a CUDA build would (the declared capability is the truth);
  // a real device cannot use a backend this binary does not contain.
  Verdict check(const LayerSpec& layer, const DeviceInfo& device) const override {
    if (!device.simulated()) return Verdict::no("not built in this binary (CPU-only build)");
    Verdict v = check_capability(layer, device);
    if (v.ok && decl_.layer_obstacle)
      if (std::string why = decl_.layer_obstacle(layer); !why.empty()) return Verdict::no(why);
    if (v.ok && decl_.path_note) v.note = decl_.path_note(layer, device);
    return v;
  }
  // Parameters of a kernel that is not here cannot be checked; they are validated by a CUDA build.
  Verdict validate_params(const LayerSpec&, const KernelParams&) const override { return Verdict::yes(); }
  std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight, const KernelParams&,
                                          const PrepareContext&) const override {
    throw Error(ErrorKind::Unsupported, weight.spec.name + ": backend " + decl_.name +
                                            " is not built in this binary (CPU-only build)");
  }

 private:
  CudaBackendDeclaration decl_;
};

void register_builtins(BackendRegistry& r) {
  r.add(make_cpu_ref_backend());
  r.add(make_cpu_simd_backend());
  r.add(make_cpu_higgs_backend());
#ifdef QRT_WITH_CUDA
  r.add(make_cuda_dequant_backend());
  r.add(make_cuda_fp8_backend());
  r.add(make_cuda_marlin_backend());
  r.add(make_cuda_gemv_backend());
  r.add(make_cuda_higgs_backend());
  r.add(make_cuda_int8_backend());
  // The CUDA backends must declare what the shared table says (plans for target profiles and
  // for real GPUs would disagree otherwise).
  for (const auto& d : cuda_backend_declarations())
    if (!r.find(d.name)) throw internal_error("CUDA backend " + d.name + " is declared but not registered");
#else
  for (const auto& d : cuda_backend_declarations()) r.add(std::make_unique<NotBuiltBackend>(d));
#endif
}

}  // namespace

BackendRegistry& BackendRegistry::global() {
  static BackendRegistry* registry = [] {
    auto* r = new BackendRegistry();  // never destroyed: backends may be used during static teardown
    register_builtins(*r);
    return r;
  }();
  return *registry;
}

void BackendRegistry::add(std::unique_ptr<Backend> backend) {
  if (!backend) throw internal_error("BackendRegistry::add: null backend");
  if (find(backend->name())) throw internal_error("backend '" + backend->name() + "' registered twice");
  backends_.push_back(std::move(backend));
}

const Backend* BackendRegistry::find(const std::string& name) const {
  for (const auto& b : backends_)
    if (b->name() == name) return b.get();
  return nullptr;
}

std::vector<const Backend*> BackendRegistry::all() const {
  std::vector<const Backend*> out;
  for (const auto& b : backends_) out.push_back(b.get());
  return out;
}

std::vector<std::string> BackendRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& b : backends_) out.push_back(b->name());
  return out;
}

void BackendRegistry::set_auto_order(const std::string& cls, std::vector<std::string> backends) {
  for (auto& [c, list] : auto_overrides_)
    if (c == cls) {
      list = std::move(backends);
      return;
    }
  auto_overrides_.emplace_back(cls, std::move(backends));
}

std::vector<std::string> BackendRegistry::auto_order(const DeviceInfo& device, const LayerSpec& layer) const {
  const std::string cls = device_class(device, layer);
  const std::vector<std::string>* list = nullptr;
  for (const auto& [c, l] : auto_overrides_)
    if (c == cls) list = &l;
  if (!list)
    for (const auto& p : priority_lists())
      if (p.device_class == cls) list = &p.backends;
  std::vector<std::string> out;
  if (!list) return out;
  for (const auto& n : *list)
    if (find(n)) out.push_back(n);
  return out;
}

}  // namespace qrt
