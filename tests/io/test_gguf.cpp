// GGUF reader/writer: round trip of every value type, the checks of docs/CHECKPOINTS.md (GGUF: checks) / bad inputs of
// §9.6 (each with its message), and the real default model when QRT_DEFAULT_MODEL is set.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "qrt/error.h"
#include "qrt/gguf.h"

using qrt::GgmlType;
using qrt::GgufType;

namespace {

// Hand-rolled GGUF bytes, for inputs the writer refuses to make.
struct Raw {
  std::vector<uint8_t> b;
  template <typename T>
  Raw& put(T v) {
    const size_t at = b.size();
    b.resize(at + sizeof(T));
    std::memcpy(b.data() + at, &v, sizeof(T));
    return *this;
  }
  Raw& str(const std::string& s) {
    put<uint64_t>(s.size());
    for (char c : s) b.push_back(static_cast<uint8_t>(c));
    return *this;
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b = {'G', 'G', 'U', 'F'};
    put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
    return *this;
  }
  Raw& kv_u32(const std::string& key, uint32_t v) { return str(key).put<uint32_t>(4).put<uint32_t>(v); }
  Raw& tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) put<int64_t>(d);
    return put<uint32_t>(type).put<uint64_t>(offset);
  }
  Raw& pad_to(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  Raw& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

void expect_error(const std::vector<uint8_t>& bytes, std::initializer_list<std::string> fragments) {
  try {
    qrt::GgufFile::parse(bytes, "bad.gguf");
    FAIL() << "expected an error containing '" << *fragments.begin() << "'";
  } catch (const qrt::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.kind(), qrt::ErrorKind::InvalidInput) << msg;
    EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

}  // namespace

// A header that lists fewer tensors than the file holds: the data section is larger than the
// tensors use, and that is the error (not the garbage the shifted data would decode to).
TEST(Gguf, TensorCountSmallerThanTheFileIsNamed) {
  Raw r;
  r.header(1, 0).tensor("a", {32}, 0, 0).tensor("b", {32}, 0, 128).pad_to(32).zeros(256);
  expect_error(r.b, {"more than its 1 tensors use: the tensor count of the header or a tensor offset is wrong"});
  Raw ok;
  ok.header(2, 0).tensor("a", {32}, 0, 0).tensor("b", {32}, 0, 128).pad_to(32).zeros(256);
  EXPECT_NO_THROW(qrt::GgufFile::parse(ok.b, "ok.gguf"));
}

TEST(Gguf, WriterRoundTripEveryValueType) {
  qrt::GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u8("u8", 200);
  w.add_i8("i8", -100);
  w.add_u16("u16", 65000);
  w.add_i16("i16", -30000);
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -2000000000);
  w.add_u64("u64", 18000000000000000000ull);
  w.add_i64("i64", -9000000000000000000ll);
  w.add_f32("f32", 0.5f);
  w.add_f64("f64", 1e-300);
  w.add_bool("yes", true);
  w.add_string_array("tokens", {"a", "", "<0x0A>"});
  w.add_f32_array("scores", {1.5f, -2.0f});
  w.add_i32_array("types", {1, 2, 3, -1});
  std::vector<uint8_t> t0(4 * 6), t1(18 * 2);
  for (size_t i = 0; i < t0.size(); ++i) t0[i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < t1.size(); ++i) t1[i] = static_cast<uint8_t>(100 + i);
  w.add_tensor("a", GgmlType::F32, {3, 2}, t0);
  w.add_tensor("b", GgmlType::Q4_0, {32, 2}, t1);
  w.add_tensor("scalar", GgmlType::F16, {}, {0, 0x3c});
  auto f = qrt::GgufFile::from_bytes(w.to_bytes(), "rt.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get_int("u8"), 200);
  EXPECT_EQ(f.get_int("i8"), -100);
  EXPECT_EQ(f.get_int("u16"), 65000);
  EXPECT_EQ(f.get_int("i16"), -30000);
  EXPECT_EQ(f.get_int("u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("i32"), -2000000000);
  EXPECT_THROW(f.get_int("u64"), qrt::Error);  // does not fit int64
  EXPECT_EQ(f.find("u64")->u, 18000000000000000000ull);
  EXPECT_EQ(f.get_int("i64"), -9000000000000000000ll);
  EXPECT_EQ(f.get_float("f32"), 0.5);
  EXPECT_EQ(f.get_float("f64"), 1e-300);
  EXPECT_EQ(f.get_float("i32"), -2e9);
  EXPECT_TRUE(f.get_bool("yes"));
  EXPECT_EQ(f.get_string_array("tokens"), (std::vector<std::string>{"a", "", "<0x0A>"}));
  EXPECT_EQ(f.get_float_array("scores"), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(f.get_int_array("types"), (std::vector<int64_t>{1, 2, 3, -1}));
  EXPECT_FALSE(f.find_string("missing").has_value());
  EXPECT_FALSE(f.find_int("missing").has_value());
  // Type mismatches name the file and key.
  try {
    f.get_float_array("types");
    FAIL();
  } catch (const qrt::Error& e) {
    EXPECT_STREQ(e.what(), "rt.gguf: metadata key 'types': expected an ARRAY of FLOAT32, got ARRAY of INT32");
  }
  EXPECT_THROW(f.get_string("u8"), qrt::Error);
  EXPECT_THROW(f.get_int("general.architecture"), qrt::Error);
  EXPECT_THROW(f.get_string("missing"), qrt::Error);
  EXPECT_THROW(f.get_string_array("scores"), qrt::Error);
  EXPECT_EQ(f.find("tokens")->to_display(), "[STRING x 3] 'a', '', '<0x0A>'");
  EXPECT_EQ(f.find("general.architecture")->to_display(), "'llama'");

  ASSERT_EQ(f.tensors().size(), 3u);
  const auto& a = f.tensor("a");
  EXPECT_EQ(a.ne, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.torch_shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  auto da = f.tensor_data(a);
  EXPECT_TRUE(std::equal(da.begin(), da.end(), t0.begin(), t0.end()));
  const auto& b = f.tensor("b");
  EXPECT_EQ(b.offset, 32u);
  EXPECT_EQ(b.nbytes, 36u);
  auto db = f.tensor_data(b);
  EXPECT_TRUE(std::equal(db.begin(), db.end(), t1.begin(), t1.end()));
  EXPECT_EQ(f.tensor("scalar").numel(), 1);
  EXPECT_EQ(f.tensor("scalar").offset, 96u);
  EXPECT_THROW(f.tensor("zzz"), qrt::Error);
  EXPECT_EQ(qrt::ggml_type_name(GgmlType::Q6_K), "Q6_K");
  EXPECT_EQ(qrt::ggml_type_name(static_cast<GgmlType>(4)), "type4");
}

TEST(Gguf, CustomAlignmentAndVersion2) {
  qrt::GgufWriter w(64);
  w.add_u32("general.alignment", 64);
  w.add_tensor("x", GgmlType::F16, {5}, std::vector<uint8_t>(10));
  w.add_tensor("y", GgmlType::F32, {1}, std::vector<uint8_t>(4));
  auto bytes = w.to_bytes();
  auto f = qrt::GgufFile::parse(bytes, "a.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.tensor("y").offset, 64u);
  bytes[4] = 2;  // version 2 has the same layout
  EXPECT_EQ(qrt::GgufFile::parse(bytes, "a.gguf").version(), 2u);
}

TEST(Gguf, RejectsBadHeaders) {
  expect_error({'G', 'G'}, {"not a GGUF file"});
  expect_error({'G', 'G', 'U', 'X', 3, 0, 0, 0}, {"bad magic"});
  expect_error(Raw().header(0, 0, 1).b, {"version 1 is no longer supported"});
  expect_error(Raw().header(0, 0, 0).b, {"unsupported GGUF version 0"});
  expect_error(Raw().header(0, 0, 4).b, {"unsupported GGUF version 4"});
  expect_error(Raw().header(0, 0, 0x03000000).b, {"byte-swapped"});
  expect_error({'G', 'G', 'U', 'F', 3, 0, 0, 0, 1}, {"truncated file", "tensor count"});
  // §9.6 #1: huge counts are refused before any allocation.
  expect_error(Raw().header(0, uint64_t{1} << 63).b, {"cannot fit"});
  expect_error(Raw().header(~uint64_t{0}, 1).b, {"cannot fit"});
}

TEST(Gguf, RejectsBadMetadata) {
  // #2 string lengths: over 1 GiB, and beyond the file
  expect_error(Raw().header(0, 1).put<uint64_t>(~uint64_t{0}).zeros(16).b, {"metadata entry 0", "1 GiB limit"});
  expect_error(Raw().header(0, 1).put<uint64_t>(1000).zeros(16).b, {"runs past the end of the file"});
  expect_error(Raw().header(0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1 << 20).zeros(8).b,
               {"metadata key 'k'", "string length 1048576 runs past"});
  // #3 arrays: huge count, count x size beyond the file, nested, unknown element type
  expect_error(Raw().header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>(uint64_t{1} << 40).b,
               {"metadata key 'arr'", "array count"});
  expect_error(Raw().header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(12).put<uint64_t>(100).zeros(8).b,
               {"runs past the end"});
  expect_error(Raw().header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(1u << 29).zeros(8).b,
               {"runs past the end"});
  expect_error(Raw().header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(1).zeros(16).b,
               {"nested arrays"});
  expect_error(Raw().header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(13).put<uint64_t>(1).zeros(16).b,
               {"unknown array element type 13"});
  // #8 value type, bools, empty and duplicate keys
  expect_error(Raw().header(0, 1).str("k").put<uint32_t>(99).zeros(8).b, {"metadata key 'k'", "unknown value type 99"});
  expect_error(Raw().header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2).b, {"bool value 2"});
  expect_error(
      Raw().header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(7).put<uint64_t>(2).put<uint8_t>(1).put<uint8_t>(5).b,
      {"bool array element 1"});
  expect_error(Raw().header(0, 1).str("").put<uint32_t>(0).put<uint8_t>(1).zeros(8).b, {"empty key"});
  expect_error(Raw().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).b, {"metadata key 'k'", "duplicate key"});
  // #9 alignment: zero, not a power of two, wrong type, huge
  expect_error(Raw().header(0, 1).kv_u32("general.alignment", 0).b, {"general.alignment", "not a power of two"});
  expect_error(Raw().header(0, 1).kv_u32("general.alignment", 48).b, {"not a power of two"});
  expect_error(Raw().header(0, 1).kv_u32("general.alignment", 1u << 31).b, {"not a power of two"});
  expect_error(Raw().header(0, 1).str("general.alignment").put<uint32_t>(5).put<int32_t>(32).b,
               {"must be UINT32, got INT32"});
  // truncated inside a value
  expect_error(Raw().header(0, 1).str("k").put<uint32_t>(10).put<uint32_t>(1).b, {"truncated file"});
}

TEST(Gguf, RejectsBadTensorInfos) {
  auto one = [](std::vector<int64_t> ne, uint32_t type, uint64_t offset, size_t data) {
    Raw r;
    r.header(1, 0).tensor("w", ne, type, offset).pad_to(32).zeros(data);
    return r.b;
  };
  EXPECT_NO_THROW(qrt::GgufFile::parse(one({32, 2}, 2, 0, 36), "ok.gguf"));
  // #4 n_dims > 4
  expect_error(one({1, 1, 1, 1, 1}, 0, 0, 4), {"tensor 'w'", "n_dims 5 exceeds 4"});
  // #5 unknown / removed / out of range type
  expect_error(one({4}, 4, 0, 64), {"tensor 'w'", "unknown or removed ggml type id 4"});
  expect_error(one({4}, 1000, 0, 64), {"ggml type id 1000"});
  expect_error(one({4}, 0xFFFFFFFFu, 0, 64), {"ggml type id 4294967295"});
  // ne[0] not a multiple of the block size
  expect_error(one({31, 2}, 2, 0, 64), {"ne[0] = 31 is not a multiple of the Q4_0 block size 32"});
  // #6 overflowing dims, negative dims
  expect_error(one({int64_t{1} << 42, (int64_t{1} << 42) + 1}, 0, 0, 64), {"tensor 'w'", "overflows"});
  expect_error(one({int64_t{1} << 62, 1}, 0, 0, 64), {"byte size overflows"});
  expect_error(one({-1}, 0, 0, 64), {"is negative"});
  // a zero dimension does not excuse the others: their product (2^33 * 2^31 = 2^64) must fit int64
  // (found by fuzz_gguf: numel() overflowed on [2^33+309, 1644167168, 0])
  expect_error(one({int64_t{1} << 33, int64_t{1} << 31, 0}, 0, 0, 0), {"tensor 'w'", "overflows"});
  expect_error(one({int64_t{1} << 32, int64_t{1} << 31, 0}, 0, 0, 0), {"tensor 'w'", "overflows"});
  // #10 zero-sized dimension is fine (no division by zero)
  EXPECT_NO_THROW(qrt::GgufFile::parse(one({0, 5}, 0, 0, 0), "zero.gguf"));
  // #11 offsets: misaligned, not packed, past the end
  expect_error(one({4}, 0, 8, 64), {"not a multiple of the alignment 32"});
  expect_error(one({4}, 0, 32, 64), {"does not follow the previous tensor"});
  expect_error(one({64}, 0, 0, 100), {"tensor 'w'", "out of range"});
  // #12 duplicate tensor names, name too long
  Raw dup;
  dup.header(2, 0).tensor("w", {1}, 0, 0).tensor("w", {1}, 0, 32).pad_to(32).zeros(36);
  expect_error(dup.b, {"tensor 'w'", "duplicate tensor name"});
  Raw overlap;
  overlap.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad_to(32).zeros(128);
  expect_error(overlap.b, {"tensor 'b'", "expected 64"});
  Raw longname;
  longname.header(1, 0).tensor(std::string(64, 'x'), {1}, 0, 0).pad_to(32).zeros(4);
  expect_error(longname.b, {"the limit is 63"});
  // data section past the end of a truncated file
  Raw trunc;
  trunc.header(1, 0).tensor("w", {1}, 0, 0);
  expect_error(trunc.b, {"truncated file", "data section"});
}

TEST(Gguf, DefaultModel) {
  const char* path = std::getenv("QRT_DEFAULT_MODEL");
  if (!path || !std::filesystem::exists(path))
    GTEST_SKIP() << "QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh and export its path)";
  auto f = qrt::GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 9);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  // token embedding + output norm + 9 tensors per layer x 30 layers (output shares the embedding)
  EXPECT_EQ(f.tensors().size(), 272u);
  const auto& emb = f.tensor("token_embd.weight");
  EXPECT_EQ(emb.ne, (std::vector<int64_t>{576, 49152}));
  const auto& q = f.tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q.ne, (std::vector<int64_t>{576, 576}));
  EXPECT_EQ(q.type, GgmlType::Q4_1);
}
