// Checked sizes and host-memory checks for input-sized buffers (see host_memory.h).
#include "core/host_memory.h"

#include <fmt/format.h>

#include <fstream>

#include "qrt/error.h"

namespace qrt {

int64_t available_host_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (f >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return -1;
}

int64_t checked_product(std::initializer_list<int64_t> factors, const std::string& what) {
  int64_t p = 1;
  for (int64_t f : factors) {
    if (f < 0) throw invalid_input(fmt::format("{}: a size of {} is negative", what, f));
    if (__builtin_mul_overflow(p, f, &p))
      throw invalid_input(fmt::format("{}: the sizes multiply past 2^63 (overflow); use smaller values", what));
  }
  return p;
}

int64_t checked_sum(int64_t a, int64_t b, const std::string& what) {
  int64_t s = 0;
  if (__builtin_add_overflow(a, b, &s))
    throw invalid_input(fmt::format("{}: the sizes add up past 2^63 (overflow); use smaller values", what));
  return s;
}

std::string memory_text(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.1f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{} KiB", (bytes + 1023) / 1024);
}

void check_host_memory(int64_t bytes, const std::string& what) {
  const int64_t available = available_host_memory_bytes();
  if (available >= 0 && bytes > available)
    throw Error(ErrorKind::OutOfMemory, fmt::format("{} needs {} of host memory; {} are available", what,
                                                    memory_text(bytes), memory_text(available)));
}

}  // namespace qrt
