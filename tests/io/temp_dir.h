// File helpers of the io tests; their scratch directory (TempDir) is tests/support's.
#pragma once
#include <fstream>
#include <string>

#include "support/scratch_dir.h"

namespace comba::io::testing {

using comba::testing::TempDir;

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace comba::io::testing
