// "1 thread", "2 threads": counts in messages read as English.
#pragma once

#include <cstdint>
#include <string>

namespace qrt {

// `count` and the noun, with `plural` (default: singular + "s") unless count is exactly 1.
inline std::string count_of(int64_t count, const std::string& singular, const std::string& plural = "") {
  return std::to_string(count) + " " + (count == 1 ? singular : plural.empty() ? singular + "s" : plural);
}

}  // namespace qrt
