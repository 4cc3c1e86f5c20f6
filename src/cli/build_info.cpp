// The version is project()'s, from the generated qrt/version.h the installed headers carry too;
// QRT_GIT_COMMIT and QRT_CUDA_VERSION come from CMakeLists.txt, and only this file is compiled with
// them, so a new commit rebuilds one file.
#include "cli/build_info.h"

#include "qrt/version.h"

#ifndef QRT_GIT_COMMIT
#error "QRT_GIT_COMMIT is set by CMakeLists.txt"
#endif

namespace qrt::cli {

const char* qrt_version() { return QRT_VERSION_STRING; }
const char* qrt_git_commit() { return QRT_GIT_COMMIT; }

bool built_with_cuda() {
#ifdef QRT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string version_line() {
  std::string cuda = std::string(QRT_CUDA_VERSION).empty() ? "CUDA" : std::string("CUDA ") + QRT_CUDA_VERSION;
  return std::string("qrt ") + QRT_VERSION_STRING + " (git " + QRT_GIT_COMMIT + ", " +
         (built_with_cuda() ? cuda : std::string("CPU only")) + ")";
}

}  // namespace qrt::cli
