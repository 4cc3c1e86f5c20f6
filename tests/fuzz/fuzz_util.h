// Small helpers shared by the libFuzzer targets of tests/fuzz/.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "qrt/error.h"

namespace qrt::fuzz {

// The whole file as bytes ("" when it cannot be read).
inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A clean qrt::Error is the expected way to reject an input. To check that seeds get past the
// parsers, run a target on them with QRT_FUZZ_PRINT_ERRORS=1: each rejection is printed.
inline void note_rejected(const qrt::Error& e) {
  if (std::getenv("QRT_FUZZ_PRINT_ERRORS")) std::fprintf(stderr, "qrt::Error: %s\n", e.what());
}

}  // namespace qrt::fuzz
