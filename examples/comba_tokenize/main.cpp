// comba-tokenize: turns text files into the .bin token shards comba-train reads
// (data.kind: shards), with llm.c's shard headers, a SentencePiece tokenizer (or bytes,
// --bytes), EOS after every document, and progress on stderr. Documents are whole files,
// lines (--per-line), the pieces between a separator string (--separator "<|endoftext|>"),
// or one JSON object a line (--jsonl, its "text" field). Files are streamed in blocks, so
// corpora larger than memory work; documents are encoded by --threads threads, batch by
// batch, and written in input order whatever the thread count. Each shard holds at most
// --shard-tokens tokens. --val-tokens / --val-fraction hold out the first documents.
// Each shard's header also records the bytes of text it encodes (token_shard.h), so that
// comba-eval and eval.full_pass report bits per byte for it.
//
//   comba-tokenize --tokenizer tokenizer.model --out data/train [options] FILE...
//   -> data/train_000000.bin, data/train_000001.bin, ...
//   with a validation split: data/train_val_000000.bin ..., data/train_train_000000.bin ...
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "comba/core/cli.h"
#include "comba/core/file_util.h"
#include "comba/io/tokenizer.h"
#include "comba/train/data/token_shard.h"
#include "train_tokenizer.h"

namespace {

namespace cli = comba::cli;

// Encoding threads when --threads is not given: the machine's cores, at most 16.
int64_t default_threads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<int64_t>(cores == 0 ? 1 : cores, 1, 16);
}

struct Options {
  std::string tokenizer;
  std::string out;
  bool bytes = false;
  bool per_line = false;
  std::string separator;
  bool jsonl = false;
  std::string jsonl_field = "text";
  int64_t val_tokens = 0;
  double val_fraction = 0;
  int64_t threads = default_threads();
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
  auto* bytes = app.add_flag("--bytes", o.bytes,
                             "no tokenizer: tokens are the UTF-8 bytes, BOS 256, EOS 257 (data.kind bytes' vocabulary)");
  app.add_option("--tokenizer", o.tokenizer, "SentencePiece model (tokenizer.model), or a model folder holding one")
      ->excludes(bytes);
  app.add_option("--out", o.out, "shards are written as PREFIX_000000.bin, PREFIX_000001.bin, ...")->required();
  auto* per_line = app.add_flag("--per-line", o.per_line, "every line is a document (default: every file is one)");
  auto* separator = app.add_option("--separator", o.separator,
                                   "documents are separated by TEXT inside files (e.g. \"<|endoftext|>\")")
                        ->excludes(per_line);
  app.add_flag("--jsonl", o.jsonl, "every line is a JSON object; its --jsonl-field string is a document")
      ->excludes(per_line)
      ->excludes(separator);
  app.add_option("--jsonl-field", o.jsonl_field, "the field of a --jsonl line that holds the text");
  app.add_option("--shard-tokens", o.shard_tokens, "tokens per shard (the shard header is int32)")
      ->check(cli::integer_at_least(1, std::numeric_limits<int32_t>::max()));
  auto* val_tokens = app.add_option("--val-tokens", o.val_tokens,
                                    "hold out the first documents, at least N tokens, as PREFIX_val_*.bin "
                                    "(the rest: PREFIX_train_*.bin)")
                         ->check(cli::integer_at_least(1));
  app.add_option("--val-fraction", o.val_fraction,
                 "hold out the first documents, about F of the input bytes, as PREFIX_val_*.bin")
      ->check(cli::number_in(cli::open(0), cli::open(1)))
      ->excludes(val_tokens);
  app.add_option("--threads", o.threads,
                 "encoding threads (default: the machine's cores, at most 16; the output does not depend on it)")
      ->check(cli::integer_at_least(1, 1024));
  app.add_flag("--bos", o.bos, "also put BOS before every document");
  app.add_option("--eos-id", o.eos_id, "the separator token (default: the tokenizer's EOS id)")
      ->check(cli::integer_at_least(0));
  app.add_flag("--no-progress", o.no_progress, "no progress on stderr");
  app.add_option("FILE", o.files, "text files")->required()->check(readable_file());
  cli::add_debug_flag(app, o.debug);
  if (const auto status = cli::parse(app, argc, argv)) return status;
  if (!o.bytes && o.tokenizer.empty()) return cli::usage_error(app, "--tokenizer is required (or --bytes)");
  if (!o.jsonl && app.count("--jsonl-field") > 0) return cli::usage_error(app, "--jsonl-field needs --jsonl");
  if (comba::core::is_directory(o.tokenizer)) o.tokenizer = comba::core::join_path(o.tokenizer, "tokenizer.model");
  return std::nullopt;
}

// Collects tokens and writes a shard whenever shard_tokens are buffered. Each shard's
// header records the UTF-8 bytes of the text its tokens encode (for bits per byte); a
// document split over two shards gives each its share of bytes in proportion to tokens,
// so that the shards' counts add up to the input's exactly.
class ShardWriter {
 public:
  ShardWriter(std::string prefix, int64_t shard_tokens, int token_bytes)
      : prefix_(std::move(prefix)), shard_tokens_(shard_tokens), token_bytes_(token_bytes) {}

  // `ids`: one document's tokens, `text_bytes`: the bytes of its text.
  void add(const std::vector<int>& ids, int64_t text_bytes) {
    const auto n = static_cast<__int128>(ids.size());
    int64_t counted = 0;  // bytes of this document given to shards already written
    for (size_t i = 0; i < ids.size(); ++i) {
      buffer_.push_back(static_cast<uint32_t>(ids[i]));
      if (static_cast<int64_t>(buffer_.size()) == shard_tokens_) {
        const auto upto = static_cast<int64_t>(static_cast<__int128>(text_bytes) * static_cast<__int128>(i + 1) / n);
        buffer_bytes_ += upto - counted;
        counted = upto;
        flush();
      }
    }
    buffer_bytes_ += text_bytes - counted;
  }
  void flush() {
    if (buffer_.empty()) return;
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), "_%06d.bin", static_cast<int>(written_.size()));
    const std::string path = prefix_ + suffix;
    comba::train::write_token_shard(path, buffer_, token_bytes_, buffer_bytes_);
    written_.push_back(path);
    total_ += static_cast<int64_t>(buffer_.size());
    total_bytes_ += buffer_bytes_;
    buffer_.clear();
    buffer_bytes_ = 0;
  }
  int64_t tokens() const { return total_ + static_cast<int64_t>(buffer_.size()); }
  int64_t text_bytes() const { return total_bytes_ + buffer_bytes_; }
  const std::vector<std::string>& written() const { return written_; }

 private:
  std::string prefix_;
  int64_t shard_tokens_;
  int token_bytes_;
  std::vector<uint32_t> buffer_;
  int64_t buffer_bytes_ = 0;
  std::vector<std::string> written_;
  int64_t total_ = 0;
  int64_t total_bytes_ = 0;
};

// On a terminal, a bar redrawn in place; otherwise (a log file, a pipe) a plain line
// every few seconds. Both end with a final line.
class Progress {
 public:
  Progress(bool enabled, uint64_t total_bytes)
      : enabled_(enabled), tty_(::isatty(STDERR_FILENO) == 1), total_(total_bytes) {
    if (!tty_) last_ = start_;  // the first plain line after one period, not at 0 tokens
  }
  void update(uint64_t done_bytes, int64_t tokens, bool final = false) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < (tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(5000))) return;
    last_ = now;
    const double frac = total_ ? static_cast<double>(done_bytes) / static_cast<double>(total_) : 1.0;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? tokens / secs / 1e3 : 0.0;
    if (!tty_) {
      std::fprintf(stderr, "comba-tokenize: %5.1f%% %.1f/%.1f MB %lld tokens %.0fk tok/s\n", 100.0 * frac,
                   done_bytes / 1e6, total_ / 1e6, static_cast<long long>(tokens), rate);
      std::fflush(stderr);
      return;
    }
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(frac * kWidth);
    std::fprintf(stderr, "\r[%s%s] %5.1f%% %.1f/%.1f MB %lld tokens %.0fk tok/s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '-').c_str(), 100.0 * frac, done_bytes / 1e6, total_ / 1e6,
                 static_cast<long long>(tokens), rate);
    if (final) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  bool tty_;
  uint64_t total_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

// One --jsonl line: the string in `field`. Errors name file:line.
std::string jsonl_text(const std::string& line, const std::string& field, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(where + ": not a JSON line (" + e.what() + ")");
  }
  if (!j.is_object()) throw std::runtime_error(where + ": expected a JSON object, got " + std::string(j.type_name()));
  const auto it = j.find(field);
  if (it == j.end()) throw std::runtime_error(where + ": no field \"" + field + "\" (--jsonl-field)");
  if (!it->is_string()) {
    throw std::runtime_error(where + ": field \"" + field + "\" expected a string, got " +
                             std::string(it->type_name()));
  }
  return it->get<std::string>();
}

// A document waiting to be encoded, and where it starts in the input (for --val-fraction).
struct Document {
  std::string text;
  uint64_t start_byte = 0;
};

// Encodes a batch of documents on `threads` threads; ids[i] belongs to docs[i].
template <typename Encode>
std::vector<std::vector<int>> encode_all(const std::vector<Document>& docs, int64_t threads, const Encode& encode) {
  std::vector<std::vector<int>> ids(docs.size());
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  const auto work = [&] {
    try {
      while (!failed) {
        const size_t i = next++;
        if (i >= docs.size()) break;
        ids[i] = encode(docs[i].text);
      }
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  const auto n = static_cast<size_t>(std::min<int64_t>(threads, static_cast<int64_t>(docs.size())));
  if (n <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 0; t < n; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  if (error) std::rethrow_exception(error);
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  // Training a tokenizer is a mode of its own, with its own flags (train_tokenizer.cpp).
  if (comba::tokenize::wants_tokenizer_training(argc, argv)) return comba::tokenize::train_tokenizer_main(argc, argv);
  Options o;
  if (const auto status = parse(argc, argv, o)) return *status;
  try {
    std::optional<comba::io::Tokenizer> tok;
    int64_t eos = o.eos_id;
    int64_t bos = -1;
    int64_t max_id = 0;
    if (o.bytes) {
      // data.kind bytes' vocabulary (train/config/data_options.h: ByteVocab).
      if (eos < 0) eos = 257;
      bos = 256;
      max_id = std::max<int64_t>(258, eos);
    } else {
      if (!comba::io::Tokenizer::available()) {
        throw std::runtime_error("this build has no SentencePiece (install libsentencepiece-dev and rebuild), "
                                 "or pass --bytes");
      }
      tok.emplace(o.tokenizer);
      if (eos < 0) eos = tok->eos_id();
      if (eos < 0) throw std::runtime_error(o.tokenizer + ": the tokenizer defines no EOS; pass --eos-id");
      bos = tok->bos_id();
      if (o.bos && bos < 0) throw std::runtime_error(o.tokenizer + ": the tokenizer defines no BOS");
      max_id = std::max<int64_t>(tok->vocab_size() - 1, eos);
    }
    const int token_bytes = max_id <= 0xFFFF ? 2 : 4;
    if (const auto slash = o.out.find_last_of('/'); slash != std::string::npos && slash > 0) {
      comba::core::make_directories(o.out.substr(0, slash));
    }

    uint64_t total_bytes = 0;
    for (const auto& f : o.files) total_bytes += static_cast<uint64_t>(comba::core::file_size(f));
    const bool split = o.val_tokens > 0 || o.val_fraction > 0;
    ShardWriter train(split ? o.out + "_train" : o.out, o.shard_tokens, token_bytes);
    ShardWriter val(o.out + "_val", o.shard_tokens, token_bytes);
    const auto val_bytes = static_cast<uint64_t>(o.val_fraction * static_cast<double>(total_bytes));
    bool val_open = split;  // documents go to val, from the first, until it is full
    Progress progress(!o.no_progress, total_bytes);
    uint64_t done_bytes = 0;
    int64_t documents = 0;
    const auto encode = [&](const std::string& text) {
      std::vector<int> ids;
      ids.reserve(text.size() / 3 + 2);
      if (o.bos) ids.push_back(static_cast<int>(bos));
      if (o.bytes) {
        for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
      } else {
        const auto body = tok->encode(text);
        ids.insert(ids.end(), body.begin(), body.end());
      }
      ids.push_back(static_cast<int>(eos));
      return ids;
    };

    // Documents are gathered into batches of about kBatchBytes per thread, encoded in
    // parallel, then written in input order.
    constexpr size_t kBatchBytes = 1 << 20;
    const size_t batch_bytes = kBatchBytes * static_cast<size_t>(o.threads);
    std::vector<Document> batch;
    size_t batched = 0;
    const auto drain = [&] {
      const auto ids = encode_all(batch, o.threads, encode);
      for (size_t i = 0; i < batch.size(); ++i) {
        if (val_open) {
          // At least the first document, so that a small input still has a validation set.
          val_open = val.tokens() == 0 ||
                     (o.val_tokens > 0 ? val.tokens() < o.val_tokens : batch[i].start_byte < val_bytes);
        }
        (val_open ? val : train).add(ids[i], static_cast<int64_t>(batch[i].text.size()));
        if (val_open && o.val_tokens > 0 && val.tokens() >= o.val_tokens) val_open = false;
      }
      batch.clear();
      batched = 0;
      progress.update(done_bytes, train.tokens() + val.tokens());
    };
    const auto emit = [&](std::string doc, uint64_t start_byte) {
      // Empty documents (blank lines, doubled separators) would only add lone EOS tokens.
      if (doc.empty()) return;
      batched += doc.size();
      batch.push_back({std::move(doc), start_byte});
      ++documents;
      if (batched >= batch_bytes) drain();
    };

    constexpr size_t kBlock = 1 << 20;
    std::vector<char> block(kBlock);
    for (const auto& f : o.files) {
      std::ifstream in(f, std::ios::binary);
      if (!in) throw std::runtime_error(f + ": cannot open");
      std::string pending;  // text not yet closed by a separator
      uint64_t pending_start = done_bytes;  // input offset of pending[0]
      int64_t line = 0;
      const auto take = [&](std::string doc, uint64_t start) {
        if (o.jsonl) {
          ++line;
          if (!doc.empty() && doc.back() == '\r') doc.pop_back();
          if (doc.find_first_not_of(" \t") == std::string::npos) return;  // blank line
          emit(jsonl_text(doc, o.jsonl_field, f + ":" + std::to_string(line)), start);
          return;
        }
        if (o.per_line && !doc.empty() && doc.back() == '\r') doc.pop_back();
        emit(std::move(doc), start);
      };
      const std::string sep = o.per_line || o.jsonl ? std::string("\n") : o.separator;
      while (in) {
        in.read(block.data(), kBlock);
        const auto got = static_cast<size_t>(in.gcount());
        if (got == 0) break;
        pending.append(block.data(), got);
        done_bytes += got;
        if (!sep.empty()) {
          size_t start = 0, hit;
          while ((hit = pending.find(sep, start)) != std::string::npos) {
            take(pending.substr(start, hit - start), pending_start + start);
            start = hit + sep.size();
          }
          pending.erase(0, start);
          pending_start += start;
        }
        progress.update(done_bytes, train.tokens() + val.tokens());
      }
      if (!pending.empty()) take(std::move(pending), pending_start);
    }
    drain();
    train.flush();
    val.flush();
    progress.update(done_bytes, train.tokens() + val.tokens(), /*final=*/true);
    if (split && train.tokens() == 0) {
      throw std::runtime_error("the validation split took every document (" + std::to_string(val.tokens()) +
                               " tokens); nothing is left for training: lower --val-tokens / --val-fraction");
    }
    nlohmann::json summary = {{"documents", documents},
                              {"tokens", train.tokens() + val.tokens()},
                              {"text_bytes", train.text_bytes() + val.text_bytes()},
                              {"token_bytes", token_bytes},
                              {"eos_id", eos},
                              {"shards", train.written()}};
    if (split) {
      summary["train_tokens"] = train.tokens();
      summary["val_tokens"] = val.tokens();
      summary["train_text_bytes"] = train.text_bytes();
      summary["val_text_bytes"] = val.text_bytes();
      summary["val_shards"] = val.written();
    }
    std::cout << summary.dump() << "\n";
  } catch (const std::exception& e) {
    return cli::report_error("comba-tokenize", e, o.debug);
  }
  return 0;
}
