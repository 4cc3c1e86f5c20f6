// Progress of long CLI steps (quantize, dequantize) on stderr: a one-line bar redrawn in place
// when stderr is a terminal. Steps that take minutes (calibration) also log off a terminal (logs,
// CI, pipes): a plain line at every tenth of the work and at the end, with the elapsed time, so a
// long run is never silent and no carriage returns reach a log. Steps of seconds stay silent
// there, so a command that fails prints its one error line alone.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace qrt::cli {

class Progress {
 public:
  // log_lines: also print plain lines when stderr is not a terminal (for steps of minutes).
  explicit Progress(std::string what, bool log_lines = false)
      : what_(std::move(what)), tty_(isatty(2) != 0), log_lines_(log_lines),
        start_(std::chrono::steady_clock::now()) {}
  void update(int64_t done, int64_t total) {
    if (total <= 0) return;
    const int pct = static_cast<int>(100 * done / total);
    if (!tty_) {
      if (!log_lines_) return;
      const int tenth = static_cast<int>(10 * done / total);
      if (done <= 0 || tenth == last_) return;
      last_ = tenth;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      std::fprintf(stderr, "qrt: %s: %lld/%lld (%d%%), %.0f s\n", what_.c_str(), static_cast<long long>(done),
                   static_cast<long long>(total), pct, s);
      std::fflush(stderr);
      return;
    }
    if (pct == last_) return;
    last_ = pct;
    const int width = 30, fill = width * pct / 100;
    std::fprintf(stderr, "\r%s [%s%s] %3d%%", what_.c_str(), std::string(fill, '#').c_str(),
                 std::string(width - fill, ' ').c_str(), pct);
    std::fflush(stderr);
  }
  void done() {
    if (tty_ && last_ >= 0) std::fprintf(stderr, "\r%*s\r", 60, "");
  }

 private:
  std::string what_;
  bool tty_, log_lines_;
  std::chrono::steady_clock::time_point start_;
  int last_ = -1;
};

}  // namespace qrt::cli
