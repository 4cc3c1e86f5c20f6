// read_file_bounded / check_regular_file: what is not a regular file is refused without reading
// (a FIFO would block, /dev/zero would grow forever), and a size past the cap is refused BEFORE
// anything is read. Each case must return at once: a hang here is the bug.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/bounded_read.h"
#include "qrt/error.h"

namespace qrt {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("qrt_bounded_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

Error error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a qrt::Error";
  return Error(ErrorKind::Internal, "");
}

TEST(BoundedRead, ReadsARegularFile) {
  TempDir d;
  std::ofstream(d.path / "config.json") << "{\"a\": 1}";
  EXPECT_EQ(io::read_file_bounded((d.path / "config.json").string(), 1024, "a JSON config file"), "{\"a\": 1}");
  EXPECT_EQ(io::check_regular_file((d.path / "config.json").string(), 1024, "x"), 8u);
  // A symlink to a regular file is that file.
  fs::create_symlink(d.path / "config.json", d.path / "link.json");
  EXPECT_EQ(io::read_file_bounded((d.path / "link.json").string(), 1024, "x"), "{\"a\": 1}");
}

TEST(BoundedRead, FifoIsRefusedWithoutBlocking) {
  TempDir d;
  const std::string fifo = (d.path / "config.json").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const Error e = error_of([&] { io::read_file_bounded(fifo, 1024, "a JSON config file"); });
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_NE(std::string(e.what()).find("config.json: a FIFO (named pipe), not a regular file; expected a JSON config file"),
            std::string::npos)
      << e.what();
}

TEST(BoundedRead, DevZeroSymlinkIsRefused) {
  TempDir d;
  fs::create_symlink("/dev/zero", d.path / "tokenizer.json");
  const Error e = error_of([&] { io::read_file_bounded((d.path / "tokenizer.json").string(), 1024, "a tokenizer.json"); });
  EXPECT_NE(std::string(e.what()).find("a character device, not a regular file"), std::string::npos) << e.what();
}

TEST(BoundedRead, FolderIsNamedAsAFolder) {
  TempDir d;
  fs::create_directories(d.path / "text.txt");
  const Error e = error_of([&] { io::read_file_bounded((d.path / "text.txt").string(), 1024, "a text file"); });
  EXPECT_NE(std::string(e.what()).find("text.txt: a folder, not a regular file; expected a text file"), std::string::npos)
      << e.what();
}

TEST(BoundedRead, SizeIsCheckedBeforeReading) {
  TempDir d;
  // A sparse file of 1 GiB: reading it would take a second and a gigabyte, the check takes neither.
  const fs::path big = d.path / "big.json";
  std::ofstream(big).close();
  fs::resize_file(big, uint64_t{1} << 30);
  const Error e = error_of([&] { io::read_file_bounded(big.string(), io::kMaxConfigFileBytes, "a JSON config file"); });
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_NE(std::string(e.what()).find("1024.0 MiB is larger than the 64.0 MiB qrt reads for a JSON config file"),
            std::string::npos)
      << e.what();
}

TEST(BoundedRead, MissingFileIsBadInputNamingIt) {
  const Error e = error_of([] { io::read_file_bounded("/nonexistent/qrt/file.json", 1024, "a JSON config file"); });
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_NE(std::string(e.what()).find("/nonexistent/qrt/file.json: no such file"), std::string::npos) << e.what();
}

}  // namespace
}  // namespace qrt
