// The run directory's checks, lock and move-aside (see run_dir.h).
#include "comba/train/checkpoint/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "comba/core/file_util.h"
#include "comba/core/log.h"

namespace comba::train {
namespace {

// The files of a run directory that belong to one run (train.log is the log of all runs).
constexpr const char* kRunFiles[] = {"metrics.jsonl", "loss_curve.svg", "config.yaml"};
constexpr const char* kCheckpointPrefix = "step_";  // checkpoints, their .unreadable and temporaries

std::string collapse_slashes(const std::string& path) {
  std::string out;
  for (const char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out += c;
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// The pid written in a lock file by its holder, or "" when it says nothing readable.
std::string holder_pid(int fd) {
  char buffer[32] = {};
  const ssize_t n = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
  if (n <= 0) return "";
  std::string text(buffer, static_cast<size_t>(n));
  text = text.substr(0, text.find('\n'));
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return "";
  return text;
}

}  // namespace

void check_writable_dir(const std::string& key, const std::string& path) {
  try {
    core::make_directories(path);
  } catch (const std::exception& e) {
    throw std::runtime_error(key + ": cannot use \"" + path + "\" as an output directory: " + e.what());
  }
  const std::string probe = core::join_path(path, ".comba-write-probe." + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw std::runtime_error(key + ": cannot write in \"" + path + "\": " + std::strerror(errno) +
                             " (checked before the first step; the run writes there)");
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

RunDirLock::RunDirLock(const std::string& key, const std::string& dir) {
  const std::string path = core::join_path(dir, ".lock");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw std::runtime_error(key + ": cannot open the lock file \"" + path + "\": " +
                             std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const std::string pid = holder_pid(fd);
      ::close(fd);
      throw std::runtime_error(
          key + " \"" + dir + "\" is in use by another training run" +
          (pid.empty() ? std::string() : " (pid " + pid + ")") +
          ": a run directory takes one writer at a time; wait for that run to end, stop it, "
          "or choose another " + key);
    }
    // A filesystem without flock (some network mounts): run unguarded rather than not at all.
    ::close(fd);
    log::warn(key + ": cannot lock \"" + path + "\" (" + std::strerror(err) +
              "); nothing stops a second run from writing into this directory");
    return;
  }
  fd_ = fd;
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    // Only informs the message above; the lock itself does not depend on it.
    [[maybe_unused]] const ssize_t n = ::pwrite(fd_, pid.data(), pid.size(), 0);
  }
}

RunDirLock::~RunDirLock() { release(); }

RunDirLock::RunDirLock(RunDirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

RunDirLock& RunDirLock::operator=(RunDirLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void RunDirLock::release() {
  if (fd_ < 0) return;
  // The file stays: unlinking a lock file lets a waiter lock a name nobody else sees.
  ::close(fd_);  // closing the last descriptor releases the flock
  fd_ = -1;
}

std::string move_previous_run_aside(const std::string& run_dir, const std::string& checkpoint_dir) {
  std::vector<std::string> checkpoints;
  for (const auto& name : core::list_directory(checkpoint_dir)) {
    if (name.rfind(kCheckpointPrefix, 0) == 0 &&
        core::is_regular_file(core::join_path(checkpoint_dir, name))) {
      checkpoints.push_back(name);
    }
  }
  if (checkpoints.empty() && !core::is_regular_file(core::join_path(run_dir, "metrics.jsonl"))) {
    return "";
  }
  // Checkpoints under the run directory travel with the run's files; a checkpoint.dir
  // elsewhere keeps its own previous-<N> beside them (same filesystem: renames, no copies).
  const bool nested =
      collapse_slashes(checkpoint_dir) == collapse_slashes(core::join_path(run_dir, "checkpoints"));
  std::string folder;
  std::string checkpoint_folder;
  for (int n = 1;; ++n) {
    const std::string name = "previous-" + std::to_string(n);
    folder = core::join_path(run_dir, name);
    checkpoint_folder = nested ? core::join_path(folder, "checkpoints")
                               : core::join_path(checkpoint_dir, name);
    if (!core::path_exists(folder) && !core::path_exists(checkpoint_folder)) break;
  }
  // Checkpoints first: once they are gone, the stale run can no longer be resumed.
  std::string text;
  if (!checkpoints.empty()) {
    core::make_directories(checkpoint_folder);
    for (const auto& name : checkpoints) {
      core::rename_file(core::join_path(checkpoint_dir, name), core::join_path(checkpoint_folder, name));
    }
    std::string newest;  // names are zero-padded: the last whole .ckpt is the newest step
    for (const auto& name : checkpoints) {
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".ckpt") == 0) newest = name;
    }
    text = std::to_string(checkpoints.size()) + " checkpoint file(s)" +
           (newest.empty() ? std::string() : " (newest " + newest + ")") + " to " + checkpoint_folder;
  }
  std::string files;
  for (const char* name : kRunFiles) {
    const std::string from = core::join_path(run_dir, name);
    if (!core::is_regular_file(from)) continue;
    core::make_directories(folder);
    core::rename_file(from, core::join_path(folder, name));
    files += std::string(files.empty() ? "" : ", ") + name;
  }
  if (!files.empty()) text += (text.empty() ? "" : "; ") + files + " to " + folder;
  return "moved the previous run in " + run_dir + " out of the way of this fresh start: " + text;
}

}  // namespace comba::train
