// GGUF v2/v3 reader: header, metadata, tensor infos and data section, with every check of
// docs/CHECKPOINTS.md, "GGUF: checks", applied before anything is allocated or trusted.
#include "qrt/gguf.h"

#include <array>
#include <cstring>
#include <sstream>
#include <unordered_set>

#include "io/json_strict.h"
#include "io/mapped_file.h"
#include "qrt/error.h"

namespace qrt {

namespace {

constexpr uint64_t kMaxStringLength = uint64_t{1} << 30;    // GGUF_MAX_STRING_LENGTH
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 30;   // GGUF_MAX_ARRAY_ELEMENTS
constexpr uint64_t kMaxAlignment = uint64_t{1} << 20;
constexpr size_t kMaxNameBytes = 63;                         // GGML_MAX_NAME - 1
constexpr uint32_t kMaxDims = 4;

struct TypeRow {
  uint32_t id;
  const char* name;
  int64_t block;   // elements per block
  int64_t size;    // bytes per block
};
// Block sizes and byte sizes of ggml's types (docs/CHECKPOINTS.md, GGUF: blocks). Removed ids are absent.
constexpr TypeRow kTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},          {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},       {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},    {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},    {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136},  {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},         {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const TypeRow* type_row(uint32_t id) {
  for (const auto& r : kTypes)
    if (r.id == id) return &r;
  return nullptr;
}

// Size in bytes of one scalar of a GGUF value type; 0 for STRING/ARRAY/invalid.
uint64_t scalar_size(uint32_t t) {
  switch (static_cast<GgufType>(t)) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Bounds-checked little-endian cursor over the file; every failure names the file and the place.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> b, const std::string& file) : b_(b), file_(file) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return b_.size() - pos_; }

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw invalid_input(file_ + ": " + (where.empty() ? "" : where + ": ") + what);
  }
  void need(uint64_t n, const std::string& where, const char* what) const {
    if (n > remaining())
      fail(where, std::string("truncated file: ") + what + " needs " + std::to_string(n) + " bytes at offset " +
                      std::to_string(pos_) + ", only " + std::to_string(remaining()) + " remain");
  }
  template <typename T>
  T read(const std::string& where, const char* what) {
    need(sizeof(T), where, what);
    T v = load<T>(b_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }
  std::span<const uint8_t> take(uint64_t n, const std::string& where, const char* what) {
    need(n, where, what);
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string read_string(const std::string& where, const char* what) {
    const uint64_t len = read<uint64_t>(where, what);
    if (len > kMaxStringLength)
      fail(where, std::string(what) + " length " + std::to_string(len) + " exceeds the 1 GiB limit");
    if (len > remaining())
      fail(where, std::string(what) + " length " + std::to_string(len) + " runs past the end of the file (" +
                      std::to_string(remaining()) + " bytes remain)");
    auto s = take(len, where, what);
    return std::string(reinterpret_cast<const char*>(s.data()), s.size());
  }

 private:
  std::span<const uint8_t> b_;
  const std::string& file_;
  uint64_t pos_ = 0;
};

std::string key_where(const std::string& key) { return "metadata key " + io::quote_name(key); }

void read_value(Cursor& c, GgufValue& v, uint32_t type, const std::string& where) {
  if (!valid_value_type(type)) c.fail(where, "unknown value type " + std::to_string(type));
  v.type = static_cast<GgufType>(type);
  switch (v.type) {
    case GgufType::UINT8: v.u = c.read<uint8_t>(where, "value"); break;
    case GgufType::INT8: v.i = c.read<int8_t>(where, "value"); break;
    case GgufType::UINT16: v.u = c.read<uint16_t>(where, "value"); break;
    case GgufType::INT16: v.i = c.read<int16_t>(where, "value"); break;
    case GgufType::UINT32: v.u = c.read<uint32_t>(where, "value"); break;
    case GgufType::INT32: v.i = c.read<int32_t>(where, "value"); break;
    case GgufType::UINT64: v.u = c.read<uint64_t>(where, "value"); break;
    case GgufType::INT64: v.i = c.read<int64_t>(where, "value"); break;
    case GgufType::FLOAT32: v.f = c.read<float>(where, "value"); break;
    case GgufType::FLOAT64: v.f = c.read<double>(where, "value"); break;
    case GgufType::BOOL: {
      const uint8_t b = c.read<uint8_t>(where, "value");
      if (b > 1) c.fail(where, "bool value " + std::to_string(b) + " is neither 0 nor 1");
      v.u = b;
      break;
    }
    case GgufType::STRING: v.str = c.read_string(where, "string"); break;
    case GgufType::ARRAY: {
      const uint32_t et = c.read<uint32_t>(where, "array element type");
      if (et == static_cast<uint32_t>(GgufType::ARRAY)) c.fail(where, "nested arrays are not supported");
      if (!valid_value_type(et)) c.fail(where, "unknown array element type " + std::to_string(et));
      v.array_type = static_cast<GgufType>(et);
      const uint64_t n = c.read<uint64_t>(where, "array count");
      if (n > kMaxArrayElements)
        c.fail(where, "array count " + std::to_string(n) + " exceeds the limit of 2^30 elements");
      const uint64_t esize = v.array_type == GgufType::STRING ? 8 : scalar_size(et);
      uint64_t total = 0;
      if (!io::checked_mul(n, esize, &total) || total > c.remaining())
        c.fail(where, "array of " + std::to_string(n) + " " + gguf_type_name(v.array_type) +
                          " runs past the end of the file (" + std::to_string(c.remaining()) + " bytes remain)");
      v.array_count = n;
      if (v.array_type == GgufType::STRING) {
        v.strings.reserve(n);
        for (uint64_t i = 0; i < n; ++i) v.strings.push_back(c.read_string(where, "array string"));
      } else {
        v.raw = c.take(total, where, "array data");
        if (v.array_type == GgufType::BOOL)
          for (uint64_t i = 0; i < n; ++i)
            if (v.raw[i] > 1) c.fail(where, "bool array element " + std::to_string(i) + " is neither 0 nor 1");
      }
      break;
    }
  }
}

uint64_t align_up(uint64_t x, uint64_t a, bool* ok) {
  uint64_t r = 0;
  if (!io::checked_add(x, a - 1, &r)) {
    *ok = false;
    return 0;
  }
  return r / a * a;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"UINT8", "INT8",  "UINT16", "INT16",  "UINT32", "INT32", "FLOAT32",
                                "BOOL",  "STRING", "ARRAY", "UINT64", "INT64",  "FLOAT64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "INVALID";
}

std::string ggml_type_name(GgmlType t) {
  const auto* r = type_row(static_cast<uint32_t>(t));
  return r ? r->name : "type" + std::to_string(static_cast<uint32_t>(t));
}
int64_t ggml_block_size(GgmlType t) {
  const auto* r = type_row(static_cast<uint32_t>(t));
  return r ? r->block : 0;
}
int64_t ggml_type_size(GgmlType t) {
  const auto* r = type_row(static_cast<uint32_t>(t));
  return r ? r->size : 0;
}
bool ggml_type_is_quantized(GgmlType t) { return ggml_block_size(t) > 1; }

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64: return true;
    default: return false;
  }
}
bool GgufValue::is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }

namespace {
bool is_signed_int(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}
std::string scalar_text(GgufType t, uint64_t u, int64_t i, double f) {
  if (t == GgufType::BOOL) return u ? "true" : "false";
  if (t == GgufType::FLOAT32 || t == GgufType::FLOAT64) {
    std::ostringstream os;
    os << f;
    return os.str();
  }
  return is_signed_int(t) ? std::to_string(i) : std::to_string(u);
}
// Element i of a numeric array, decoded.
void array_element(const GgufValue& v, uint64_t idx, uint64_t* u, int64_t* i, double* f) {
  const uint8_t* p = v.raw.data() + idx * scalar_size(static_cast<uint32_t>(v.array_type));
  *u = 0, *i = 0, *f = 0;
  switch (v.array_type) {
    case GgufType::UINT8: case GgufType::BOOL: *u = *p; break;
    case GgufType::INT8: *i = static_cast<int8_t>(*p); break;
    case GgufType::UINT16: *u = load<uint16_t>(p); break;
    case GgufType::INT16: *i = load<int16_t>(p); break;
    case GgufType::UINT32: *u = load<uint32_t>(p); break;
    case GgufType::INT32: *i = load<int32_t>(p); break;
    case GgufType::UINT64: *u = load<uint64_t>(p); break;
    case GgufType::INT64: *i = load<int64_t>(p); break;
    case GgufType::FLOAT32: *f = load<float>(p); break;
    case GgufType::FLOAT64: *f = load<double>(p); break;
    default: break;
  }
}
}  // namespace

std::string GgufValue::to_display(size_t max_chars) const {
  if (type == GgufType::STRING) return io::quote_name(str, max_chars);
  if (type != GgufType::ARRAY) return scalar_text(type, u, i, f);
  std::string r = "[";
  r.append(gguf_type_name(array_type)).append(" x ").append(std::to_string(array_count)).append("]");
  const uint64_t show = std::min<uint64_t>(array_count, 4);
  if (show == 0) return r;
  r += " ";
  for (uint64_t k = 0; k < show; ++k) {
    if (k) r += ", ";
    if (array_type == GgufType::STRING) {
      r += io::quote_name(strings[k], 24);
    } else {
      uint64_t uu;
      int64_t ii;
      double ff;
      array_element(*this, k, &uu, &ii, &ff);
      r += scalar_text(array_type, uu, ii, ff);
    }
  }
  if (array_count > show) r += ", ...";
  return r;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::torch_shape() const { return {ne.rbegin(), ne.rend()}; }

// ---- parsing ----

GgufFile GgufFile::open(const std::string& path) {
  auto storage = io::MappedFile::open(path);
  GgufFile f;
  f.path_ = path;
  f.bytes_ = storage->bytes();
  f.storage_ = std::move(storage);
  f.parse_all();
  return f;
}

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  GgufFile f;
  f.path_ = name;
  f.bytes_ = bytes;
  f.parse_all();
  return f;
}

GgufFile GgufFile::from_bytes(std::vector<uint8_t> bytes, const std::string& name) {
  auto storage = io::MappedFile::own(std::move(bytes));
  GgufFile f;
  f.path_ = name;
  f.bytes_ = storage->bytes();
  f.storage_ = std::move(storage);
  f.parse_all();
  return f;
}

void GgufFile::parse_all() {
  Cursor c(bytes_, path_);
  // 1. magic
  if (bytes_.size() < 4) c.fail("", "not a GGUF file: only " + std::to_string(bytes_.size()) + " bytes");
  if (std::memcmp(bytes_.data(), "GGUF", 4) != 0) c.fail("", "not a GGUF file: bad magic (expected \"GGUF\")");
  c.take(4, "", "magic");
  // 2. version
  version_ = c.read<uint32_t>("header", "version");
  if (version_ != 0 && (version_ & 0xFFFF) == 0)
    c.fail("header", "version field " + std::to_string(version_) +
                         " looks byte-swapped: big-endian GGUF is not supported");
  if (version_ == 1) c.fail("header", "GGUF version 1 is no longer supported");
  if (version_ != 2 && version_ != 3) c.fail("header", "unsupported GGUF version " + std::to_string(version_));
  // 3. counts, bounded by the bytes that could hold them before anything is reserved.
  const uint64_t n_tensors = c.read<uint64_t>("header", "tensor count");
  const uint64_t n_kv = c.read<uint64_t>("header", "metadata count");
  constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;        // key length, 1-byte key, type, 1-byte value
  constexpr uint64_t kMinTensorBytes = 8 + 4 + 4 + 8;    // name length, n_dims, type, offset
  uint64_t need = 0, need2 = 0, total = 0;
  if (!io::checked_mul(n_kv, kMinKvBytes, &need) || !io::checked_mul(n_tensors, kMinTensorBytes, &need2) ||
      !io::checked_add(need, need2, &total) || total > c.remaining())
    c.fail("header", "metadata count " + std::to_string(n_kv) + " and tensor count " + std::to_string(n_tensors) +
                         " cannot fit in the " + std::to_string(c.remaining()) + " bytes that remain");

  // 4-10. metadata
  kv_.reserve(n_kv);
  std::unordered_set<std::string> keys;
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string where_idx = "metadata entry " + std::to_string(k);
    std::string key = c.read_string(where_idx, "key");
    if (key.empty()) c.fail(where_idx, "empty key");
    const std::string where = key_where(key);
    if (!keys.insert(key).second) c.fail(where, "duplicate key");
    const uint32_t type = c.read<uint32_t>(where, "value type");
    GgufValue v;
    read_value(c, v, type, where);
    kv_.emplace_back(std::move(key), std::move(v));
  }
  alignment_ = 32;
  if (const GgufValue* a = find("general.alignment")) {
    const std::string where = key_where("general.alignment");
    if (a->type != GgufType::UINT32)
      c.fail(where, std::string("must be UINT32, got ") + gguf_type_name(a->type));
    if (a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > kMaxAlignment)
      c.fail(where, "alignment " + std::to_string(a->u) + " is not a power of two in [1, 2^20]");
    alignment_ = a->u;
  }

  // 11-14. tensor infos
  tensors_.reserve(n_tensors);
  std::unordered_set<std::string> names;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    const std::string where_idx = "tensor " + std::to_string(t);
    GgufTensorInfo info;
    info.name = c.read_string(where_idx, "tensor name");
    const std::string where = "tensor " + io::quote_name(info.name);
    if (info.name.size() > kMaxNameBytes)
      c.fail(where, "name is " + std::to_string(info.name.size()) + " bytes, the limit is 63");
    if (!names.insert(info.name).second) c.fail(where, "duplicate tensor name");
    const uint32_t n_dims = c.read<uint32_t>(where, "n_dims");
    if (n_dims > kMaxDims) c.fail(where, "n_dims " + std::to_string(n_dims) + " exceeds 4");
    // The product of the non-zero dimensions must fit int64 too: with one zero dimension the
    // element count is 0, yet any partial product a caller forms (rows = ne[1] * ne[2]) must not overflow.
    uint64_t nonzero_product = 1;
    bool has_zero = false, overflow = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t v = c.read<int64_t>(where, "dimension");
      if (v < 0) c.fail(where, "dimension ne[" + std::to_string(d) + "] = " + std::to_string(v) + " is negative");
      info.ne.push_back(v);
      if (v == 0) has_zero = true;
      else if (!io::checked_mul(nonzero_product, static_cast<uint64_t>(v), &nonzero_product)) overflow = true;
    }
    const uint64_t numel = has_zero ? 0 : nonzero_product;
    if (overflow || nonzero_product > static_cast<uint64_t>(INT64_MAX)) {
      std::string dims;
      for (auto d : info.ne) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
      c.fail(where, "the element count of dimensions [" + dims + "] overflows");
    }
    const uint32_t type = c.read<uint32_t>(where, "type");
    const TypeRow* row = type_row(type);
    if (!row) c.fail(where, "unknown or removed ggml type id " + std::to_string(type));
    info.type = static_cast<GgmlType>(type);
    const int64_t ne0 = info.ne.empty() ? 1 : info.ne[0];
    if (ne0 % row->block != 0)
      c.fail(where, "ne[0] = " + std::to_string(ne0) + " is not a multiple of the " + row->name + " block size " +
                        std::to_string(row->block));
    if (!io::checked_mul(numel / static_cast<uint64_t>(row->block), static_cast<uint64_t>(row->size), &info.nbytes))
      c.fail(where, "byte size overflows");
    info.offset = c.read<uint64_t>(where, "offset");
    tensors_.push_back(std::move(info));
  }

  // 15. data section: tensors packed in file order at aligned offsets, all inside the file.
  bool ok = true;
  data_offset_ = n_tensors > 0 ? align_up(c.pos(), alignment_, &ok) : c.pos();
  if (!ok) c.fail("", "data section offset overflows");
  if (n_tensors > 0 && data_offset_ > bytes_.size())
    c.fail("", "truncated file: the data section would start at offset " + std::to_string(data_offset_) +
                   " but the file has " + std::to_string(bytes_.size()) + " bytes");
  const uint64_t data_len = bytes_.size() - std::min<uint64_t>(data_offset_, bytes_.size());
  uint64_t expected = 0;
  for (const auto& t : tensors_) {
    const std::string where = "tensor " + io::quote_name(t.name);
    if (t.offset % alignment_ != 0)
      c.fail(where, "data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                        std::to_string(alignment_));
    uint64_t end = 0;
    if (!io::checked_add(t.offset, t.nbytes, &end) || end > data_len)
      c.fail(where, "data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                        ") is out of range: the data section holds " + std::to_string(data_len) + " bytes");
    if (t.offset != expected)
      c.fail(where, "data offset " + std::to_string(t.offset) + " does not follow the previous tensor (expected " +
                        std::to_string(expected) + "): tensors overlap or leave a gap");
    expected = align_up(end, alignment_, &ok);
    if (!ok) c.fail(where, "data size overflows");
  }
  // The tensors must account for the data section (up to the last one's alignment padding). More
  // bytes mean the header lies: a tensor count too small shifts every tensor's data onto the bytes
  // of the infos it left out, which then decode as garbage (NaN scales) far from the real cause.
  if (n_tensors > 0 && data_len > expected)
    c.fail("", "the data section holds " + std::to_string(data_len) + " bytes, " + std::to_string(data_len - expected) +
                   " more than its " + std::to_string(n_tensors) + " tensors use: the tensor count of the header or a "
                   "tensor offset is wrong");
}

// ---- lookups ----

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return &v;
  return nullptr;
}

void GgufFile::fail_key(std::string_view key, const std::string& what) const {
  throw invalid_input(path_ + ": metadata key " + io::quote_name(key) + ": " + what);
}

const GgufValue& GgufFile::require(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) fail_key(key, "missing");
  return *v;
}

namespace {
std::string type_desc(const GgufValue& v) {
  return v.type == GgufType::ARRAY ? std::string("ARRAY of ") + gguf_type_name(v.array_type) : gguf_type_name(v.type);
}
}  // namespace

std::optional<std::string> GgufFile::find_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::STRING) fail_key(key, "expected a STRING, got " + type_desc(*v));
  return v->str;
}
std::string GgufFile::get_string(std::string_view key) const {
  require(key);
  return *find_string(key);
}

std::optional<int64_t> GgufFile::find_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer()) fail_key(key, "expected an integer, got " + type_desc(*v));
  if (is_signed_int(v->type)) return v->i;
  if (v->u > static_cast<uint64_t>(INT64_MAX)) fail_key(key, "value " + std::to_string(v->u) + " is too large");
  return static_cast<int64_t>(v->u);
}
int64_t GgufFile::get_int(std::string_view key) const {
  require(key);
  return *find_int(key);
}

std::optional<double> GgufFile::find_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->is_float()) return v->f;
  if (v->is_integer()) return is_signed_int(v->type) ? static_cast<double>(v->i) : static_cast<double>(v->u);
  fail_key(key, "expected a number, got " + type_desc(*v));
}
double GgufFile::get_float(std::string_view key) const {
  require(key);
  return *find_float(key);
}

std::optional<bool> GgufFile::find_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::BOOL) fail_key(key, "expected a BOOL, got " + type_desc(*v));
  return v->u != 0;
}
bool GgufFile::get_bool(std::string_view key) const {
  require(key);
  return *find_bool(key);
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::ARRAY || v.array_type != GgufType::STRING)
    fail_key(key, "expected an ARRAY of STRING, got " + type_desc(v));
  return v.strings;
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::ARRAY || (v.array_type != GgufType::FLOAT32 && v.array_type != GgufType::FLOAT64))
    fail_key(key, "expected an ARRAY of FLOAT32, got " + type_desc(v));
  std::vector<float> out(v.array_count);
  for (uint64_t k = 0; k < v.array_count; ++k) {
    uint64_t u;
    int64_t i;
    double f;
    array_element(v, k, &u, &i, &f);
    out[k] = static_cast<float>(f);
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& v = require(key);
  const bool int_elems = v.array_type != GgufType::FLOAT32 && v.array_type != GgufType::FLOAT64 &&
                         v.array_type != GgufType::STRING && v.array_type != GgufType::BOOL;
  if (v.type != GgufType::ARRAY || !int_elems) fail_key(key, "expected an ARRAY of integers, got " + type_desc(v));
  std::vector<int64_t> out(v.array_count);
  for (uint64_t k = 0; k < v.array_count; ++k) {
    uint64_t u;
    int64_t i;
    double f;
    array_element(v, k, &u, &i, &f);
    if (is_signed_int(v.array_type)) {
      out[k] = i;
    } else {
      if (u > static_cast<uint64_t>(INT64_MAX)) fail_key(key, "element " + std::to_string(k) + " is too large");
      out[k] = static_cast<int64_t>(u);
    }
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const auto* t = find_tensor(name);
  if (!t) throw invalid_input(path_ + ": no tensor named " + io::quote_name(name));
  return *t;
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& info) const {
  return bytes_.subspan(data_offset_ + info.offset, info.nbytes);
}

}  // namespace qrt
