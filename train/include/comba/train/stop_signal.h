// SIGINT / SIGTERM -> a flag the loop reads after each step: it finishes the step, writes
// a checkpoint and exits cleanly. A second signal while stopping kills the process the
// usual way (the handler is uninstalled after the first).
#pragma once

namespace comba::train {

class StopSignal {
 public:
  // Installs the handlers; the destructor restores the previous ones.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  bool requested() const;
  int signal_number() const;  // the signal received, 0 if none
  // Clears the flag (tests run several trainers in one process).
  static void reset();
};

}  // namespace comba::train
