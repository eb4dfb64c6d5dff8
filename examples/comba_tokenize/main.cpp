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
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "comba/core/cli.h"
#include "comba/core/file_util.h"
#include "comba/io/tokenizer.h"
#include "comba/train/data/token_shard.h"
#include "train_tokenizer.h"

namespace {

namespace cli = comba::cli;

struct Options {
  std::string tokenizer;
  std::string out;
  bool per_line = false;
  std::string separator;
  int64_t shard_tokens = 100'000'000;
  bool bos = false;
  int64_t eos_id = -1;  // -1: the tokenizer's EOS id
  bool no_progress = false;
  bool debug = false;
  std::vector<std::string> files;
};

// An input text file: there and a regular file.
CLI::Validator readable_file() {
  return CLI::Validator(
      [](std::string& path) -> std::string {
        return comba::core::is_regular_file(path) ? std::string() : path + ": not a readable file";
      },
      "", "FILE");
}

std::optional<int> parse(int argc, char** argv, Options& o) {
  CLI::App app{"Turns text files into the token shards comba-train reads (data.kind: shards).", "comba-tokenize"};
  cli::configure(app);
  app.add_option("--tokenizer", o.tokenizer, "SentencePiece model (tokenizer.model), or a model folder holding one")
      ->required();
  app.add_option("--out", o.out, "shards are written as PREFIX_000000.bin, PREFIX_000001.bin, ...")->required();
  auto* per_line = app.add_flag("--per-line", o.per_line, "every line is a document (default: every file is one)");
  app.add_option("--separator", o.separator, "documents are separated by TEXT inside files (e.g. \"<|endoftext|>\")")
      ->excludes(per_line);
  app.add_option("--shard-tokens", o.shard_tokens, "tokens per shard (the shard header is int32)")
      ->check(cli::integer_at_least(1, std::numeric_limits<int32_t>::max()));
  app.add_flag("--bos", o.bos, "also put BOS before every document");
  app.add_option("--eos-id", o.eos_id, "the separator token (default: the tokenizer's EOS id)")
      ->check(cli::integer_at_least(0));
  app.add_flag("--no-progress", o.no_progress, "no progress bar");
  app.add_option("FILE", o.files, "text files")->required()->check(readable_file());
  cli::add_debug_flag(app, o.debug);
  if (const auto status = cli::parse(app, argc, argv)) return status;
  if (comba::core::is_directory(o.tokenizer)) o.tokenizer = comba::core::join_path(o.tokenizer, "tokenizer.model");
  return std::nullopt;
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
  // Training a tokenizer is a mode of its own, with its own flags (train_tokenizer.cpp).
  if (comba::tokenize::wants_tokenizer_training(argc, argv)) return comba::tokenize::train_tokenizer_main(argc, argv);
  Options o;
  if (const auto status = parse(argc, argv, o)) return *status;
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
    Progress progress(!o.no_progress, total_bytes);
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
    return cli::report_error("comba-tokenize", e, o.debug);
  }
  return 0;
}
