// The backend interface: a declared capability plus check / prepare / forward / tuning_space.
// Selection, fallback and tuning (backends/selection.*) read these declarations as tables.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "qrt/device.h"
#include "qrt/dtype.h"
#include "qrt/quantized_weight.h"

namespace qrt {

class ThreadPool;

// ---- kernel parameters: named, typed, validated by the owning backend ----
using ParamValue = std::variant<int64_t, std::vector<int64_t>, std::string>;
struct KernelParams {
  std::map<std::string, ParamValue> values;
  bool empty() const { return values.empty(); }
  bool has(const std::string& k) const { return values.count(k) != 0; }
  int64_t get_int(const std::string& k, int64_t fallback) const;
  std::vector<int64_t> get_ints(const std::string& k) const;  // int -> {int}; missing -> {}
  // Later wins: returns *this with every value of `over` replacing ours.
  KernelParams merged(const KernelParams& over) const;
  // {"tile":[128,128],"warps":4} -- compact JSON, keys sorted.
  std::string to_json() const;
  static KernelParams from_json(const std::string& json);  // throws on malformed input
  bool operator==(const KernelParams& o) const { return values == o.values; }
};

// ---- verdicts: ok, or one line a person can read ----
struct Verdict {
  bool ok = true;
  std::string reason;  // why not; empty when ok
  // When ok: how the backend would run the layer differently from what its name promises (a
  // slower path it takes for this layer, and why), shown in the plan. Empty: as advertised.
  std::string note;
  static Verdict yes() { return {}; }
  static Verdict no(std::string why) { return {false, std::move(why), {}}; }
  static Verdict yes_but(std::string note) { return {true, {}, std::move(note)}; }
};

// ---- declared capability (checked generically by Backend::check_capability) ----
struct BackendCapability {
  DeviceKind device = DeviceKind::Cpu;
  std::vector<WeightEncoding> encodings;    // which encodings it runs
  std::vector<int> bits;                    // IntAffine bit widths; empty = any
  std::vector<int> group_sizes;             // empty = any; -1 means "one group over K"
  bool act_order = true;
  bool symmetric = true;
  bool integer_zero = true;
  bool float_zero = true;
  bool fp8_block_scales = true;             // FP8 with scale blocks smaller than the tensor
  int min_compute_capability = 0;           // CUDA: 80 for sm_80
  int k_multiple = 1;                       // in_features must be a multiple of this
  int n_multiple = 1;                       // out_features must be a multiple of this
  std::vector<std::string> cpu_features;    // each must be present: "avx2", "fma", "avx512_vnni", ...
  std::vector<DType> activation_dtypes;     // F32 on CPU; F16/BF16 on CUDA
  int64_t max_m = INT64_MAX;                // largest M it is meant for (a GEMV: 8)
};

// ---- activations on a device ----
struct ActTensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;  // M
  int64_t cols = 0;  // K for x, N for y; row-major, contiguous
  DeviceKind device = DeviceKind::Cpu;
};

// Work an engine may ask a linear's kernel to do around its GEMM, so that a decode step needs fewer
// launches: the input rows computed in the prologue from the residual stream or the gate/up
// projection instead of read from x, and the output added into the residual stream in the
// epilogue instead of written to y. Asked only where PreparedLinear::fuses() said yes. The input
// dtype is the activations' (x.dtype); every value is rounded to it where the unfused ops would
// store it, so fused and unfused steps differ only by float summation order.
struct LinearFusion {
  enum class Input { X, RmsNorm, SiluMul };
  Input input = Input::X;
  // RmsNorm: row r = residual[r][:] * rsqrt(mean(residual[r][:]^2) + eps) * norm_weight[:]
  // (float rows of K; x is not read).
  const float* norm_residual = nullptr;
  const float* norm_weight = nullptr;
  float norm_eps = 0.f;
  // RmsNorm, optional: the row's sum of squares as K / 16 partial sums [r][K / 16] (each over 16
  // columns, written by the epilogue of the projection that last added into the residual, see
  // residual_sumsq_out), summed instead of the residual row itself.
  const float* norm_sumsq = nullptr;
  // SiluMul: row r = silu(gate[r * stride + c]) * up[r * stride + c] (x.dtype, K columns).
  const void* gate = nullptr;
  const void* up = nullptr;
  int64_t gate_up_stride = 0;
  // When set: residual_out[r][n] += the output (as rounded to y.dtype); y is not written.
  float* residual_out = nullptr;
  // With residual_out, optional: the sums of squares of the updated residual row r over each 16
  // columns, written to residual_sumsq_out[r][n / 16] (what a following RmsNorm reads as
  // norm_sumsq). Each partial is written whole by one thread: no atomics, no zeroing.
  float* residual_sumsq_out = nullptr;
  bool any() const { return input != Input::X || residual_out != nullptr; }
};

struct ExecContext {
  ThreadPool* pool = nullptr;   // CPU backends; nullptr = run on the calling thread
  void* cuda_stream = nullptr;  // cudaStream_t for CUDA backends
  // The plan's parameters for this call's range of M, set by QuantLinear only for backends whose
  // reads_call_params() is true (one packed weight then serves several M ranges with different
  // row tiles). Reading it must not allocate; nullptr = use what prepare() was given.
  const KernelParams* call_params = nullptr;
  // Prologue / epilogue work (LinearFusion); nullptr = plain y = x W^T.
  const LinearFusion* fusion = nullptr;
};

// What prepare() is given besides the weight and its parameters: the device, the most activation
// rows one forward() call may carry (workspaces that grow with M are sized for it here, never in
// forward), and where to say what a person should know about the preparation (a slower path taken,
// and why). Backends print nothing and keep no process-wide settings: all of it comes from here.
struct PrepareContext {
  DeviceInfo device;
  int64_t max_rows = 2048;
  std::function<void(const std::string&)> log;  // may be empty
  PrepareContext() = default;
  // From a device alone (tests, benchmarks): the default row count, no log.
  PrepareContext(DeviceInfo d, int64_t rows = 2048, std::function<void(const std::string&)> l = {})
      : device(std::move(d)), max_rows(rows), log(std::move(l)) {}
  void say(const std::string& message) const {
    if (log) log(message);
  }
};

// A weight packed for one backend; the hot path.
class PreparedLinear {
 public:
  virtual ~PreparedLinear() = default;
  // y[M][N] = x[M][K] * W^T (+ bias); rows beyond the max_rows prepare() was given run in chunks
  // where a workspace bounds them. x and y match the layer (QuantLinear checks them on the first run of each M range, against the layer and the
  // backend's capability); forward() trusts them. No allocation, no repacking, no logging, no throw
  // after a first successful run.
  virtual void forward(const ActTensor& x, const ActTensor& y, const ExecContext& ctx) = 0;
  // Whether forward() at M rows of `dtype` honours ExecContext::fusion = `f`. Default: no fusion.
  virtual bool fuses(const LinearFusion& /*f*/, int64_t /*m*/, DType /*dtype*/) const { return false; }
  // Bytes of packed weight this object holds (host for CPU, device for CUDA).
  virtual int64_t weight_bytes() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const std::string& name() const = 0;           // "cpu_ref", "cuda_marlin", ...
  virtual const std::string& summary() const = 0;        // one line: what it is
  virtual const BackendCapability& capability() const = 0;
  // False for a backend declared in this binary but compiled out (e.g. CUDA backends in a CPU build).
  virtual bool built() const { return true; }
  // Bump when a kernel change makes old tuning results meaningless.
  virtual int kernel_version() const { return 1; }

  // ok, or why not. The default checks capability(); backends add shape/parameter rules.
  virtual Verdict check(const LayerSpec& layer, const DeviceInfo& device) const;
  // Validates a parameter set (names and values); Verdict names the bad parameter.
  virtual Verdict validate_params(const LayerSpec& layer, const KernelParams& params) const;
  // The heuristic parameters for a layer at M rows.
  virtual KernelParams default_params(const LayerSpec& layer, int64_t m, const DeviceInfo& device) const;
  // Candidates worth timing for (layer, m). Empty = nothing to tune.
  virtual std::vector<KernelParams> tuning_space(const LayerSpec& layer, int64_t m,
                                                 const DeviceInfo& device) const;
  // The part of `params` that determines prepare()'s packed layout. Two M ranges whose packing
  // params are equal share one PreparedLinear when reads_call_params() is true. Default: all.
  virtual KernelParams packing_params(const KernelParams& params) const { return params; }
  // True when forward() honours ExecContext::call_params (then plans may split a layer's M range
  // where default_params changes with M, without preparing the weight twice).
  virtual bool reads_call_params() const { return false; }
  // Repack once at load. Throws qrt::Error (e.g. ErrorKind::OutOfMemory) when it cannot.
  virtual std::unique_ptr<PreparedLinear> prepare(const QuantizedWeight& weight,
                                                  const KernelParams& params,
                                                  const PrepareContext& context) const = 0;

 protected:
  Verdict check_capability(const LayerSpec& layer, const DeviceInfo& device) const;
};

}  // namespace qrt
