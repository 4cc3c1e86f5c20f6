// libFuzzer target: the safetensors reader on arbitrary bytes. Anything but a clean qrt::Error
// (a crash, a sanitizer report, another exception type) is a bug. Accepted files are read through
// every accessor, so a header that validates but lies would be caught reading its tensors.
#include <cstddef>
#include <cstdint>
#include <span>

#include "qrt/error.h"
#include "qrt/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = qrt::SafetensorsFile::parse(std::span<const uint8_t>(data, size), "fuzz.safetensors");
    uint64_t total = 0;
    for (const auto& info : file.tensors()) {
      const qrt::TensorView v = file.tensor(info.name);
      total += v.bytes.size();
      if (v.bytes.size() <= (1u << 20)) {
        try {
          const auto values = qrt::tensor_to_float(v);
          if (static_cast<int64_t>(values.size()) != v.numel()) __builtin_trap();
        } catch (const qrt::Error&) {
          // F4 / F6: not convertible, by design
        }
      }
    }
    if (total + 8 + file.header_size() != size) __builtin_trap();  // V9 must hold for accepted files
  } catch (const qrt::Error&) {
  }
  return 0;
}
