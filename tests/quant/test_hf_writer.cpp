// HfFolderWriter: the folder appears only when complete, shards get an index that the reader
// accepts, an existing OUT is refused without --force, and an abandoned write leaves nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "qrt/error.h"
#include "qrt/safetensors.h"
#include "quant/hf_writer.h"

using namespace qrt;
namespace fs = std::filesystem;

namespace {
fs::path fresh(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("qrt_hfw_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}
}  // namespace

TEST(HfFolderWriter, ShardsWithIndexAndAtomicRename) {
  const fs::path out = fresh("shards");
  {
    quant::HfFolderWriter w(out.string(), false, /*shard_bytes=*/64);
    for (int i = 0; i < 5; ++i)
      w.add_float("t" + std::to_string(i), DType::F32, {4, 4}, std::vector<float>(16, static_cast<float>(i)));
    w.add_text_file("config.json", "{}\n");
    EXPECT_FALSE(fs::exists(out));   // nothing under the real name before finish()
    w.finish();
  }
  EXPECT_TRUE(fs::exists(out / "model-00001-of-00005.safetensors"));
  EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
  TensorStore store = TensorStore::open(out.string());
  EXPECT_EQ(store.size(), 5u);
  EXPECT_EQ(tensor_to_float(store.get("t3")), std::vector<float>(16, 3.0f));
  EXPECT_THROW(quant::HfFolderWriter(out.string(), false), qrt::Error);
  {
    quant::HfFolderWriter w(out.string(), true);
    w.add_float("x", DType::BF16, {2}, {1.0f, -2.0f});
    w.finish();
  }
  TensorStore single = TensorStore::open(out.string());
  EXPECT_EQ(single.size(), 1u);
  EXPECT_EQ(tensor_to_float(single.get("x")), (std::vector<float>{1.0f, -2.0f}));
  fs::remove_all(out);
}

TEST(HfFolderWriter, AbandonedWriteLeavesNothing) {
  const fs::path out = fresh("abandon");
  std::string tmp;
  {
    quant::HfFolderWriter w(out.string(), false);
    w.add_float("a", DType::F16, {1}, {1.0f});
    tmp = w.temp_path();
    EXPECT_TRUE(fs::exists(tmp));
  }
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(out));
}

TEST(HfFolderWriter, DtypeFlags) {
  EXPECT_EQ(quant::parse_float_dtype("bf16", "--dtype"), DType::BF16);
  EXPECT_EQ(quant::parse_float_dtype("f32", "--dtype"), DType::F32);
  try {
    quant::parse_float_dtype("f8", "--dtype");
    FAIL();
  } catch (const qrt::Error& e) {
    EXPECT_STREQ(e.what(), "--dtype f8: expected f16, bf16 or f32");
  }
}
