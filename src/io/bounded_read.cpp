// Bounded reads of small files (see bounded_read.h).
#include "io/bounded_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "qrt/error.h"

namespace qrt::io {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string size_text(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{} bytes", bytes);
}

void check_mode_and_size(const std::string& path, const struct stat& st, uint64_t max_bytes, const std::string& what) {
  if (!S_ISREG(st.st_mode))
    throw invalid_input(fmt::format("{}: {}, not a regular file; expected {}", path, kind_of(st.st_mode), what));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes)
    throw invalid_input(fmt::format("{}: {} is larger than the {} qrt reads for {}", path, size_text(size),
                                    size_text(max_bytes), what));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

uint64_t check_regular_file(const std::string& path, uint64_t max_bytes, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    // A path the user named that is not there is bad input (exit 2), not an I/O failure.
    if (errno == ENOENT || errno == ENOTDIR)
      throw invalid_input(fmt::format("{}: no such file or folder; expected {}", path, what));
    throw io_error(fmt::format("{}: cannot examine: {}", path, std::strerror(errno)));
  }
  check_mode_and_size(path, st, max_bytes, what);
  return static_cast<uint64_t>(st.st_size);
}

std::string read_file_bounded(const std::string& path, uint64_t max_bytes, const std::string& what) {
  check_regular_file(path, max_bytes, what);
  Fd f;
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f.fd < 0) throw io_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw io_error(fmt::format("{}: cannot examine: {}", path, std::strerror(errno)));
  check_mode_and_size(path, st, max_bytes, what);   // the file opened is the file checked
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t have = 0;
  for (;;) {
    if (have == out.size()) {
      // The file may have grown since fstat: read on, but never past the cap.
      if (out.size() > max_bytes)
        throw invalid_input(fmt::format("{}: grew past the {} qrt reads for {} while being read", path,
                                        size_text(max_bytes), what));
      out.resize(out.size() + 4096);
    }
    const ssize_t n = ::read(f.fd, out.data() + have, out.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(fmt::format("{}: read failed: {}", path, std::strerror(errno)));
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  out.resize(have);
  if (have > max_bytes)
    throw invalid_input(fmt::format("{}: grew past the {} qrt reads for {} while being read", path,
                                    size_text(max_bytes), what));
  return out;
}

}  // namespace qrt::io
