// Read-only bytes behind the readers: an mmapped file, or a buffer owned in memory.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qrt::io {

class MappedFile {
 public:
  // mmaps a regular file read-only. Throws qrt::Error(Io) naming the path when it cannot be
  // opened, is not a regular file, or cannot be mapped. An empty file gives an empty span.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  static std::shared_ptr<const MappedFile> own(std::vector<uint8_t> bytes);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;            // non-null when mmapped
  std::vector<uint8_t> owned_;
};

// Writes `chunks` one after the other to path + ".partial", flushes, and renames onto `path`; on
// any failure removes the partial file and throws qrt::Error(Io) naming the path.
void write_file_atomically(const std::string& path, const std::vector<std::span<const uint8_t>>& chunks);

// Checked arithmetic used by every reader (false on overflow).
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

}  // namespace qrt::io
