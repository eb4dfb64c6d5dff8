// A scratch directory per test, removed at the end (RAII), so that tests running in
// parallel under ctest never share files. POSIX helpers, not std::filesystem (file_util.h
// says why).
#pragma once
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>

#include "comba/core/file_util.h"

namespace comba::io::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const char* tmp = std::getenv("TMPDIR");
    path_ = core::join_path(tmp && *tmp ? tmp : "/tmp",
                      "comba_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    core::remove_tree(path_);
    core::make_directories(path_);
  }
  ~TempDir() { core::remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return core::join_path(path_, name); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace comba::io::testing
