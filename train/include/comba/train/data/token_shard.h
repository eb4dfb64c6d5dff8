// Pre-tokenized shards in the llm.c / nanoGPT layout: a header of 256 little-endian int32
// (magic 20240520, version, token count, rest zero) followed by the tokens. Version 1
// holds uint16 tokens (llm.c's); version 2 holds uint32 tokens, for vocabularies past
// 65535. Files are memory-mapped and read window by window.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "comba/core/mapped_file.h"

namespace comba::train {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int64_t kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;
inline constexpr int32_t kShardVersionU16 = 1;
inline constexpr int32_t kShardVersionU32 = 2;

// A read-only view of tokens stored `width` bytes each (1: bytes, 2: uint16, 4: uint32).
struct TokenSpan {
  const unsigned char* data = nullptr;
  int width = 2;
  int64_t size = 0;

  int64_t at(int64_t i) const;
  // Copies tokens [begin, begin + count) into `out` as int64.
  void copy(int64_t begin, int64_t count, int64_t* out) const;
  TokenSpan slice(int64_t begin, int64_t end) const;
};

// Writes a shard atomically (core/atomic_file.h), for tests and tools.
// token_bytes: 2 (version 1) or 4 (version 2); values must fit.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       int token_bytes = 2);

class TokenShard {
 public:
  // Maps `path` and checks the header: every failure names the file and the field.
  explicit TokenShard(const std::string& path);
  const TokenSpan& tokens() const { return tokens_; }
  int32_t version() const { return version_; }
  const std::string& path() const { return file_.path(); }

 private:
  core::MappedFile file_;
  TokenSpan tokens_;
  int32_t version_ = 0;
};

// Files matching a glob pattern, sorted; an empty list when nothing matches.
std::vector<std::string> glob_files(const std::string& pattern);

}  // namespace comba::train
