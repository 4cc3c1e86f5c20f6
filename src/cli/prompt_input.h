// Where `qrt run` takes its prompt from, as llama-cli users expect: -p TEXT, -f FILE, "-p -" or
// "-f -" for standard input, and standard input when it is a pipe and neither is given.
#pragma once

#include <string>

namespace qrt::cli {

// The longest prompt read from a file or stdin: far more than any context holds.
constexpr size_t kMaxPromptBytes = size_t{64} << 20;

// `prompt_given` / `file_given`: whether -p / -f were on the command line. One trailing newline
// of a file or stdin is dropped (editors add one). Throws qrt::Error(InvalidInput) naming the
// file for a missing or oversized one, and when there is no prompt at all.
std::string read_prompt(const std::string& prompt, bool prompt_given, const std::string& file, bool file_given);

// Reads all of `fd` (stdin: 0), at most `limit` bytes; throws naming `what` beyond that.
std::string read_all(int fd, size_t limit, const std::string& what);

}  // namespace qrt::cli
