// CLI11 validators for numbers whose range CLI11's own conversion does not enforce: it clamps or
// wraps a value that does not fit (a --seed of -1 or 2^64 became another seed, silently).
#pragma once

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <string>

namespace qrt::cli {

// A decimal integer in [0, 2^64 - 1], written with digits only.
inline CLI::Validator unsigned_64bit_integer() {
  return CLI::Validator(
      [](const std::string& v) -> std::string {
        const std::string expected = "expected an integer in [0, 18446744073709551615], got '" + v + "'";
        if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return expected;
        errno = 0;
        char* end = nullptr;
        (void)std::strtoull(v.c_str(), &end, 10);
        if (errno == ERANGE || *end != '\0') return expected;
        return {};
      },
      "UINT64");
}

}  // namespace qrt::cli
