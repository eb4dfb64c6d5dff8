// A file's whole content, read or written as bytes: for tests that inspect what code wrote
// or hand it a file (see scratch_dir.h for where).
#pragma once
#include <fstream>
#include <iterator>
#include <string>

namespace comba::testing {

// Replaces the file's content with `bytes`.
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The file's content; empty when it cannot be read.
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace comba::testing
