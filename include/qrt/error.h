// Error type used across qrt.
//
// Why exceptions and not a Status/expected type: qrt's errors are all "stop this command and tell
// the user what is wrong" (bad file, bad config, no backend for a layer). Every one of them
// unwinds to the CLI or the public API, where it is printed as one line; none is recovered from
// in a loop. An exception with a kind and a message that names the file/tensor/field is the
// simplest thing that does that. Hot paths (forward passes, kernels) never throw.
#pragma once

#include <stdexcept>
#include <string>

namespace qrt {

enum class ErrorKind {
  InvalidInput,   // a file or value from the user is malformed (names the file/tensor/field)
  Unsupported,    // well-formed but qrt cannot handle it (unknown method, arch, dtype)
  NoBackend,      // no backend can run a layer / explicit backend impossible
  Io,             // open/read/write/mmap failed
  OutOfMemory,    // host or device allocation failed
  Device,         // CUDA / driver failure
  Internal,       // a bug in qrt
};

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Helpers so call sites read as one line: throw invalid_input("model.safetensors: ...").
inline Error invalid_input(const std::string& m) { return Error(ErrorKind::InvalidInput, m); }
inline Error unsupported(const std::string& m) { return Error(ErrorKind::Unsupported, m); }
inline Error io_error(const std::string& m) { return Error(ErrorKind::Io, m); }
inline Error internal_error(const std::string& m) { return Error(ErrorKind::Internal, m); }
// A path the user named that is not there: bad input (exit 2 at the CLI), not an I/O failure.
inline Error no_such_path(const std::string& path) { return invalid_input(path + ": no such file or folder"); }

}  // namespace qrt
