// llm.c-style token shards: writer, header validation, token access.
#include "comba/train/data/token_shard.h"

#include <glob.h>

#include "comba/core/atomic_file.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace comba::train {

int64_t TokenSpan::at(int64_t i) const {
  const unsigned char* p = data + i * width;
  switch (width) {
    case 1: return *p;
    case 2: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    default: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
  }
}

void TokenSpan::copy(int64_t begin, int64_t count, int64_t* out) const {
  for (int64_t i = 0; i < count; ++i) out[i] = at(begin + i);
}

TokenSpan TokenSpan::slice(int64_t begin, int64_t end) const {
  return {data + begin * width, width, end - begin};
}

void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       int token_bytes, int64_t text_bytes) {
  if (token_bytes != 2 && token_bytes != 4) {
    throw std::invalid_argument("write_token_shard: token_bytes must be 2 or 4, got " +
                                std::to_string(token_bytes));
  }
  std::vector<int32_t> header(kShardHeaderInts, 0);
  header[0] = token_bytes == 2 ? kShardMagic : kShardMagicU32;
  header[1] = token_bytes == 2 ? kShardVersionU16 : kShardVersionU32;
  header[2] = static_cast<int32_t>(tokens.size());
  if (text_bytes >= 0) {
    const auto count = static_cast<uint64_t>(text_bytes);
    header[kShardTextBytesSlot] = kShardTextBytesTag;
    header[kShardTextBytesSlot + 1] = static_cast<int32_t>(static_cast<uint32_t>(count & 0xFFFFFFFFu));
    header[kShardTextBytesSlot + 2] = static_cast<int32_t>(static_cast<uint32_t>(count >> 32));
  }
  core::write_file_atomic(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(header.data()), kShardHeaderBytes);
    for (const uint32_t t : tokens) {
      if (token_bytes == 2) {
        if (t > 0xFFFFu) {
          throw std::invalid_argument("write_token_shard: token " + std::to_string(t) +
                                      " does not fit uint16; use token_bytes = 4");
        }
        const auto v = static_cast<uint16_t>(t);
        out.write(reinterpret_cast<const char*>(&v), 2);
      } else {
        out.write(reinterpret_cast<const char*>(&t), 4);
      }
    }
  });
}

ShardFormat parse_shard_format(const std::string& name, const std::string& key) {
  if (name == "llm.c") return ShardFormat::kLlmc;
  if (name == "raw_uint16") return ShardFormat::kRawUint16;
  throw std::invalid_argument(key + ": expected llm.c (1024-byte header) or raw_uint16 (no header, "
                              "uint16 tokens), got \"" + name + "\"");
}

namespace {
// A file without llm.c's header may be nanoGPT's header-less uint16 tokens.
constexpr const char* kRawHint = " (header-less uint16 tokens are read with data.format: raw_uint16)";
}  // namespace

TokenShard::TokenShard(const std::string& path, ShardFormat format)
    : file_(path, core::MappedFile::Access::kRandom) {  // windows at random offsets
  if (format == ShardFormat::kRawUint16) {
    if (file_.size() % 2 != 0) {
      throw std::runtime_error(path + ": data.format raw_uint16 expects an even number of bytes "
                               "(uint16 tokens), got " + std::to_string(file_.size()) + " bytes");
    }
    tokens_ = {file_.data(), 2, static_cast<int64_t>(file_.size() / 2)};
    return;
  }
  if (file_.size() < static_cast<size_t>(kShardHeaderBytes)) {
    throw std::runtime_error(path + ": not a token shard: " + std::to_string(file_.size()) +
                             " bytes, shorter than the " + std::to_string(kShardHeaderBytes) +
                             "-byte header" + kRawHint);
  }
  int32_t header[kShardTextBytesSlot + 3];
  std::memcpy(header, file_.data(), sizeof(header));
  magic_ = header[0];
  version_ = header[1];
  if (magic_ != kShardMagic && magic_ != kShardMagicU32) {
    throw std::runtime_error(path + ": header magic expected " + std::to_string(kShardMagic) +
                             " (uint16 tokens) or " + std::to_string(kShardMagicU32) +
                             " (uint32 tokens), got " + std::to_string(magic_) + kRawHint);
  }
  int width = 0;
  if (magic_ == kShardMagic) {
    if (version_ != kShardVersionU16 && version_ != kShardVersionU32Legacy) {
      throw std::runtime_error(path + ": header version expected 1 (uint16 tokens) or 2 (our earlier "
                               "uint32 tokens) with magic " + std::to_string(kShardMagic) + ", got " +
                               std::to_string(version_));
    }
    width = version_ == kShardVersionU16 ? 2 : 4;
  } else {
    if (version_ != kShardVersionU32) {
      throw std::runtime_error(path + ": header version expected 7 (uint32 tokens) with magic " +
                               std::to_string(kShardMagicU32) + ", got " + std::to_string(version_));
    }
    width = 4;
  }
  header_bytes_ = kShardHeaderBytes;
  const int64_t count = header[2];
  const auto expected = static_cast<size_t>(kShardHeaderBytes + count * width);
  if (count < 0 || file_.size() != expected) {
    throw std::runtime_error(path + ": header says " + std::to_string(count) + " tokens of " +
                             std::to_string(width) + " bytes (file of " + std::to_string(expected) +
                             " bytes), but the file has " + std::to_string(file_.size()) +
                             " bytes");
  }
  tokens_ = {file_.data() + kShardHeaderBytes, width, count};
  if (header[kShardTextBytesSlot] == kShardTextBytesTag) {
    const uint64_t low = static_cast<uint32_t>(header[kShardTextBytesSlot + 1]);
    const uint64_t high = static_cast<uint32_t>(header[kShardTextBytesSlot + 2]);
    const uint64_t bytes = (high << 32) | low;
    if (bytes > static_cast<uint64_t>(INT64_MAX)) {
      throw std::runtime_error(path + ": header text byte count (slots 4-5) is " + std::to_string(bytes) +
                               ", more than a file can hold");
    }
    text_bytes_ = static_cast<int64_t>(bytes);
  }
}

std::vector<std::string> glob_files(const std::string& pattern) {
  std::vector<std::string> out;
  if (pattern.empty()) return out;
  glob_t result{};
  if (::glob(pattern.c_str(), 0, nullptr, &result) == 0) {
    for (size_t i = 0; i < result.gl_pathc; ++i) out.emplace_back(result.gl_pathv[i]);
  }
  ::globfree(&result);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace comba::train
