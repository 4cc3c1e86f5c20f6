// See interrupt.h. The handler only stores to a lock-free atomic and resets itself to the
// default action, both async-signal-safe.
#include "cli/interrupt.h"

#include <csignal>

namespace qrt::cli {
namespace {

std::atomic<bool> g_interrupted{false};
struct sigaction g_previous;

void on_sigint(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process
}

void install() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns with EINTR
  sigaction(SIGINT, &sa, nullptr);
}

}  // namespace

InterruptGuard::InterruptGuard() {
  g_interrupted.store(false);
  sigaction(SIGINT, nullptr, &g_previous);
  install();
}

InterruptGuard::~InterruptGuard() { sigaction(SIGINT, &g_previous, nullptr); }

const std::atomic<bool>* InterruptGuard::flag() const { return &g_interrupted; }
bool InterruptGuard::interrupted() const { return g_interrupted.load(); }

void InterruptGuard::rearm() {
  g_interrupted.store(false);
  install();
}

}  // namespace qrt::cli
