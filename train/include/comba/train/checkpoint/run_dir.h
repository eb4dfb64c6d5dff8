// The run directory's life around a run: its output folders checked for writing before the
// first step (not at the first checkpoint, when the work would be lost), one writer at a
// time (an flock held for the whole run), and an earlier run moved out of the way of a
// fresh start so that its checkpoints can neither outlive nor be mixed with the new run's.
// Torch-free.
#pragma once
#include <string>

namespace comba::train {

// Creates `path` (mkdir -p), then creates and removes a probe file in it. Throws
// std::runtime_error starting with `key` (the config key that named the folder), the path
// and the reason (an existing regular file, a read-only filesystem, no permission).
void check_writable_dir(const std::string& key, const std::string& path);

// An exclusive lock on <dir>/.lock for as long as the object lives (flock: released by the
// kernel also when the process dies). The lock file holds the owner's pid.
class RunDirLock {
 public:
  RunDirLock() = default;
  // Throws std::runtime_error naming `dir` (as `key`) and, when the file says, the pid
  // of the process that holds it.
  RunDirLock(const std::string& key, const std::string& dir);
  ~RunDirLock();
  RunDirLock(RunDirLock&& other) noexcept;
  RunDirLock& operator=(RunDirLock&& other) noexcept;
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  bool held() const { return fd_ >= 0; }

 private:
  void release();
  int fd_ = -1;
};

// Moves what an earlier run left in the way of a fresh start into <run_dir>/previous-<N>/
// (the smallest N not taken): the checkpoints (step_* files of checkpoint_dir) into its
// checkpoints/ subfolder, or into <checkpoint_dir>/previous-<N>/ when checkpoint_dir is not
// <run_dir>/checkpoints, and metrics.jsonl, loss_curve.svg and config.yaml. Nothing moves
// unless there is a checkpoint or a metrics.jsonl. Returns a sentence saying what went
// where, or "" when nothing moved. train.log stays (the log of every run, in order).
std::string move_previous_run_aside(const std::string& run_dir, const std::string& checkpoint_dir);

}  // namespace comba::train
