// Atomic, self-checking checkpoint files (see checkpoint_file.h).
#include "comba/train/checkpoint_file.h"

#include "comba/core/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace comba::train {
namespace {

constexpr char kMagic[8] = {'C', 'O', 'M', 'B', 'A', 'C', 'K', '1'};
constexpr size_t kFrameBytes = sizeof(kMagic) + 2 * sizeof(uint64_t);
constexpr const char* kPrefix = "step_";
constexpr const char* kSuffix = ".ckpt";

uint64_t fnv1a64(const char* data, size_t size) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return;  // best effort for directories on filesystems that refuse it
  ::fsync(fd);
  ::close(fd);
}

std::optional<int64_t> step_of(const std::string& name) {
  const std::string prefix = kPrefix;
  const std::string suffix = kSuffix;
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return std::nullopt;
  }
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoll(digits);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string parent = core::parent_directory(path);
  if (!parent.empty()) core::make_directories(parent);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(tmp + ": cannot create: " + std::strerror(errno));
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::runtime_error(tmp + ": write failed: " + std::strerror(err));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error(tmp + ": fsync/close failed: " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error(path + ": rename failed: " + std::strerror(err));
  }
  // The rename itself must reach the disk for the new name to survive a power loss.
  fsync_path(parent.empty() ? "." : parent, O_RDONLY | O_DIRECTORY);
}

void write_checkpoint_file(const std::string& path, const std::string& payload) {
  std::string framed;
  framed.reserve(kFrameBytes + payload.size());
  framed.append(kMagic, sizeof(kMagic));
  const uint64_t size = payload.size();
  const uint64_t hash = fnv1a64(payload.data(), payload.size());
  framed.append(reinterpret_cast<const char*>(&size), sizeof(size));
  framed.append(reinterpret_cast<const char*>(&hash), sizeof(hash));
  framed += payload;
  write_file_atomic(path, framed);
}

std::optional<std::string> read_checkpoint_file(const std::string& path, std::string* why) {
  const auto fail = [&](const std::string& reason) -> std::optional<std::string> {
    if (why) *why = path + ": " + reason;
    return std::nullopt;
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string data = buffer.str();
  if (data.size() < kFrameBytes || std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return fail("not a Comba checkpoint (bad or missing header)");
  }
  uint64_t size = 0;
  uint64_t hash = 0;
  std::memcpy(&size, data.data() + sizeof(kMagic), sizeof(size));
  std::memcpy(&hash, data.data() + sizeof(kMagic) + sizeof(size), sizeof(hash));
  if (data.size() - kFrameBytes != size) {
    return fail("truncated: header says " + std::to_string(size) + " payload bytes, file has " +
                std::to_string(data.size() - kFrameBytes));
  }
  std::string payload = data.substr(kFrameBytes);
  if (fnv1a64(payload.data(), payload.size()) != hash) return fail("corrupted: checksum mismatch");
  return payload;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%010lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return core::join_path(dir, name);
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  for (const auto& name : core::list_directory(dir)) {
    const std::string path = core::join_path(dir, name);
    if (!core::is_regular_file(path)) continue;
    if (const auto step = step_of(name)) found.emplace_back(*step, path);
  }
  std::sort(found.begin(), found.end());
  return found;
}

void prune_checkpoints(const std::string& dir, int64_t keep_last) {
  const auto all = list_checkpoints(dir);
  const auto excess = static_cast<int64_t>(all.size()) - keep_last;
  for (int64_t i = 0; i < excess; ++i) core::remove_file(all[i].second);
  for (const auto& name : core::list_directory(dir)) {
    // Temporary files of a process that died mid-write.
    if (name.find(".ckpt.tmp.") != std::string::npos) core::remove_file(core::join_path(dir, name));
  }
}

}  // namespace comba::train
