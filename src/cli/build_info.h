// The build's identity, defined once (CMake passes it to build_info.cpp at configure time): what
// `qrt --version` prints and what a quantized folder records as its maker.
#pragma once

#include <string>

namespace qrt::cli {

const char* qrt_version();      // the CMake project version, "0.1.0"
const char* qrt_git_commit();   // the commit the build was configured at (12 hex digits), or "unknown"
bool built_with_cuda();
// "qrt 0.1.0 (git 3b2cd4e1f0a2, CUDA 12.4)" / "qrt 0.1.0 (git unknown, CPU only)".
std::string version_line();

}  // namespace qrt::cli
