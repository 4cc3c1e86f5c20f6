// safetensors: a validating reader (mmap), sharded folders, and a writer.
//
// Reader: every check of docs/CHECKPOINTS.md (safetensors) is applied before a byte of tensor data is trusted
// (header size, JSON schema, unknown dtype, duplicate names, contiguous non-overlapping offsets,
// overflow-checked sizes, the buffer fully indexed). Errors are qrt::Error(InvalidInput) naming the
// file and, where there is one, the tensor.
//
// Writer: tensors are written back-to-back after a header padded to 8 bytes, to `path + ".partial"`,
// then renamed onto `path`, so an interrupted write never leaves a half-written file under the real name.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qrt/dtype.h"

namespace qrt {

namespace io {
class MappedFile;  // read-only bytes: an mmapped file or an owned buffer (src/io/mapped_file.h)
}

// One tensor entry of a safetensors header.
struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::Unknown;
  std::vector<int64_t> shape;   // logical shape (sub-byte dtypes: element count, not storage bytes)
  uint64_t begin = 0;           // data_offsets[0], relative to the data section
  uint64_t end = 0;             // data_offsets[1], one past the end
  uint64_t nbytes() const { return end - begin; }
  int64_t numel() const;        // product of shape (1 for a scalar); validated not to overflow
};

// A tensor's dtype, shape and raw little-endian bytes. The bytes point into the mapped file; they stay
// valid while the SafetensorsFile / TensorStore that produced the view is alive. They may be unaligned.
struct TensorView {
  std::string name;
  DType dtype = DType::Unknown;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
  std::string file;             // the file the tensor came from (for messages)
  int64_t numel() const;
};

// One validated safetensors file.
class SafetensorsFile {
 public:
  // mmaps and validates `path`. Throws qrt::Error (Io when the file cannot be opened, InvalidInput
  // for every format violation).
  static SafetensorsFile open(const std::string& path);
  // Parses bytes that the caller keeps alive for the life of the returned object (used by fuzzers
  // and tests). `name` stands for the file name in messages.
  static SafetensorsFile parse(std::span<const uint8_t> bytes, const std::string& name = "<memory>");
  // Same, taking ownership of the buffer.
  static SafetensorsFile from_bytes(std::vector<uint8_t> bytes, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  // Tensors in file order (ascending offsets).
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  // The __metadata__ string map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensorInfo* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // Throws InvalidInput "<file>: no tensor named '<name>'" when absent.
  TensorView tensor(std::string_view name) const;
  TensorView view(const SafetensorsTensorInfo& info) const;
  uint64_t header_size() const { return header_size_; }   // N (JSON bytes)
  uint64_t file_size() const;

 private:
  std::string path_;
  std::shared_ptr<const io::MappedFile> storage_;
  std::span<const uint8_t> bytes_;
  uint64_t header_size_ = 0;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// name -> tensor over a whole checkpoint: a single .safetensors file, a folder with
// model.safetensors.index.json (docs/CHECKPOINTS.md, safetensors shards: shard names must be plain file names, every mapped
// tensor must be in its shard, no tensor in two shards), or a folder with *.safetensors files and no
// index (all of them are loaded; a name in two files is an error).
class TensorStore {
 public:
  static TensorStore open(const std::string& path);

  bool contains(std::string_view name) const;
  // Throws InvalidInput naming the checkpoint and the tensor when absent.
  TensorView get(std::string_view name) const;
  const SafetensorsTensorInfo* info(std::string_view name) const;   // nullptr when absent
  std::vector<std::string> names() const;                             // sorted
  size_t size() const { return where_.size(); }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::string& path() const { return path_; }
  uint64_t total_tensor_bytes() const;
  // Metadata of the first shard (usually {"format": "pt"}) plus the index's "metadata" object's
  // string/number values (stringified) when there is an index.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t, std::less<>> where_;   // tensor name -> index into files_
  std::map<std::string, std::string> metadata_;
};

// Converts a tensor of a float dtype (F32, F16, BF16, F64, F8_E4M3, F8_E5M2, F8_E8M0) to float32,
// row-major, and also the integer dtypes (value-converted) for convenience. F4/F6 throw Unsupported.
std::vector<float> tensor_to_float(const TensorView& t);

// ---- writer ----

class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::string path) : path_(std::move(path)) {}

  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Adds a tensor with its raw little-endian bytes (size must equal numel * bits / 8).
  // Throws InvalidInput on a duplicate name, "__metadata__", a size mismatch or an unknown dtype.
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  // Same, without copying: the caller keeps `bytes` alive until write() returns.
  void add_borrowed(const std::string& name, DType dtype, std::vector<int64_t> shape,
                    std::span<const uint8_t> bytes);
  // Converts float32 values to `dtype` (F32, F16, BF16, F8_E4M3, F8_E5M2) and adds them.
  void add_float(const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const float> values);
  void add_i32(const std::string& name, std::vector<int64_t> shape, std::span<const int32_t> values);
  size_t size() const { return entries_.size(); }
  uint64_t total_tensor_bytes() const;

  // Writes header + data to path + ".partial", then renames it to path. Tensors keep the order they
  // were added in. Throws Io on failure (and removes the partial file).
  void write();
  // The same bytes write() would produce (for tests and in-memory use).
  std::vector<uint8_t> to_bytes() const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> owned;
    std::span<const uint8_t> bytes;
  };
  void add_entry(Entry e);
  std::string header_json() const;

  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
  std::map<std::string, size_t, std::less<>> names_;
};

// Writes model.safetensors.index.json in `folder` for the given weight map (tensor -> shard file name)
// with metadata.total_size = total_bytes. Atomic like the writer.
void write_safetensors_index(const std::string& folder, const std::map<std::string, std::string>& weight_map,
                             uint64_t total_bytes);

}  // namespace qrt
