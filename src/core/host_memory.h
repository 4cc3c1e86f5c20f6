// Memory checks for buffers sized from user input (a context length, a benchmark shape): the size
// is computed with checked arithmetic and compared with what the machine can give BEFORE anything
// is allocated, so a bad value gets a sentence naming what was asked and how much it needs instead
// of a wrapped size, a bare std::bad_alloc or the kernel's OOM killer.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

namespace qrt {

// Bytes the system can still give this process (Linux MemAvailable), or -1 when unknown.
int64_t available_host_memory_bytes();

// The product of `factors` (each >= 0); throws qrt::Error(InvalidInput) "<what>: ... overflows" when
// it does not fit in int64.
int64_t checked_product(std::initializer_list<int64_t> factors, const std::string& what);
// a + b, with the same error.
int64_t checked_sum(int64_t a, int64_t b, const std::string& what);

// Throws qrt::Error(OutOfMemory) "<what> needs X GiB of host memory, Y GiB are available" when
// `bytes` exceeds the available memory (nothing is checked when it is unknown).
void check_host_memory(int64_t bytes, const std::string& what);

// "7.3 GiB", "512.0 MiB", "12 KiB" for messages.
std::string memory_text(int64_t bytes);

}  // namespace qrt
