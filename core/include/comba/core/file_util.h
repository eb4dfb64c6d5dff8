// The filesystem operations the project needs, on POSIX calls. Not std::filesystem:
// libtorch.so exports its own copy of std::filesystem's symbols, and in a program linked
// with it some calls (remove_all, seen crashing in a test) resolve to that copy and jump
// to null. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace comba::core {

void make_directories(const std::string& path);  // mkdir -p; throws std::runtime_error on failure
bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
// What `path` is (links followed), for messages: "a regular file", "a directory",
// "a FIFO (named pipe)", "a character device", "a block device", "a socket", or
// "missing" / "not accessible (<reason>)" when stat fails.
std::string describe_file_type(const std::string& path);
// Throws std::runtime_error "<what>: <path> is a FIFO (named pipe), expected a regular
// file" (or the stat failure's reason) unless `path` is a regular file. Call it before
// opening: open() on a FIFO blocks until a writer appears. `what` names the argument or
// key the path came from ("" for none).
void require_regular_file(const std::string& path, const std::string& what);
int64_t file_size(const std::string& path);  // -1 when missing
// Entry names (no "." / ".."), sorted; empty when `dir` cannot be read.
std::vector<std::string> list_directory(const std::string& dir);
void remove_file(const std::string& path);  // ignores a missing file
void remove_tree(const std::string& path);  // rm -rf; ignores a missing path
void rename_file(const std::string& from, const std::string& to);  // throws naming both
// Replaces `to` atomically (atomic_file.h) with the regular file `from`; throws naming both.
void copy_file(const std::string& from, const std::string& to);
void truncate_file(const std::string& path, int64_t size);         // throws naming the file
std::string join_path(const std::string& dir, const std::string& name);
std::string parent_directory(const std::string& path);  // "" when there is none
std::string absolute_path(const std::string& path);

}  // namespace comba::core
