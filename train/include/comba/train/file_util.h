// The few filesystem operations the trainer needs, on POSIX calls. Not std::filesystem:
// libtorch.so exports its own copy of std::filesystem's symbols, and in a program linked
// with it some calls (remove_all) resolve to that copy and crash.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace comba::train {

void make_directories(const std::string& path);  // mkdir -p; throws on failure
bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
// Entry names (no "." / ".."), unsorted; empty when `dir` cannot be read.
std::vector<std::string> list_directory(const std::string& dir);
bool is_regular_file(const std::string& path);
void remove_file(const std::string& path);  // ignores a missing file
void remove_tree(const std::string& path);  // rm -rf; ignores a missing path
int64_t file_size(const std::string& path);  // -1 when missing
void truncate_file(const std::string& path, int64_t size);
std::string join_path(const std::string& dir, const std::string& name);
std::string parent_directory(const std::string& path);  // "" when there is none

}  // namespace comba::train
