// GGUF (v2 and v3): a validating reader (mmap) and a small writer.
//
// The reader applies every check of docs/CHECKPOINTS.md (GGUF: checks) before it
// trusts a byte: every count bounded by the bytes remaining, checked arithmetic, strings <= 1 GiB,
// no nested arrays, bools 0/1, keys non-empty and unique, general.alignment a UINT32 power of two in
// [1, 2^20] (default 32), tensor names < 64 bytes and unique, n_dims <= 4, known non-removed ggml
// types with ne[0] a multiple of the block size, and tensor data packed exactly in file order at
// aligned offsets inside the file. Errors are qrt::Error(InvalidInput) naming the file and the key or
// tensor.
//
// Dimension order is ggml's: ne[0] is the innermost (contiguous) dimension, so a PyTorch [N, K]
// linear weight has ne = {K, N}. torch_shape() gives the reversed order.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qrt {

namespace io {
class MappedFile;
}

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

// ggml tensor types (ids are on-disk values; removed ids have no enumerator).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};
// "Q4_K", ...; "type<id>" for an id qrt does not know.
std::string ggml_type_name(GgmlType t);
// Elements per block and bytes per block; 0 for an unknown or removed id.
int64_t ggml_block_size(GgmlType t);
int64_t ggml_type_size(GgmlType t);
bool ggml_type_is_quantized(GgmlType t);   // true for block types (not F32/F16/BF16/F64/I*)

// One metadata value. Scalars are held decoded; arrays of numbers keep their raw little-endian
// bytes (a view into the file) and are read through the typed getters below.
struct GgufValue {
  GgufType type = GgufType::UINT8;
  GgufType array_type = GgufType::UINT8;   // element type when type == ARRAY
  uint64_t array_count = 0;
  uint64_t u = 0;                          // UINT8/16/32/64 and BOOL (0/1)
  int64_t i = 0;                           // INT8/16/32/64
  double f = 0;                            // FLOAT32/64
  std::string str;                         // STRING
  std::vector<std::string> strings;        // ARRAY of STRING
  std::span<const uint8_t> raw;            // ARRAY of a numeric/bool type: array_count elements

  bool is_integer() const;                 // any integer scalar type
  bool is_float() const;                   // FLOAT32/FLOAT64
  // Short rendering for `qrt inspect`: scalars in full, strings quoted and cut at `max_chars`,
  // arrays as "[type x count]" plus the first few elements.
  std::string to_display(size_t max_chars = 60) const;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;    // ggml order: ne[0] innermost; 1..4 dims
  uint64_t offset = 0;        // relative to the data section
  uint64_t nbytes = 0;        // validated: numel / block * type_size
  int64_t numel() const;
  std::vector<int64_t> torch_shape() const;   // ne reversed
};

class GgufFile {
 public:
  // mmaps and validates `path`. Throws qrt::Error (Io / InvalidInput).
  static GgufFile open(const std::string& path);
  // Parses bytes the caller keeps alive for the life of the returned object (fuzzers, tests).
  static GgufFile parse(std::span<const uint8_t> bytes, const std::string& name = "<memory>");
  static GgufFile from_bytes(std::vector<uint8_t> bytes, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }   // absolute file offset of the data section
  uint64_t file_size() const { return bytes_.size(); }

  // ---- metadata ----
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Typed getters: the get_* forms throw InvalidInput naming the file and key when the key is
  // missing or has another type; the find_* forms return nullopt when missing and throw on a type
  // mismatch. Integer getters accept every integer type whose value fits int64; float getters accept
  // FLOAT32/FLOAT64 and integers.
  std::string get_string(std::string_view key) const;
  std::optional<std::string> find_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  std::optional<int64_t> find_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;
  // Arrays (key must hold an ARRAY with the given element kind, else InvalidInput):
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;     // FLOAT32 or FLOAT64 elements
  std::vector<int64_t> get_int_array(std::string_view key) const;    // any integer element type
  // general.architecture ("llama", ...); throws when missing.
  std::string architecture() const { return get_string("general.architecture"); }

  // ---- tensors ----
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }   // file order
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // Throws InvalidInput "<file>: no tensor named '<name>'" when absent.
  const GgufTensorInfo& tensor(std::string_view name) const;
  // The tensor's bytes inside the mapping (valid while this object lives; at least 1-byte aligned
  // only, so read multi-byte fields with memcpy).
  std::span<const uint8_t> tensor_data(const GgufTensorInfo& info) const;

 private:
  std::string path_;
  std::shared_ptr<const io::MappedFile> storage_;
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;

  void parse_all();
  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const;
  const GgufValue& require(std::string_view key) const;
};

// A small GGUF v3 writer (tests, fixtures, tools). Tensors are laid out in the order added, each at
// the next multiple of the alignment. Values are typed by the add_* call.
class GgufWriter {
 public:
  explicit GgufWriter(uint32_t alignment = 32) : alignment_(alignment) {}
  void add_u8(const std::string& key, uint8_t v);
  void add_i8(const std::string& key, int8_t v);
  void add_u16(const std::string& key, uint16_t v);
  void add_i16(const std::string& key, int16_t v);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_i64(const std::string& key, int64_t v);
  void add_f32(const std::string& key, float v);
  void add_f64(const std::string& key, double v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Raw bytes of a tensor of ggml type `type` with dims `ne` (ggml order).
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> data);

  std::vector<uint8_t> to_bytes() const;
  // Writes to path + ".partial" then renames. Throws Io on failure.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data;
  };
  void add_raw(const std::string& key, GgufType type, std::vector<uint8_t> value_bytes);
  uint32_t alignment_;
  uint64_t kv_count_ = 0;
  std::vector<uint8_t> kv_bytes_;
  std::vector<Tensor> tensors_;
};

}  // namespace qrt
