// Checkpoint files on disk, independent of what they hold: atomic writes (temporary file,
// fsync, rename, fsync of the directory), a frame that detects a file cut short or
// corrupted (magic, payload length, FNV-1a hash), step-numbered names, and retention of
// the last N. A crash at any moment leaves either the old or the new file, never half.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace comba::train {

// Writes `bytes` to `path` so that `path` is never seen half-written.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Frames and writes a payload atomically.
void write_checkpoint_file(const std::string& path, const std::string& payload);
// The payload, or nullopt with the reason in *why (missing, truncated, corrupted).
std::optional<std::string> read_checkpoint_file(const std::string& path, std::string* why);

std::string checkpoint_path(const std::string& dir, int64_t step);
// (step, path) of every checkpoint in `dir`, oldest first; empty if dir is missing.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
// Deletes all but the newest `keep_last` checkpoints (and stale temporary files).
void prune_checkpoints(const std::string& dir, int64_t keep_last);

}  // namespace comba::train
