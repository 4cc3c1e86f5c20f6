// See prompt_input.h.
#include "cli/prompt_input.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "qrt/error.h"

namespace qrt::cli {
namespace {

std::string drop_trailing_newline(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

}  // namespace

std::string read_all(int fd, size_t limit, const std::string& what) {
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      throw io_error(what + ": read failed: " + std::strerror(errno));
    }
    if (out.size() + static_cast<size_t>(got) > limit)
      throw invalid_input(what + ": more than " + std::to_string(limit >> 20) + " MiB; no context holds a prompt that long");
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

std::string read_prompt(const std::string& prompt, bool prompt_given, const std::string& file, bool file_given) {
  if (prompt_given && file_given) throw invalid_input("-p and -f both give the prompt: use one of them");
  if (prompt_given && prompt != "-") return prompt;
  if (file_given && file != "-") {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw invalid_input(file + ": cannot open the prompt file: " + std::strerror(errno));
    std::string text;
    try {
      text = read_all(fd, kMaxPromptBytes, file);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    return drop_trailing_newline(std::move(text));
  }
  if (!prompt_given && !file_given && isatty(0))
    throw invalid_input("no prompt: give -p TEXT, -f FILE, or pipe the text on standard input (qrt chat for a "
                        "conversation)");
  return drop_trailing_newline(read_all(0, kMaxPromptBytes, "standard input"));
}

}  // namespace qrt::cli
