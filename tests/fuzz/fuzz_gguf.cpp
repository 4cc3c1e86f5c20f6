// libFuzzer target: the GGUF reader and the block codecs on arbitrary bytes. Anything but a clean
// qrt::Error is a bug. Accepted files are read through the metadata getters and every tensor is
// dequantized (when small) and converted to the canonical form where it has one.
#include <cstddef>
#include <cstdint>
#include <span>

#include "qrt/error.h"
#include "qrt/gguf.h"
#include "quant/formats/gguf_blocks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = qrt::GgufFile::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
    for (const auto& [key, value] : file.metadata()) {
      (void)value.to_display();
      try {
        if (value.type == qrt::GgufType::ARRAY) {
          if (value.array_type == qrt::GgufType::STRING)
            (void)file.get_string_array(key);
          else if (value.array_type == qrt::GgufType::FLOAT32 || value.array_type == qrt::GgufType::FLOAT64)
            (void)file.get_float_array(key);
          else
            (void)file.get_int_array(key);
        } else if (value.type == qrt::GgufType::STRING) {
          (void)file.get_string(key);
        } else if (value.is_integer()) {
          (void)file.get_int(key);
        } else {
          (void)file.find_float(key);
        }
      } catch (const qrt::Error&) {
      }
    }
    for (const auto& t : file.tensors()) {
      const auto bytes = file.tensor_data(t);
      if (bytes.size() != t.nbytes) __builtin_trap();
      if (t.numel() > (1 << 20)) continue;
      try {
        if (qrt::quant::gguf_can_dequantize(t.type)) (void)qrt::quant::gguf_dequantize_tensor(file, t);
        if (qrt::quant::gguf_has_canonical_form(t.type) && t.numel() > 0) {
          const auto w = qrt::quant::gguf_to_quantized_weight(file, t);
          (void)qrt::dequantize_reference(w);
        }
      } catch (const qrt::Error&) {
      }
    }
  } catch (const qrt::Error&) {
  }
  return 0;
}
