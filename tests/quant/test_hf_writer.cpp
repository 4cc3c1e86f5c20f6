// HfFolderWriter: the folder appears only when complete, shards get an index that the reader
// accepts, an existing OUT is refused without --force, and an abandoned write leaves nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

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
    quant::HfFolderWriter w(out.string(), false, "", /*shard_bytes=*/64);
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

// --force must never cost the user a file qrt did not write: OUT = ".", a parent of IN, IN itself,
// or a folder holding someone else's files are refused before anything is touched.
namespace {

std::string write_error(const std::string& out, bool force, const std::string& input) {
  try {
    quant::HfFolderWriter w(out, force, input);
    w.add_text_file("config.json", "{}\n");
    w.finish();
  } catch (const qrt::Error& e) {
    return e.what();
  }
  return "";
}

void write_ok(const fs::path& out, bool force, const std::string& text = "{}\n") {
  quant::HfFolderWriter w(out.string(), force, "");
  w.add_float("x", DType::F32, {1}, {1.0f});
  w.add_text_file("config.json", text);
  w.finish();
}

// Runs the body with the current folder set to `dir` (restored after), so that "." is a test folder.
struct InFolder {
  fs::path old;
  explicit InFolder(const fs::path& dir) : old(fs::current_path()) { fs::current_path(dir); }
  ~InFolder() { fs::current_path(old); }
};

}  // namespace

TEST(HfFolderWriterForce, RefusesCurrentFolderAndItsParents) {
  const fs::path base = fresh("cwd");
  fs::create_directories(base / "work");
  std::ofstream(base / "work" / "notes.txt") << "mine";
  {
    InFolder here(base / "work");
    EXPECT_NE(write_error(".", true, "").find("OUT is the current folder or a folder above it"), std::string::npos);
    EXPECT_NE(write_error("./", true, "").find("current folder"), std::string::npos);
    EXPECT_NE(write_error("..", true, "").find("current folder"), std::string::npos);
    EXPECT_NE(write_error(base.string(), true, "").find("current folder"), std::string::npos);
  }
  EXPECT_TRUE(fs::exists(base / "work" / "notes.txt"));
  fs::remove_all(base);
}

TEST(HfFolderWriterForce, RefusesTheInputAndFoldersHoldingIt) {
  const fs::path base = fresh("input");
  fs::create_directories(base / "models" / "in");
  std::ofstream(base / "models" / "in" / "config.json") << "{}";
  std::ofstream(base / "models" / "sibling.gguf") << "GGUF";
  const std::string in = (base / "models" / "in").string();
  EXPECT_NE(write_error(in, true, in).find("OUT is the input"), std::string::npos);
  EXPECT_NE(write_error((base / "models").string(), true, in).find("OUT holds the input"), std::string::npos);
  EXPECT_NE(write_error(base.string(), true, in).find("holds the input"), std::string::npos);
  // A GGUF file as IN: its folder is refused as OUT as well.
  const std::string gguf = (base / "models" / "sibling.gguf").string();
  EXPECT_NE(write_error((base / "models").string(), true, gguf).find("holds the input"), std::string::npos);
  // Through a symbolic link to the input.
  fs::create_directory_symlink(base / "models" / "in", base / "link");
  EXPECT_NE(write_error(in, true, (base / "link").string()).find("OUT is the input"), std::string::npos);
  EXPECT_TRUE(fs::exists(base / "models" / "in" / "config.json"));
  EXPECT_TRUE(fs::exists(base / "models" / "sibling.gguf"));
  fs::remove_all(base);
}

TEST(HfFolderWriterForce, ReplacesOnlyFoldersQrtWrote) {
  const fs::path out = fresh("own");
  write_ok(out, false, "{\"v\": 1}\n");
  EXPECT_TRUE(fs::exists(out / quant::kOutputMarker));
  write_ok(out, true, "{\"v\": 2}\n");   // our own folder: replaced
  std::ifstream cfg(out / "config.json");
  std::string text((std::istreambuf_iterator<char>(cfg)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "{\"v\": 2}\n");
  // A file the user added to it: the folder is no longer only ours.
  std::ofstream(out / "notes.txt") << "mine";
  const std::string e = write_error(out.string(), true, "");
  EXPECT_NE(e.find("holds 'notes.txt', which qrt did not write there"), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(out / "notes.txt"));
  fs::remove_all(out);
}

TEST(HfFolderWriterForce, RefusesForeignFoldersAndFiles) {
  const fs::path out = fresh("foreign");
  fs::create_directories(out);
  std::ofstream(out / "thesis.tex") << "years of work";
  const std::string e = write_error(out.string(), true, "");
  EXPECT_NE(e.find("not a folder qrt wrote (no .qrt-output file"), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(out / "thesis.tex"));
  fs::remove_all(out);
  // A regular file as OUT.
  std::ofstream(out.string()) << "data";
  EXPECT_NE(write_error(out.string(), true, "").find("is not a folder qrt wrote"), std::string::npos);
  EXPECT_TRUE(fs::is_regular_file(out));
  fs::remove(out);
  // An empty folder holds nothing to lose: --force replaces it.
  fs::create_directories(out);
  write_ok(out, true);
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  fs::remove_all(out);
  EXPECT_NE(write_error("", true, "").find("the output folder (OUT) is empty"), std::string::npos);
}

TEST(HfFolderWriterForce, StalePartialFoldersAreRemovedOnlyWhenOurs) {
  const fs::path out = fresh("partials");
  const fs::path parent = out.parent_path();
  // pid 2^22 + 1 is above Linux's pid_max limit: no such process.
  const fs::path ours = parent / (out.filename().string() + ".partial-4194305");
  const fs::path theirs = parent / (out.filename().string() + ".partial-4194306");
  fs::create_directories(ours);
  std::ofstream(ours / quant::kOutputMarker) << "qrt output folder; the files qrt wrote here:\n";
  fs::create_directories(theirs);
  std::ofstream(theirs / "keep.txt") << "mine";
  write_ok(out, false);
  EXPECT_FALSE(fs::exists(ours));
  EXPECT_TRUE(fs::exists(theirs / "keep.txt"));
  fs::remove_all(theirs);
  fs::remove_all(out);
}
