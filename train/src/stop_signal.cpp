// Signal handling for clean stops (see stop_signal.h). Only async-signal-safe work in the
// handler: store the signal number in a lock-free atomic and restore the default action.
#include "comba/train/stop_signal.h"

#include <atomic>
#include <csignal>

namespace comba::train {
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "signal flag must be lock-free");

struct sigaction g_previous_int {};
struct sigaction g_previous_term {};

extern "C" void on_stop_signal(int signal) {
  g_signal.store(signal, std::memory_order_relaxed);
  std::signal(signal, SIG_DFL);  // a second Ctrl-C ends the process at once
}

}  // namespace

StopSignal::StopSignal() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

StopSignal::~StopSignal() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

bool StopSignal::requested() const { return g_signal.load(std::memory_order_relaxed) != 0; }
int StopSignal::signal_number() const { return g_signal.load(std::memory_order_relaxed); }
void StopSignal::reset() { g_signal.store(0, std::memory_order_relaxed); }

}  // namespace comba::train
