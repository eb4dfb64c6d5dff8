// Checkpoint files on disk, independent of what they hold: atomic writes
// (core/atomic_file.h), a frame that detects a file cut short or corrupted (magic with a
// version, payload length, checksum: four-lane word-wise FNV in version 2, byte-wise
// FNV-1a in version 1, which still reads), step-numbered names, and retention of the last
// N. A crash at any moment leaves either the old or the new file, never half.
//
// Payloads of many gigabytes are never held in memory: the writer streams the payload to
// the temporary file while it counts and hashes it (the header is patched at the end);
// the reader verifies length and hash in one streaming pass and then serves reads at any
// offset from the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "comba/core/atomic_file.h"

namespace comba::train {

// The trainer's small files (config.yaml, metrics, plots) go through core's helper too.
using core::write_file_atomic;

// Receives the payload piece by piece; throws when the write has failed.
using PayloadSink = std::function<void(const void* data, size_t size)>;

// Frames and writes the payload that `write_payload` passes to its sink, atomically.
void write_checkpoint_file(const std::string& path,
                           const std::function<void(const PayloadSink&)>& write_payload);
// The same for a payload already in memory (small payloads, tests).
void write_checkpoint_file(const std::string& path, std::string_view payload);

// An open checkpoint file whose frame was verified whole. Move-only; closes the file.
class CheckpointReader {
 public:
  // Opens `path` and checks magic, length and checksum (reading it once, in chunks);
  // nullopt with the reason in *why (missing, not a checkpoint, truncated, corrupted).
  static std::optional<CheckpointReader> open(const std::string& path, std::string* why);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&& other) noexcept;
  CheckpointReader& operator=(CheckpointReader&& other) noexcept;
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  uint64_t payload_size() const { return size_; }
  // Copies up to `size` payload bytes from `offset` into `out`; returns how many were
  // read (0 at the end or on a read error). Never throws: torch's archive reader calls it
  // from C code.
  size_t read(uint64_t offset, void* out, size_t size) const;
  // The whole payload in memory (small payloads, tests).
  std::string read_all() const;
  const std::string& path() const { return path_; }

 private:
  CheckpointReader(std::string path, int fd, uint64_t size);
  void close() noexcept;

  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

std::string checkpoint_path(const std::string& dir, int64_t step);
// (step, path) of every checkpoint in `dir`, oldest first; empty if dir is missing.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
// Deletes all but the newest `keep_last` checkpoints (and stale temporary files).
void prune_checkpoints(const std::string& dir, int64_t keep_last);

}  // namespace comba::train
