// Names of error kinds, for messages and tests.
#include "qrt/error.h"

namespace qrt {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidInput: return "invalid input";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::NoBackend: return "no backend";
    case ErrorKind::Io: return "i/o error";
    case ErrorKind::OutOfMemory: return "out of memory";
    case ErrorKind::Device: return "device error";
    case ErrorKind::Internal: return "internal error";
  }
  return "error";
}

}  // namespace qrt
