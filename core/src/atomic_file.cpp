// Atomic file replacement on POSIX calls (see atomic_file.h).
#include "comba/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <streambuf>
#include <vector>

#include "comba/core/file_util.h"

namespace comba::core {
namespace {

constexpr size_t kBufferBytes = size_t{1} << 20;

// A name no other writer uses: this process's id and a per-process sequence number.
std::string temporary_name(const std::string& path) {
  static std::atomic<uint64_t> sequence{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(sequence++);
}

// Makes a rename inside `dir` durable. Best effort: some filesystems refuse to fsync a
// directory, and the file's own data is already on disk by then.
void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

// Buffered writes to a descriptor. A failed write() keeps its errno, so that the error
// reported names the cause (ENOSPC, EIO), not whatever errno holds later.
class AtomicFileWriter::Buffer final : public std::streambuf {
 public:
  explicit Buffer(int fd) : fd_(fd), space_(kBufferBytes) { reset(); }
  ~Buffer() override { close_fd(); }

  int error() const { return error_; }
  // Writes what is buffered; false (and error() set) on failure.
  bool drain() {
    const bool ok = write_all(pbase(), static_cast<size_t>(pptr() - pbase()));
    reset();
    return ok;
  }
  // fsync + close; the errno of the first failure, 0 on success.
  int finish() {
    if (!drain()) return error_;
    if (::fsync(fd_) != 0) return error_ = errno;
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return error_ = errno;
    return 0;
  }
  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 protected:
  int_type overflow(int_type ch) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    // Blocks as large as the buffer go straight to the file (tensor payloads).
    if (static_cast<size_t>(n) >= space_.size()) {
      return drain() && write_all(s, static_cast<size_t>(n)) ? n : 0;
    }
    return std::streambuf::xsputn(s, n);
  }

  int sync() override { return drain() ? 0 : -1; }

  pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode which) override {
    if ((which & std::ios_base::out) == 0 || !drain()) return pos_type(off_type(-1));
    const int whence = dir == std::ios_base::beg ? SEEK_SET : dir == std::ios_base::cur ? SEEK_CUR : SEEK_END;
    const off_t at = ::lseek(fd_, static_cast<off_t>(off), whence);
    if (at < 0) {
      error_ = errno;
      return pos_type(off_type(-1));
    }
    return pos_type(static_cast<off_type>(at));
  }

  pos_type seekpos(pos_type pos, std::ios_base::openmode which) override {
    return seekoff(off_type(pos), std::ios_base::beg, which);
  }

 private:
  void reset() { setp(space_.data(), space_.data() + space_.size()); }

  bool write_all(const char* p, size_t n) {
    if (error_ != 0 || fd_ < 0) return false;
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  int fd_;
  int error_ = 0;
  std::vector<char> space_;
};

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  const std::string parent = parent_directory(path_);
  if (!parent.empty()) make_directories(parent);
  tmp_ = temporary_name(path_);
  const int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int err = errno;
    throw std::runtime_error(path_ + ": cannot create the temporary file " + tmp_ + ": " +
                             std::strerror(err));
  }
  buffer_ = std::make_unique<Buffer>(fd);
  stream_ = std::make_unique<std::ostream>(buffer_.get());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (done_) return;
  stream_.reset();
  buffer_.reset();  // closes the descriptor without writing what is buffered
  ::unlink(tmp_.c_str());
}

std::ostream& AtomicFileWriter::stream() { return *stream_; }

void AtomicFileWriter::check() const {
  if (buffer_->error() != 0) {
    throw std::runtime_error(path_ + ": write failed: " + std::strerror(buffer_->error()));
  }
}

void AtomicFileWriter::fail(const std::string& what, int err) {
  buffer_->close_fd();
  ::unlink(tmp_.c_str());
  done_ = true;
  throw std::runtime_error(path_ + ": " + what + " failed: " + std::strerror(err));
}

void AtomicFileWriter::commit() {
  check();
  if (!*stream_) throw std::runtime_error(path_ + ": write failed (stream error)");
  if (const int err = buffer_->finish()) fail("write/fsync", err);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    fail("rename of " + tmp_, err);
  }
  done_ = true;
  fsync_directory(parent_directory(path_));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, [&](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  AtomicFileWriter file(path);
  try {
    write(file.stream());
  } catch (...) {
    file.check();  // an I/O error underneath explains the exception better than it does
    throw;
  }
  file.commit();
}

}  // namespace comba::core
