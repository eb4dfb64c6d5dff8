// Scratch folders for tests: $TMPDIR (or /tmp)/comba_<name>_<pid>, so that ctest's
// parallel entries and test runs of concurrent checkouts never share files. POSIX
// helpers, not std::filesystem (comba/core/file_util.h says why).
#pragma once
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "comba/core/file_util.h"

namespace comba::testing {

// The path for `name`, removed if a previous run left it, not created: for code under test
// that must create it itself.
inline std::string scratch_path(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = core::join_path(tmp && *tmp ? tmp : "/tmp",
                                          "comba_" + name + "_" + std::to_string(::getpid()));
  core::remove_tree(dir);
  return dir;
}

// The same path, created empty.
inline std::string fresh_dir(const std::string& name) {
  const std::string dir = scratch_path(name);
  core::make_directories(dir);
  return dir;
}

// A fresh folder per object, removed at the end (RAII).
class TempDir {
 public:
  explicit TempDir(const std::string& name = "test") {
    static std::atomic<int> counter{0};
    path_ = fresh_dir(name + "_" + std::to_string(counter++));
  }
  ~TempDir() { core::remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return core::join_path(path_, name); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace comba::testing
