// Shared host pieces of cuda_marlin / cuda_gemv (see int4_int8_weight.h).
#include "backends/cuda/common/int4_int8_weight.h"

#include <fmt/format.h>

namespace qrt::cuda {

Int4DeviceWeight::Int4DeviceWeight(const Int4PackedHost& p, const std::string& name) {
  words_ = DeviceBuffer::upload(p.words, name + " (int4 packed codes)");
  scales_ = DeviceBuffer::upload(p.scales, name + " (int4 scales)");
  if (!p.zeros.empty()) zeros_ = DeviceBuffer::upload(p.zeros, name + " (int4 zero points)");
  if (!p.offsets.empty()) offsets_ = DeviceBuffer::upload(p.offsets, name + " (int4 float zero points)");
  if (!p.bias.empty()) bias_ = DeviceBuffer::upload(p.bias, name + " (bias)");
  if (!p.perm.empty()) perm_ = DeviceBuffer::upload(p.perm, name + " (act-order permutation)");
  view_.words = words_.get();
  view_.scales = scales_.as<uint32_t>();
  view_.zeros = zeros_ ? zeros_.as<uint16_t>() : nullptr;
  view_.offsets = offsets_ ? offsets_.as<uint32_t>() : nullptr;
  view_.bias = bias_ ? bias_.as<float>() : nullptr;
  view_.perm = perm_ ? perm_.as<int32_t>() : nullptr;
  view_.n = p.n;
  view_.k = p.k;
  view_.bits = p.bits;
  view_.group_size = p.group_size;
  view_.scale_mul = p.scale_mul;
  view_.offset_mul = p.offset_mul;
}

int64_t Int4DeviceWeight::bytes() const {
  return static_cast<int64_t>(words_.bytes() + scales_.bytes() + zeros_.bytes() + offsets_.bytes() + bias_.bytes() +
                              perm_.bytes());
}

namespace {
uint64_t fnv(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
// Name, shape and format, plus samples of the data: two layers never share a name in one model,
// and the samples keep a reloaded layer of the same name from reusing a stale upload.
std::string weight_key(const QuantizedWeight& w, int device) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto sample = [&](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::value_type;
    const size_t n = v.size(), take = std::min<size_t>(n, 4096);
    if (n) h = fnv(h, v.data(), take * sizeof(T));
    if (n > take) h = fnv(h, v.data() + n - take, take * sizeof(T));
    if (n > 2 * take) h = fnv(h, v.data() + n / 2, take * sizeof(T));
  };
  sample(w.codes);
  sample(w.scales);
  sample(w.zeros);
  sample(w.g_idx);
  sample(w.bias);
  return fmt::format("{}|{}|{}x{}|{}|{}|{}|{}|{:x}", device, w.spec.name, w.N(), w.K(), w.spec.bits, w.spec.group_size,
                     static_cast<int>(w.spec.zero_kind), w.codes.size(), h);
}
}  // namespace

std::shared_ptr<const Int4DeviceWeight> shared_int4_weight(const QuantizedWeight& w, int device) {
  auto sp = DeviceContext::get(device).shared_upload("int4|" + weight_key(w, device), [&] {
    Int4PackedHost p = pack_int4_host(w);
    DeviceGuard guard(device);
    return std::static_pointer_cast<const void>(std::make_shared<const Int4DeviceWeight>(p, w.spec.name));
  });
  return std::static_pointer_cast<const Int4DeviceWeight>(sp);
}

size_t int4_partials_bytes(int sms) {
  return static_cast<size_t>(int4_max_partial_tiles(sms) * int4_max_tile_floats() * 4);
}
Int4Scratch reserve_int4_scratch(DeviceContext& ctx, int64_t k, bool act_order, int64_t max_rows,
                                 bool reorder) {
  const int sms = ctx.props().multiProcessorCount;
  Int4Scratch scratch;
  scratch.ctx = &ctx;
  scratch.perm_rows = std::max<int64_t>(max_rows, 1);
  scratch.reorder = reorder;
  size_t need = int4_partials_bytes(sms);
  const size_t chunk_bytes = static_cast<size_t>(scratch.perm_rows) * static_cast<size_t>(k) * 2;
  if (act_order) need += chunk_bytes;
  if (reorder) need += chunk_bytes;
  ctx.reserve_workspace(need);
  QRT_CUDA_CHECK(qmm_init_kernels());
  scratch.counters = static_cast<int*>(
      ctx.zeroed_buffer("int4 split-K counters", static_cast<size_t>(int4_counter_count(sms)) * 4));
  return scratch;
}

}  // namespace qrt::cuda
