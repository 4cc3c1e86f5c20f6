// Ctrl-C while a model generates: the first SIGINT asks the running loop to stop (it then prints
// what it has and exits 130, as shells expect of a process ended by SIGINT); a second one ends the
// process at once. A blocking read (qrt chat waiting for a line) returns early on the first one.
#pragma once

#include <atomic>

namespace qrt::cli {

class InterruptGuard {
 public:
  InterruptGuard();    // installs the handler
  ~InterruptGuard();   // restores the previous one
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  // Set by the handler; pass to GenerationOptions::interrupt.
  const std::atomic<bool>* flag() const;
  bool interrupted() const;
  // Clears the flag and arms the handler again (qrt chat: Ctrl-C ends one reply, not the chat).
  void rearm();
};

// The exit status of a command stopped by SIGINT.
constexpr int kInterruptedExit = 130;

}  // namespace qrt::cli
