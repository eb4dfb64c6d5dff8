// Pre-tokenized shards in llm.c's layout: a header of 256 little-endian int32 (magic,
// version, token count, rest zero) followed by the tokens. llm.c's two kinds are written
// and read: magic 20240520 version 1 holds uint16 tokens, magic 20240801 version 7 holds
// uint32 tokens (vocabularies past 65535). Our earlier uint32 files (magic 20240520
// version 2) are still read. Also read: nanoGPT's header-less train.bin, a flat array of
// uint16 tokens (ShardFormat::kRawUint16). Files are memory-mapped, read window by window.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "comba/core/mapped_file.h"

namespace comba::train {

inline constexpr int32_t kShardMagic = 20240520;  // llm.c's uint16 shards
inline constexpr int32_t kShardVersionU16 = 1;
inline constexpr int32_t kShardMagicU32 = 20240801;  // llm.c's uint32 shards
inline constexpr int32_t kShardVersionU32 = 7;
inline constexpr int32_t kShardVersionU32Legacy = 2;  // ours before llm.c's; magic 20240520
inline constexpr int64_t kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;
// Our addition in slots llm.c leaves zero (its readers look at slots 0-2 only): how many
// UTF-8 bytes of text the shard's tokens encode, for bits per byte. Slot 3 holds the tag
// ("byte" in ASCII, little-endian), slots 4 and 5 the count's low and high 32 bits. A
// shard without the tag (llm.c's own, or written without a count) has no known count.
inline constexpr int32_t kShardTextBytesTag = 0x65747962;
inline constexpr int64_t kShardTextBytesSlot = 3;

// How a file lays out its tokens (config key data.format).
enum class ShardFormat {
  kLlmc,       // "llm.c": the 1024-byte header above, then the tokens
  kRawUint16,  // "raw_uint16": no header, the whole file is uint16 tokens (nanoGPT's .bin)
};
// "llm.c" or "raw_uint16"; anything else throws naming `key`.
ShardFormat parse_shard_format(const std::string& name, const std::string& key);

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

// Writes a shard atomically (core/atomic_file.h), for tests and tools, with llm.c's header
// values. token_bytes: 2 (magic 20240520 version 1) or 4 (magic 20240801 version 7); values
// must fit. text_bytes >= 0: the UTF-8 bytes of text the tokens encode, recorded in the
// header (kShardTextBytesTag); -1: unknown, not recorded.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       int token_bytes = 2, int64_t text_bytes = -1);

class TokenShard {
 public:
  // Maps `path` and checks the header: every failure names the file and the field.
  explicit TokenShard(const std::string& path, ShardFormat format = ShardFormat::kLlmc);
  const TokenSpan& tokens() const { return tokens_; }
  int32_t magic() const { return magic_; }      // 0 for raw files
  int32_t version() const { return version_; }  // 0 for raw files
  // Where the tokens start in the file: kShardHeaderBytes, or 0 for raw files.
  int64_t header_bytes() const { return header_bytes_; }
  // The UTF-8 bytes of text the tokens encode, from the header; -1 when not recorded.
  int64_t text_bytes() const { return text_bytes_; }
  const std::string& path() const { return file_.path(); }

 private:
  core::MappedFile file_;
  TokenSpan tokens_;
  int32_t magic_ = 0;
  int32_t version_ = 0;
  int64_t header_bytes_ = 0;
  int64_t text_bytes_ = -1;
};

// Files matching a glob pattern, sorted; an empty list when nothing matches.
std::vector<std::string> glob_files(const std::string& pattern);

}  // namespace comba::train
