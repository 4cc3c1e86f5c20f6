// mmap wrapper and atomic file writes for the readers and writers of src/io.
#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "qrt/error.h"

namespace qrt::io {

namespace {
std::string errno_text() { return std::strerror(errno); }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  Fd f;
  // O_NONBLOCK: a FIFO given as a model file is refused below instead of waiting for a writer.
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f.fd < 0) throw io_error(path + ": cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw io_error(path + ": cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw io_error(path + ": not a regular file");
  std::shared_ptr<MappedFile> m(new MappedFile());
  if (st.st_size == 0) return m;
  void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) throw io_error(path + ": cannot mmap: " + errno_text());
  m->map_ = p;
  m->data_ = static_cast<const uint8_t*>(p);
  m->size_ = static_cast<size_t>(st.st_size);
  return m;
}

std::shared_ptr<const MappedFile> MappedFile::own(std::vector<uint8_t> bytes) {
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->owned_ = std::move(bytes);
  m->data_ = m->owned_.data();
  m->size_ = m->owned_.size();
  return m;
}

MappedFile::~MappedFile() {
  if (map_) ::munmap(map_, size_);
}

void write_file_atomically(const std::string& path, const std::vector<std::span<const uint8_t>>& chunks) {
  const std::string tmp = path + ".partial";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw io_error(path + ": cannot create " + tmp + ": " + errno_text());
  bool ok = true;
  for (const auto& c : chunks) {
    if (!c.empty() && std::fwrite(c.data(), 1, c.size(), f) != c.size()) {
      ok = false;
      break;
    }
  }
  const std::string why = ok ? "" : errno_text();
  if (std::fflush(f) != 0) ok = false;
  if (ok && ::fsync(::fileno(f)) != 0) ok = false;
  if (std::fclose(f) != 0) ok = false;
  if (!ok) {
    std::remove(tmp.c_str());
    throw io_error(path + ": write failed" + (why.empty() ? "" : ": " + why));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string e = errno_text();
    std::remove(tmp.c_str());
    throw io_error(path + ": cannot rename " + tmp + " into place: " + e);
  }
}

}  // namespace qrt::io
