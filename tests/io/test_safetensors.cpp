// safetensors reader/writer: round trips, every check of docs/CHECKPOINTS.md (safetensors), sharded folders.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "qrt/error.h"
#include "qrt/safetensors.h"

namespace fs = std::filesystem;
using qrt::DType;

namespace {

// Raw file bytes from a header text and a data section.
std::vector<uint8_t> raw_file(const std::string& header, const std::vector<uint8_t>& data, uint64_t n_override = 0) {
  std::vector<uint8_t> out(8 + header.size() + data.size());
  const uint64_t n = n_override ? n_override : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

// Expects parsing to fail with a message containing every fragment.
void expect_error(const std::vector<uint8_t>& bytes, std::initializer_list<std::string> fragments) {
  try {
    qrt::SafetensorsFile::parse(bytes, "bad.safetensors");
    FAIL() << "expected an error containing " << *fragments.begin();
  } catch (const qrt::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.kind(), qrt::ErrorKind::InvalidInput) << msg;
    EXPECT_EQ(msg.rfind("bad.safetensors: ", 0), 0u) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("qrt_test_io_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

}  // namespace

TEST(Safetensors, WriterRoundTripEveryDtype) {
  qrt::SafetensorsWriter w("unused");
  std::mt19937 rng(7);
  struct Case {
    const char* name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  std::vector<Case> cases = {
      {"bool", DType::BOOL, {3}},    {"u8", DType::U8, {2, 3}},     {"i8", DType::I8, {5}},
      {"u16", DType::U16, {2}},      {"i16", DType::I16, {2, 2}},   {"u32", DType::U32, {1}},
      {"i32", DType::I32, {4, 1}},   {"u64", DType::U64, {2}},      {"i64", DType::I64, {3}},
      {"f16", DType::F16, {2, 3}},   {"bf16", DType::BF16, {7}},    {"f32", DType::F32, {3, 3}},
      {"f64", DType::F64, {2}},      {"e4m3", DType::F8_E4M3, {9}}, {"e5m2", DType::F8_E5M2, {4}},
      {"e8m0", DType::F8_E8M0, {2}}, {"f4", DType::F4, {2, 6}},     {"f6a", DType::F6_E2M3, {4}},
      {"f6b", DType::F6_E3M2, {8}},  {"scalar", DType::F32, {}},    {"empty", DType::F16, {2, 0}},
  };
  std::map<std::string, std::vector<uint8_t>> data;
  for (const auto& c : cases) {
    int64_t n = 1;
    for (auto d : c.shape) n *= d;
    std::vector<uint8_t> b(static_cast<size_t>(n * qrt::dtype_bits(c.dtype) / 8));
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    data[c.name] = b;
    w.add(c.name, c.dtype, c.shape, b);
  }
  w.set_metadata("format", "pt");
  const auto bytes = w.to_bytes();
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "header must be padded to 8 bytes";
  auto f = qrt::SafetensorsFile::parse(bytes, "rt.safetensors");
  ASSERT_EQ(f.tensors().size(), cases.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  for (const auto& c : cases) {
    auto v = f.tensor(c.name);
    EXPECT_EQ(v.dtype, c.dtype) << c.name;
    EXPECT_EQ(v.shape, c.shape) << c.name;
    ASSERT_EQ(v.bytes.size(), data[c.name].size()) << c.name;
    EXPECT_TRUE(std::equal(v.bytes.begin(), v.bytes.end(), data[c.name].begin())) << c.name;
  }
  EXPECT_EQ(f.tensor("scalar").numel(), 1);
  EXPECT_EQ(f.tensor("empty").bytes.size(), 0u);
}

TEST(Safetensors, WriterFileIsAtomicAndFloatConversions) {
  auto dir = temp_dir("writer");
  const std::string path = (dir / "m.safetensors").string();
  std::vector<float> vals = {1.0f, -2.5f, 0.15625f, 65504.0f, -0.0f, 3.0f};
  qrt::SafetensorsWriter w(path);
  w.add_float("a.f32", DType::F32, {2, 3}, vals);
  w.add_float("a.f16", DType::F16, {2, 3}, vals);
  w.add_float("a.bf16", DType::BF16, {6}, vals);
  w.add_float("a.e4m3", DType::F8_E4M3, {6}, std::vector<float>{1.0f, -2.5f, 0.15625f, 448.0f, 0.0f, 3.0f});
  std::vector<int32_t> ints = {-3, 0, 7};
  w.add_i32("i", {3}, ints);
  w.write();
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".partial"));
  auto f = qrt::SafetensorsFile::open(path);
  EXPECT_EQ(qrt::tensor_to_float(f.tensor("a.f32")), vals);
  EXPECT_EQ(qrt::tensor_to_float(f.tensor("a.f16")), vals);  // all exactly representable in fp16
  auto bf = qrt::tensor_to_float(f.tensor("a.bf16"));
  EXPECT_FLOAT_EQ(bf[0], 1.0f);
  EXPECT_FLOAT_EQ(bf[1], -2.5f);
  EXPECT_FLOAT_EQ(bf[3], 65536.0f);  // 65504 rounds to 65536 in bf16
  EXPECT_EQ(qrt::tensor_to_float(f.tensor("a.e4m3")), (std::vector<float>{1.0f, -2.5f, 0.15625f, 448.0f, 0.0f, 3.0f}));
  EXPECT_EQ(qrt::tensor_to_float(f.tensor("i")), (std::vector<float>{-3, 0, 7}));
  fs::remove_all(dir);
}

TEST(Safetensors, WriterFailureLeavesNothingBehind) {
  qrt::SafetensorsWriter w("/nonexistent-folder-qrt/m.safetensors");
  w.add("a", DType::U8, {1}, {1});
  try {
    w.write();
    FAIL();
  } catch (const qrt::Error& e) {
    EXPECT_EQ(e.kind(), qrt::ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find("/nonexistent-folder-qrt/m.safetensors"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists("/nonexistent-folder-qrt/m.safetensors.partial"));
}

TEST(Safetensors, WriterRejectsBadTensors) {
  qrt::SafetensorsWriter w("x.safetensors");
  w.add("a", DType::F32, {2}, std::vector<uint8_t>(8));
  EXPECT_THROW(w.add("a", DType::F32, {2}, std::vector<uint8_t>(8)), qrt::Error);
  EXPECT_THROW(w.add("__metadata__", DType::F32, {2}, std::vector<uint8_t>(8)), qrt::Error);
  EXPECT_THROW(w.add("b", DType::F32, {3}, std::vector<uint8_t>(8)), qrt::Error);
  EXPECT_THROW(w.add("c", DType::F4, {3}, std::vector<uint8_t>(2)), qrt::Error);
  EXPECT_THROW(w.add("d", DType::Unknown, {1}, std::vector<uint8_t>(1)), qrt::Error);
  EXPECT_EQ(w.size(), 1u);
}

TEST(Safetensors, ToFloatSpecialDtypes) {
  std::vector<uint8_t> e8 = {127, 128, 0xFF, 120};
  qrt::TensorView v{"s", DType::F8_E8M0, {4}, e8, "f"};
  auto out = qrt::tensor_to_float(v);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], 1.0f / 128);
  std::vector<uint8_t> f4 = {0x12};
  qrt::TensorView v4{"p", DType::F4, {2}, f4, "f"};
  EXPECT_THROW(qrt::tensor_to_float(v4), qrt::Error);
}

TEST(Safetensors, AcceptsWhitespaceAndZeroSizedTensors) {
  auto ok = raw_file(
      " \t{\"a\":{\"dtype\":\"F16\",\"shape\":[2,0],\"data_offsets\":[0,0]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}\r\n ",
      {1, 2});
  auto f = qrt::SafetensorsFile::parse(ok, "ok");
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensor("b").bytes[1], 2);
  auto empty = raw_file("{}", {});
  EXPECT_EQ(qrt::SafetensorsFile::parse(empty, "e").tensors().size(), 0u);
}

// 80,000 tensors in one header (a real 4.9 MB case once took minutes: the duplicate-key check made
// the JSON parser rescan the whole object after each entry). Linear now; duplicates are still found
// after many nested entries, and inside nested objects.
TEST(Safetensors, LargeHeaderParsesAndDuplicatesAreStillFound) {
  constexpr int kTensors = 80000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i) {
    const std::string off = std::to_string(4 * i) + "," + std::to_string(4 * i + 4);
    header += (i ? ",\"" : "\"") + std::string("model.layers.") + std::to_string(i) +
              ".weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" + off + "]}";
  }
  const auto file = qrt::SafetensorsFile::parse(raw_file(header + "}", std::vector<uint8_t>(4 * kTensors)), "big");
  EXPECT_EQ(file.tensors().size(), static_cast<size_t>(kTensors));
  ASSERT_NE(file.find("model.layers.79999.weight"), nullptr);
  EXPECT_EQ(file.find("model.layers.79999.weight")->begin, 4u * 79999);
  const std::string dup = header + R"(,"model.layers.5.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_error(raw_file(dup, std::vector<uint8_t>(4 * kTensors)), {"duplicate key 'model.layers.5.weight'"});
}

TEST(Safetensors, EveryValidationRule) {
  const std::string t8 = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  // V1 file shorter than 8 bytes
  expect_error({1, 2, 3}, {"shorter than the 8-byte header length"});
  // V2 header over 100 MB
  expect_error(raw_file("{}", {}, 200'000'000), {"exceeds the limit"});
  // V3 header length beyond the file
  expect_error(raw_file("{}", {}, 64), {"runs past the end of the file"});
  // V4 invalid UTF-8 / invalid JSON / schema
  expect_error(raw_file("{\"a\xff\":1}", {}), {"invalid JSON"});
  expect_error(raw_file("{\"a\":", {}), {"invalid JSON"});
  expect_error(raw_file("[1,2]", {}), {"not a JSON object"});
  expect_error(raw_file(R"({"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)),
               {"tensor 'a'", "unknown dtype 'F17'"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)),
               {"tensor 'a'", "non-negative integers"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)),
               {"non-negative integers"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", std::vector<uint8_t>(4)),
               {"two integers"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", std::vector<uint8_t>(4)),
               {"unknown field 'x'"});
  expect_error(raw_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)), {"dtype"});
  expect_error(raw_file(R"({"__metadata__":{"format":1}})", {}), {"__metadata__", "must be a string"});
  expect_error(raw_file(R"({"__metadata__":[1]})", {}), {"__metadata__ must be an object"});
  expect_error(raw_file("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", {}),
               {"nested deeper than 64"});
  EXPECT_NO_THROW(qrt::SafetensorsFile::parse(raw_file(R"({"__metadata__":{"k":"v"}})", {}), "ok"));  // depth 2 is fine
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)),
               {"got a JSON array"});
  // duplicates (README rule, not enforced by the reference)
  expect_error(raw_file("{" + t8 + "," + t8 + "}", std::vector<uint8_t>(16)), {"duplicate key 'a'"});
  expect_error(raw_file(R"({"__metadata__":{},"__metadata__":{}})", {}), {"duplicate key '__metadata__'"});
  expect_error(raw_file(R"({"__metadata__":{"k":"1","k":"2"}})", {}), {"duplicate key 'k'"});
  // V5 offsets: overlap, gap, reversed, out of range
  expect_error(
      raw_file("{" + t8 + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::vector<uint8_t>(12)),
      {"tensor 'b'", "overlap tensor 'a'"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::vector<uint8_t>(8)),
               {"tensor 'a'", "gap"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", std::vector<uint8_t>(8)),
               {"end before they begin"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::vector<uint8_t>(8)),
               {"tensor 'a'", "out of range"});
  expect_error(
      raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}})", std::vector<uint8_t>(8)),
      {"out of range"});
  // V6 overflow of the element count / bit count
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", {}),
               {"tensor 'a'", "overflows"});
  expect_error(raw_file(R"({"a":{"dtype":"F64","shape":[2305843009213693952,2],"data_offsets":[0,0]}})", {}),
               {"overflows"});
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]}})", {}),
               {"too large"});
  // a zero dimension does not excuse the others: 2^32 * 2^31 passes INT64_MAX
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[4294967296,2147483648,0],"data_offsets":[0,0]}})", {}),
               {"tensor 'a'", "overflows"});
  // V7 sub-byte dtype not filling whole bytes
  expect_error(raw_file(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", std::vector<uint8_t>(1)),
               {"whole number of bytes"});
  // V8 byte size vs dtype x shape
  expect_error(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::vector<uint8_t>(8)),
               {"tensor 'a'", "needs 12"});
  // V9 trailing bytes not covered by any tensor
  expect_error(raw_file("{" + t8 + "}", std::vector<uint8_t>(9)), {"trailing or missing"});
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  qrt::SafetensorsWriter w("x");
  w.add("a", DType::U8, {1}, {5});
  auto f = qrt::SafetensorsFile::from_bytes(w.to_bytes(), "x.safetensors");
  try {
    f.tensor("nope");
    FAIL();
  } catch (const qrt::Error& e) {
    EXPECT_STREQ(e.what(), "x.safetensors: no tensor named 'nope'");
  }
  EXPECT_THROW(qrt::SafetensorsFile::open("/nonexistent/file.safetensors"), qrt::Error);
}

TEST(Safetensors, ShardedFolderThroughIndex) {
  auto dir = temp_dir("sharded");
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7};
  {
    qrt::SafetensorsWriter w((dir / "model-00001-of-00002.safetensors").string());
    w.set_metadata("format", "pt");
    w.add_float("a", DType::F32, {2, 2}, a);
    w.add_float("b", DType::F16, {2}, b);
    w.write();
    qrt::SafetensorsWriter w2((dir / "model-00002-of-00002.safetensors").string());
    w2.add_float("c", DType::BF16, {1}, c);
    w2.write();
  }
  qrt::write_safetensors_index(dir.string(),
                               {{"a", "model-00001-of-00002.safetensors"},
                                {"b", "model-00001-of-00002.safetensors"},
                                {"c", "model-00002-of-00002.safetensors"}},
                               16 + 4 + 2);
  auto store = qrt::TensorStore::open(dir.string());
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(store.files().size(), 2u);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(qrt::tensor_to_float(store.get("a")), a);
  EXPECT_EQ(qrt::tensor_to_float(store.get("b")), b);
  EXPECT_EQ(qrt::tensor_to_float(store.get("c")), c);
  EXPECT_EQ(store.total_tensor_bytes(), 22u);
  EXPECT_EQ(store.metadata().at("total_size"), "22");
  EXPECT_EQ(store.metadata().at("format"), "pt");
  EXPECT_THROW(store.get("d"), qrt::Error);

  auto expect_store_error = [&](const std::string& index, const std::string& fragment) {
    std::ofstream(dir / "model.safetensors.index.json") << index;
    try {
      qrt::TensorStore::open(dir.string());
      FAIL() << "expected " << fragment;
    } catch (const qrt::Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_store_error(R"({"weight_map":{"a":"../x.safetensors"}})", "not a plain file name");
  expect_store_error(R"({"weight_map":{"a":"model-00002-of-00002.safetensors"}})", "does not hold it");
  expect_store_error(R"({"weight_map":{"a":"model-00001-of-00002.safetensors"}})", "tensor 'b' is not listed");
  expect_store_error(R"({"metadata":{}})", "weight_map");
  expect_store_error(R"({"weight_map":{"a":"missing.safetensors"}})", "missing.safetensors");

  // Without an index, every *.safetensors file is read; a name in two files is an error.
  fs::remove(dir / "model.safetensors.index.json");
  EXPECT_EQ(qrt::TensorStore::open(dir.string()).size(), 3u);
  fs::copy_file(dir / "model-00002-of-00002.safetensors", dir / "extra.safetensors");
  EXPECT_THROW(qrt::TensorStore::open(dir.string()), qrt::Error);
  fs::remove_all(dir);
}
