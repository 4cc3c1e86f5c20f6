// A one-line progress bar on stderr for long CLI steps (quantize, dequantize); silent unless
// stderr is a terminal, so logs and tests see no carriage returns.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace qrt::cli {

class Progress {
 public:
  explicit Progress(const char* what) : what_(what), tty_(isatty(2) != 0) {}
  void update(int64_t done, int64_t total) {
    if (!tty_ || total <= 0) return;
    const int pct = static_cast<int>(100 * done / total);
    if (pct == last_) return;
    last_ = pct;
    const int width = 30, fill = width * pct / 100;
    std::fprintf(stderr, "\r%s [%s%s] %3d%%", what_, std::string(fill, '#').c_str(), std::string(width - fill, ' ').c_str(), pct);
    std::fflush(stderr);
  }
  void done() {
    if (tty_ && last_ >= 0) std::fprintf(stderr, "\r%*s\r", 60, "");
  }

 private:
  const char* what_;
  bool tty_;
  int last_ = -1;
};

}  // namespace qrt::cli
