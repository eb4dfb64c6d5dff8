// Files replaced whole or not at all. The bytes go to a temporary file in the target's
// directory (same filesystem, so the rename is atomic), which is fsynced, renamed over the
// target, and the directory fsynced so that the new name survives a power loss. A crash at
// any moment leaves the old file or the complete new one; a failure the process survives
// (disk full, I/O error, an exception from the caller's writer) also leaves no temporary
// file behind. The streaming form hands the writer a buffered std::ostream on the
// temporary file, so that large payloads (checkpoints, weights) are never built in memory
// first. Torch-free.
#pragma once
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace comba::core {

// One atomic write in progress: write through stream(), then commit(). Destroyed without
// a commit (an exception on the way), it removes the temporary file; the target is untouched.
class AtomicFileWriter {
 public:
  // Creates missing parent directories and a temporary file next to `path`; throws
  // std::runtime_error naming the file and the reason.
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // A buffered stream on the temporary file; it supports seekp/tellp (to patch a header).
  // Large writes bypass the buffer.
  std::ostream& stream();
  // Throws std::runtime_error naming the target and the system's reason when a write so
  // far has failed; does nothing otherwise.
  void check() const;
  // Flushes, fsyncs and closes the temporary file, renames it over the target and fsyncs
  // the directory. Throws (naming the target) on failure, leaving the target untouched.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temporary_path() const { return tmp_; }

 private:
  class Buffer;  // std::streambuf on the temporary file's descriptor
  [[noreturn]] void fail(const std::string& what, int err);

  std::string path_;
  std::string tmp_;
  std::unique_ptr<Buffer> buffer_;
  std::unique_ptr<std::ostream> stream_;  // declared after buffer_: destroyed first
  bool done_ = false;  // committed, or the temporary file already removed
};

// Replaces `path` with `bytes`.
void write_file_atomic(const std::string& path, std::string_view bytes);
// Replaces `path` with what `write` puts into the stream; if `write` throws, the target
// is untouched and the exception propagates (an I/O error is reported as such).
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace comba::core
