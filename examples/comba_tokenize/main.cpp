// comba-tokenize: turns text files into the .bin token shards comba-train reads
// (data.kind: shards), with a SentencePiece tokenizer, EOS after every document, and a
// progress bar on stderr. Documents are whole files, lines (--per-line), or the pieces
// between a separator string (--separator "<|endoftext|>"). Files are streamed in blocks,
// so corpora larger than memory work; each shard holds at most --shard-tokens tokens.
//
//   comba-tokenize --tokenizer tokenizer.model --out data/train [options] FILE...
//   -> data/train_000000.bin, data/train_000001.bin, ...
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "comba/core/file_util.h"
#include "comba/io/tokenizer.h"
#include "comba/train/token_shard.h"

namespace {

constexpr const char* kUsage =
    "usage: comba-tokenize --tokenizer MODEL --out PREFIX [options] FILE...\n"
    "  --tokenizer MODEL     SentencePiece model (tokenizer.model), or a model folder holding one\n"
    "  --out PREFIX          shards are written as PREFIX_000000.bin, PREFIX_000001.bin, ...\n"
    "  --per-line            every line is a document (default: every file is one document)\n"
    "  --separator TEXT      documents are separated by TEXT inside files (e.g. \"<|endoftext|>\")\n"
    "  --shard-tokens N      tokens per shard (default 100000000)\n"
    "  --bos                 also put BOS before every document\n"
    "  --eos-id N            the separator token (default: the tokenizer's EOS id)\n"
    "  --no-progress         no progress bar\n";

struct Options {
  std::string tokenizer;
  std::string out;
  bool per_line = false;
  std::string separator;
  int64_t shard_tokens = 100'000'000;
  bool bos = false;
  int64_t eos_id = -1;
  bool progress = true;
  std::vector<std::string> files;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "comba-tokenize: " << message << "\n" << kUsage;
  std::exit(2);
}

int64_t parse_int(const std::string& flag, const std::string& value) {
  try {
    size_t used = 0;
    const int64_t v = std::stoll(value, &used);
    if (used == value.size()) return v;
  } catch (const std::exception&) {
  }
  usage_error("argument " + flag + " expected an integer, got \"" + value + "\"");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("argument " + a + " expects a value");
      return argv[++i];
    };
    if (a == "--tokenizer") o.tokenizer = value();
    else if (a == "--out") o.out = value();
    else if (a == "--per-line") o.per_line = true;
    else if (a == "--separator") o.separator = value();
    else if (a == "--shard-tokens") o.shard_tokens = parse_int(a, value());
    else if (a == "--bos") o.bos = true;
    else if (a == "--eos-id") o.eos_id = parse_int(a, value());
    else if (a == "--no-progress") o.progress = false;
    else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a.rfind("--", 0) == 0) usage_error("unknown argument " + a);
    else o.files.push_back(a);
  }
  if (o.tokenizer.empty()) usage_error("argument --tokenizer is required");
  if (o.out.empty()) usage_error("argument --out is required");
  if (o.files.empty()) usage_error("expected at least one text FILE");
  if (o.per_line && !o.separator.empty()) usage_error("--per-line and --separator exclude each other");
  if (o.shard_tokens <= 0 || o.shard_tokens > std::numeric_limits<int32_t>::max()) {
    usage_error("argument --shard-tokens expected 1 .. 2147483647 (the shard header is int32), got " +
                std::to_string(o.shard_tokens));
  }
  if (comba::core::is_directory(o.tokenizer)) o.tokenizer = comba::core::join_path(o.tokenizer, "tokenizer.model");
  for (const auto& f : o.files) {
    if (!comba::core::is_regular_file(f)) usage_error("input " + f + ": not a readable file");
  }
  return o;
}

// Collects tokens and writes a shard whenever shard_tokens are buffered.
class ShardWriter {
 public:
  ShardWriter(std::string prefix, int64_t shard_tokens, int token_bytes)
      : prefix_(std::move(prefix)), shard_tokens_(shard_tokens), token_bytes_(token_bytes) {}

  void add(const std::vector<int>& ids) {
    for (const int id : ids) {
      buffer_.push_back(static_cast<uint32_t>(id));
      if (static_cast<int64_t>(buffer_.size()) == shard_tokens_) flush();
    }
  }
  void flush() {
    if (buffer_.empty()) return;
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), "_%06d.bin", static_cast<int>(written_.size()));
    const std::string path = prefix_ + suffix;
    comba::train::write_token_shard(path, buffer_, token_bytes_);
    written_.push_back(path);
    total_ += static_cast<int64_t>(buffer_.size());
    buffer_.clear();
  }
  int64_t tokens() const { return total_ + static_cast<int64_t>(buffer_.size()); }
  const std::vector<std::string>& written() const { return written_; }

 private:
  std::string prefix_;
  int64_t shard_tokens_;
  int token_bytes_;
  std::vector<uint32_t> buffer_;
  std::vector<std::string> written_;
  int64_t total_ = 0;
};

class Progress {
 public:
  Progress(bool enabled, uint64_t total_bytes) : enabled_(enabled), total_(total_bytes) {}
  void update(uint64_t done_bytes, int64_t tokens, bool final = false) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double frac = total_ ? static_cast<double>(done_bytes) / static_cast<double>(total_) : 1.0;
    const double secs = std::chrono::duration<double>(now - start_).count();
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(frac * kWidth);
    std::fprintf(stderr, "\r[%s%s] %5.1f%% %.1f/%.1f MB %lld tokens %.0fk tok/s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '-').c_str(), 100.0 * frac, done_bytes / 1e6, total_ / 1e6,
                 static_cast<long long>(tokens), secs > 0 ? tokens / secs / 1e3 : 0.0);
    if (final) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  uint64_t total_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    if (!comba::io::Tokenizer::available()) {
      throw std::runtime_error("this build has no SentencePiece (install libsentencepiece-dev and rebuild)");
    }
    const comba::io::Tokenizer tok(o.tokenizer);
    const int64_t eos = o.eos_id >= 0 ? o.eos_id : tok.eos_id();
    if (eos < 0) throw std::runtime_error(o.tokenizer + ": the tokenizer defines no EOS; pass --eos-id");
    if (o.bos && tok.bos_id() < 0) throw std::runtime_error(o.tokenizer + ": the tokenizer defines no BOS");
    const int64_t max_id = std::max<int64_t>(tok.vocab_size() - 1, eos);
    const int token_bytes = max_id <= 0xFFFF ? 2 : 4;
    if (const auto slash = o.out.find_last_of('/'); slash != std::string::npos && slash > 0) {
      comba::core::make_directories(o.out.substr(0, slash));
    }

    uint64_t total_bytes = 0;
    for (const auto& f : o.files) total_bytes += static_cast<uint64_t>(comba::core::file_size(f));
    ShardWriter writer(o.out, o.shard_tokens, token_bytes);
    Progress progress(o.progress, total_bytes);
    uint64_t done_bytes = 0;
    int64_t documents = 0;
    const auto emit = [&](const std::string& doc) {
      std::vector<int> ids;
      if (o.bos) ids.push_back(tok.bos_id());
      const auto body = tok.encode(doc);
      ids.insert(ids.end(), body.begin(), body.end());
      ids.push_back(static_cast<int>(eos));
      writer.add(ids);
      ++documents;
    };

    constexpr size_t kBlock = 1 << 20;
    std::vector<char> block(kBlock);
    for (const auto& f : o.files) {
      std::ifstream in(f, std::ios::binary);
      if (!in) throw std::runtime_error(f + ": cannot open");
      std::string pending;  // text not yet closed by a separator
      const std::string sep = o.per_line ? std::string("\n") : o.separator;
      while (in) {
        in.read(block.data(), kBlock);
        const auto got = static_cast<size_t>(in.gcount());
        if (got == 0) break;
        pending.append(block.data(), got);
        done_bytes += got;
        if (!sep.empty()) {
          size_t start = 0, hit;
          while ((hit = pending.find(sep, start)) != std::string::npos) {
            std::string doc = pending.substr(start, hit - start);
            if (o.per_line && !doc.empty() && doc.back() == '\r') doc.pop_back();
            // Empty documents (blank lines, doubled separators) would only add lone EOS tokens.
            if (!doc.empty()) emit(doc);
            start = hit + sep.size();
          }
          pending.erase(0, start);
        }
        progress.update(done_bytes, writer.tokens());
      }
      if (!pending.empty()) emit(pending);
    }
    writer.flush();
    progress.update(done_bytes, writer.tokens(), /*final=*/true);
    const nlohmann::json summary = {{"documents", documents}, {"tokens", writer.tokens()}, {"token_bytes", token_bytes},
                                    {"eos_id", eos}, {"shards", writer.written()}};
    std::cout << summary.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "comba-tokenize: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
