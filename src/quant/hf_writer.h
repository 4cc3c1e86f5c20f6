// Writes a Hugging Face model folder atomically: everything goes into a temporary sibling folder
// (OUT.partial-<pid>) that is renamed onto OUT only when complete, so an interrupted command never
// leaves a half-written model under the real name. Tensors are sharded at `shard_bytes`
// (model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json).
//
// qrt never deletes a folder it did not write. Every folder it writes holds a marker file
// (kOutputMarker); with overwrite (--force) an existing OUT is replaced only when it is empty or
// holds that marker and nothing but the files qrt writes. OUT may never be the input, a folder
// holding the input, the current folder or one above it.
#pragma once

#include <cstdint>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "qrt/dtype.h"
#include "qrt/safetensors.h"

namespace qrt::quant {

// The file that marks a folder as written by qrt (and so replaceable by a later --force).
inline constexpr const char* kOutputMarker = ".qrt-output";

// Checks, before any work, that `out` may be written (see above); `input` is the model being read
// ("" when none). Throws InvalidInput naming the path and the reason. The writer's constructor
// runs it again; commands call it first so that a bad OUT fails before minutes of work.
void check_output_folder(const std::string& out, bool overwrite, const std::string& input);

class HfFolderWriter {
 public:
  // check_output_folder(out, overwrite, input), then makes the temporary folder (Io on failure).
  HfFolderWriter(std::string out, bool overwrite, const std::string& input = "",
                 uint64_t shard_bytes = uint64_t{4} << 30);
  ~HfFolderWriter();   // removes the temporary folder if finish() was not reached
  HfFolderWriter(const HfFolderWriter&) = delete;
  HfFolderWriter& operator=(const HfFolderWriter&) = delete;

  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  // float32 values stored as dtype (F32, F16, BF16).
  void add_float(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<float>& values);
  void add_text_file(const std::string& file_name, const std::string& text);
  void copy_file(const std::string& source_path);   // into the folder under its own name
  // Writes the last shard and the index, then renames the folder onto OUT (an OUT being replaced
  // is moved aside first and removed only once the new one is in place).
  void finish();
  const std::string& temp_path() const { return tmp_; }
  uint64_t tensor_bytes() const { return total_bytes_; }

 private:
  void flush_shard();

  std::string out_, tmp_;
  bool overwrite_;
  uint64_t shard_bytes_;
  std::unique_ptr<SafetensorsWriter> current_;
  uint64_t current_bytes_ = 0;
  std::vector<std::pair<std::string, std::vector<std::string>>> shards_;   // temp file -> tensor names
  std::vector<std::string> current_names_;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

// Converts float32 values to the bytes of `dtype` (F32, F16, BF16).
std::vector<uint8_t> float_bytes(const std::vector<float>& values, DType dtype);
// "f16" -> F16, "bf16" -> BF16, "f32" -> F32; throws InvalidInput naming `flag` otherwise.
DType parse_float_dtype(const std::string& text, const std::string& flag);
const char* torch_dtype_name(DType d);   // "float16", "bfloat16", "float32"

}  // namespace qrt::quant
