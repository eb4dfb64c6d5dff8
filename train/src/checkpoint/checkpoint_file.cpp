// Atomic, self-checking checkpoint files (see checkpoint_file.h).
#include "comba/train/checkpoint/checkpoint_file.h"

#include "comba/core/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace comba::train {
namespace {

// Frame: magic (its last character is the version), payload length, payload checksum.
// Version 1 hashed the payload with byte-wise FNV-1a: one multiply per byte in series, some
// 20 s per 16 GB. Version 2 runs four FNV-style lanes over 64-bit words side by side. Both
// are read; version 2 is written.
constexpr char kMagicPrefix[7] = {'C', 'O', 'M', 'B', 'A', 'C', 'K'};
constexpr char kVersionWritten = '2';
constexpr size_t kFrameBytes = sizeof(kMagicPrefix) + 1 + 2 * sizeof(uint64_t);
constexpr const char* kPrefix = "step_";
constexpr const char* kSuffix = ".ckpt";

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;
constexpr size_t kChunkBytes = size_t{1} << 20;  // the reader's verification buffer

// A payload checksum computed as the bytes stream by, in pieces of any size.
class PayloadHash {
 public:
  explicit PayloadHash(char version) : version_(version) {}

  void update(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    total_ += size;
    if (version_ == '1') {
      for (size_t i = 0; i < size; ++i) byte_hash_ = (byte_hash_ ^ p[i]) * kFnvPrime;
      return;
    }
    if (pending_ > 0) {  // complete the block an earlier piece started
      const size_t take = std::min(size, kBlock - pending_);
      std::memcpy(block_ + pending_, p, take);
      pending_ += take;
      p += take;
      size -= take;
      if (pending_ < kBlock) return;
      mix(block_);
      pending_ = 0;
    }
    for (; size >= kBlock; p += kBlock, size -= kBlock) mix(p);
    std::memcpy(block_, p, size);
    pending_ = size;
  }

  uint64_t digest() const {
    if (version_ == '1') return byte_hash_;
    PayloadHash last = *this;  // the unfinished block, zero-padded
    std::memset(last.block_ + pending_, 0, kBlock - pending_);
    last.mix(last.block_);
    // Each step below is a bijection of the running value, so a change in any one lane
    // (one damaged word) always changes the digest; the length tells padding apart.
    uint64_t out = kFnvOffset ^ total_;
    for (const uint64_t lane : last.lanes_) {
      out = (out ^ lane) * kFnvPrime;
      out ^= out >> 32;
    }
    return out;
  }

 private:
  static constexpr size_t kLanes = 4;
  static constexpr size_t kBlock = kLanes * sizeof(uint64_t);

  // One native-endian word per lane; (lane ^ word) * odd prime is a bijection of the lane.
  void mix(const unsigned char* block) {
    for (size_t i = 0; i < kLanes; ++i) {
      uint64_t word;
      std::memcpy(&word, block + i * sizeof(word), sizeof(word));
      lanes_[i] = (lanes_[i] ^ word) * kFnvPrime;
    }
  }

  char version_;
  uint64_t byte_hash_ = kFnvOffset;
  uint64_t lanes_[kLanes] = {kFnvOffset, kFnvOffset + 1, kFnvOffset + 2, kFnvOffset + 3};
  unsigned char block_[kBlock] = {};
  size_t pending_ = 0;
  uint64_t total_ = 0;
};

// pread until `size` bytes or the end of the file; -1 (errno set) on a read error.
int64_t pread_full(int fd, void* out, size_t size, uint64_t offset) {
  auto* p = static_cast<char*>(out);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(done);
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

void write_checkpoint_file(const std::string& path,
                           const std::function<void(const PayloadSink&)>& write_payload) {
  core::write_file_atomic(path, [&](std::ostream& out) {
    const char unknown[2 * sizeof(uint64_t)] = {};
    out.write(kMagicPrefix, sizeof(kMagicPrefix));
    out.put(kVersionWritten);
    out.write(unknown, sizeof(unknown));  // length and hash, known at the end
    uint64_t size = 0;
    PayloadHash hash(kVersionWritten);
    write_payload([&](const void* data, size_t n) {
      hash.update(data, n);
      size += n;
      out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
      if (!out) throw std::runtime_error(path + ": write failed");
    });
    const uint64_t digest = hash.digest();
    out.seekp(sizeof(kMagicPrefix) + 1);
    out.write(reinterpret_cast<const char*>(&size), sizeof(size));
    out.write(reinterpret_cast<const char*>(&digest), sizeof(digest));
  });
}

void write_checkpoint_file(const std::string& path, std::string_view payload) {
  write_checkpoint_file(path, [&](const PayloadSink& sink) { sink(payload.data(), payload.size()); });
}

CheckpointReader::CheckpointReader(std::string path, int fd, uint64_t size)
    : path_(std::move(path)), fd_(fd), size_(size) {}

CheckpointReader::~CheckpointReader() { close(); }

CheckpointReader::CheckpointReader(CheckpointReader&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), size_(other.size_) {
  other.fd_ = -1;
  other.size_ = 0;
}

CheckpointReader& CheckpointReader::operator=(CheckpointReader&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    size_ = other.size_;
    other.fd_ = -1;
    other.size_ = 0;
  }
  return *this;
}

void CheckpointReader::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::optional<CheckpointReader> CheckpointReader::open(const std::string& path, std::string* why) {
  const auto fail = [&](const std::string& reason) -> std::optional<CheckpointReader> {
    if (why) *why = path + ": " + reason;
    return std::nullopt;
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return fail(std::string("cannot open: ") + std::strerror(err));
  }
  // Checked before open(): opening a FIFO would block.
  if (!S_ISREG(st.st_mode)) return fail("is " + core::describe_file_type(path) + ", expected a checkpoint file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    return fail(std::string("cannot open: ") + std::strerror(err));
  }
  CheckpointReader file(path, fd, 0);  // closes the descriptor on every return below
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return fail("not a regular file");
  const auto file_bytes = static_cast<uint64_t>(st.st_size);
  char header[kFrameBytes];
  if (file_bytes < kFrameBytes || pread_full(fd, header, kFrameBytes, 0) != static_cast<int64_t>(kFrameBytes) ||
      std::memcmp(header, kMagicPrefix, sizeof(kMagicPrefix)) != 0) {
    return fail("not a Comba checkpoint (bad or missing header)");
  }
  const char version = header[sizeof(kMagicPrefix)];
  if (version != '1' && version != '2') {
    return fail(std::string("unknown frame version '") + version + "' (this program reads 1 and 2)");
  }
  uint64_t size = 0;
  uint64_t hash = 0;
  std::memcpy(&size, header + sizeof(kMagicPrefix) + 1, sizeof(size));
  std::memcpy(&hash, header + sizeof(kMagicPrefix) + 1 + sizeof(size), sizeof(hash));
  if (file_bytes - kFrameBytes != size) {
    return fail("truncated: header says " + std::to_string(size) + " payload bytes, file has " +
                std::to_string(file_bytes - kFrameBytes));
  }
  std::vector<char> chunk(kChunkBytes);
  PayloadHash running(version);
  for (uint64_t at = 0; at < size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size - at));
    const int64_t got = pread_full(fd, chunk.data(), want, kFrameBytes + at);
    if (got != static_cast<int64_t>(want)) {
      const int err = got < 0 ? errno : 0;
      return fail(err != 0 ? std::string("read failed: ") + std::strerror(err)
                           : std::string("truncated while reading"));
    }
    running.update(chunk.data(), want);
    at += want;
  }
  if (running.digest() != hash) return fail("corrupted: checksum mismatch");
  file.size_ = size;
  return std::optional<CheckpointReader>(std::move(file));
}

size_t CheckpointReader::read(uint64_t offset, void* out, size_t size) const {
  if (fd_ < 0 || offset >= size_) return 0;
  size = static_cast<size_t>(std::min<uint64_t>(size, size_ - offset));
  const int64_t got = pread_full(fd_, out, size, kFrameBytes + offset);
  return got < 0 ? 0 : static_cast<size_t>(got);
}

std::string CheckpointReader::read_all() const {
  std::string payload(static_cast<size_t>(size_), '\0');
  if (read(0, payload.data(), payload.size()) != payload.size()) {
    throw std::runtime_error(path_ + ": read failed");
  }
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
