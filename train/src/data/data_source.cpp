// The four data sources: the built-in recall task, token shards (llm.c's or raw uint16), the user's text as
// bytes, and uniform noise (benchmarks). Shards and bytes share one window sampler.
#include "comba/train/data/data_source.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "comba/core/file_util.h"
#include "comba/core/mapped_file.h"
#include "comba/nn/labels.h"
#include "comba/train/data/packing.h"
#include "comba/train/data/recall_task.h"
#include "comba/train/rng.h"
#include "comba/train/data/token_shard.h"

namespace comba::train {
namespace {

class RecallSource final : public DataSource {
 public:
  RecallSource(RecallOptions recall, BatchOptions batch, uint64_t seed)
      : recall_(recall), batch_(batch), seed_(seed) {}

  Batch train_batch(int64_t index) const override { return make(DataStream::train, index); }
  Batch eval_batch(int64_t index) const override { return make(DataStream::eval, index); }
  bool reports_accuracy() const override { return true; }
  std::string describe() const override {
    return "associative recall: " + std::to_string(recall_.num_pairs) + " pairs, " +
           std::to_string(recall_.num_queries) + " queries, chance accuracy 1/" +
           std::to_string(recall_.num_pairs);
  }

 private:
  Batch make(DataStream stream, int64_t index) const {
    CounterRng rng(seed_, static_cast<uint64_t>(stream), static_cast<uint64_t>(index));
    const int64_t rows = batch_.micro_batch_size;
    const int64_t cols = batch_.seq_len;
    std::vector<int64_t> ids;
    std::vector<int64_t> labels;
    ids.reserve(rows * cols);
    labels.reserve(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      const TokenSequence seq = make_recall_sequence(recall_, cols, rng);
      ids.insert(ids.end(), seq.input_ids.begin(), seq.input_ids.end());
      labels.insert(labels.end(), seq.labels.begin(), seq.labels.end());
    }
    return make_batch(ids, labels, rows, cols);
  }

  RecallOptions recall_;
  BatchOptions batch_;
  uint64_t seed_;
};

class RandomSource final : public DataSource {
 public:
  RandomSource(BatchOptions batch, uint64_t seed, int64_t vocab, int64_t doc_len, bool pack, int64_t eos)
      : batch_(batch), seed_(seed), vocab_(vocab), doc_len_(doc_len), pack_(pack), eos_(eos) {}
  Batch train_batch(int64_t index) const override { return make(DataStream::train, index); }
  Batch eval_batch(int64_t index) const override { return make(DataStream::eval, index); }
  std::string describe() const override {
    return "uniform random tokens over " + std::to_string(vocab_) + " ids (for benchmarks)";
  }

 private:
  Batch make(DataStream stream, int64_t index) const {
    CounterRng rng(seed_, static_cast<uint64_t>(stream), static_cast<uint64_t>(index));
    std::vector<int64_t> ids(batch_.micro_batch_size * batch_.seq_len);
    for (auto& t : ids) t = static_cast<int64_t>(rng.below(vocab_));
    if (doc_len_ > 0) {
      // EOS exactly at each document's end and nowhere else (a drawn EOS would split one).
      for (auto& t : ids) {
        if (t == eos_) t = (t + 1) % vocab_;
      }
      for (size_t i = static_cast<size_t>(doc_len_ - 1); i < ids.size(); i += static_cast<size_t>(doc_len_)) {
        ids[i] = eos_;
      }
    }
    if (pack_) {
      const PackedWindow packed = pack_documents(ids, eos_);
      return make_batch(ids, packed.labels, 1, static_cast<int64_t>(ids.size()), packed.cu_seqlens);
    }
    return make_batch(ids, ids, batch_.micro_batch_size, batch_.seq_len);
  }
  BatchOptions batch_;
  uint64_t seed_;
  int64_t vocab_;
  int64_t doc_len_;
  bool pack_;
  int64_t eos_;
};

// Where a span's tokens lie, for messages: the file, and the token index and byte offset
// of the span's first token in it.
struct SpanOrigin {
  std::string file;
  int64_t first_token = 0;
  int64_t first_byte = 0;
};

// Random windows over a set of token spans (shard files or byte ranges of text files),
// a span chosen with probability proportional to its length.
class WindowSampler {
 public:
  // A sampled window: its span, the index of its first token there, and how many tokens
  // are real (the rest is padding).
  struct Window {
    size_t span = 0;
    int64_t start = 0;
    int64_t real = 0;
  };

  // `key` names the config key the files came from.
  WindowSampler(std::string key, std::vector<TokenSpan> spans, std::vector<SpanOrigin> origins)
      : key_(std::move(key)), spans_(std::move(spans)), origins_(std::move(origins)) {
    for (const auto& s : spans_) total_ += s.size;
  }
  int64_t total() const { return total_; }
  const std::vector<TokenSpan>& spans() const { return spans_; }
  const std::vector<SpanOrigin>& origins() const { return origins_; }

  // `length` tokens from one span; short spans are padded with `pad`.
  Window sample(CounterRng& rng, int64_t length, int64_t pad, int64_t* out) const {
    auto pick = static_cast<int64_t>(rng.below(static_cast<uint64_t>(total_)));
    size_t which = 0;
    while (pick >= spans_[which].size) pick -= spans_[which++].size;
    const TokenSpan& span = spans_[which];
    const int64_t real = std::min(length, span.size);
    const int64_t start =
        static_cast<int64_t>(rng.below(static_cast<uint64_t>(span.size - real + 1)));
    span.copy(start, real, out);
    for (int64_t i = real; i < length; ++i) out[i] = pad;
    return {which, start, real};
  }

  // Token ids at or past the model's vocabulary would fail deep inside the embedding, and
  // only in the batch that happens to hold one: each window is checked as it is built (a
  // max over host memory, cheap next to the step). Throws naming the file and the offset.
  void check_ids(const Window& w, const int64_t* ids, int64_t vocab_size) const {
    if (w.real == 0 || *std::max_element(ids, ids + w.real) < vocab_size) return;
    const int64_t i = std::find_if(ids, ids + w.real, [&](int64_t t) { return t >= vocab_size; }) - ids;
    const SpanOrigin& origin = origins_[w.span];
    const int64_t token = origin.first_token + w.start + i;
    const int64_t byte = origin.first_byte + (w.start + i) * spans_[w.span].width;
    throw std::runtime_error(key_ + ": " + origin.file + ": token " + std::to_string(token) +
                             " (byte offset " + std::to_string(byte) + ") is id " +
                             std::to_string(ids[i]) + ", outside the model's vocabulary: " +
                             "model.vocab_size is " + std::to_string(vocab_size) +
                             " (ids must be < " + std::to_string(vocab_size) + ")");
  }

 private:
  std::string key_;
  std::vector<TokenSpan> spans_;
  std::vector<SpanOrigin> origins_;
  int64_t total_ = 0;
};

class CorpusSource final : public DataSource {
 public:
  // vocab_size: ids are checked against it (0: the data cannot exceed it, no check).
  CorpusSource(std::vector<core::MappedFile> files, std::vector<TokenShard> shards,
               WindowSampler train, WindowSampler eval, BatchOptions batch, uint64_t seed,
               bool pack, int64_t eos, int64_t pad, int64_t vocab_size, std::string what)
      : files_(std::move(files)), shards_(std::move(shards)), train_(std::move(train)),
        eval_(std::move(eval)), batch_(batch), seed_(seed), pack_(pack), eos_(eos), pad_(pad),
        vocab_size_(vocab_size), what_(std::move(what)) {}

  Batch train_batch(int64_t index) const override {
    return make(train_, DataStream::train, index);
  }
  Batch eval_batch(int64_t index) const override { return make(eval_, DataStream::eval, index); }
  ValidationSet validation_set() const override {
    ValidationSet set;
    set.spans = eval_.spans();
    for (const auto& o : eval_.origins()) set.names.push_back(o.file);
    // One-byte spans are text read as bytes (shards hold 2 or 4 bytes per token).
    set.bytes = std::all_of(set.spans.begin(), set.spans.end(), [](const TokenSpan& t) { return t.width == 1; });
    if (set.bytes) {
      for (const auto& span : set.spans) set.text_bytes.push_back(span.size);
    } else if (shards_.size() >= set.spans.size()) {
      // The validation shards are the last ones (make_shard_source opens train files first).
      const size_t first = shards_.size() - set.spans.size();
      for (size_t i = first; i < shards_.size(); ++i) set.text_bytes.push_back(shards_[i].text_bytes());
    }
    return set;
  }
  std::string describe() const override { return what_; }

 private:
  Batch make(const WindowSampler& sampler, DataStream stream, int64_t index) const {
    CounterRng rng(seed_, static_cast<uint64_t>(stream), static_cast<uint64_t>(index));
    const int64_t rows = batch_.micro_batch_size;
    const int64_t cols = batch_.seq_len;
    std::vector<int64_t> ids(rows * cols);
    if (pack_) {
      // One row of rows * cols tokens, documents separated by cu_seqlens.
      const auto window = sampler.sample(rng, rows * cols, pad_, ids.data());
      if (vocab_size_ > 0) sampler.check_ids(window, ids.data(), vocab_size_);
      const PackedWindow packed = pack_documents(ids, eos_);
      return make_batch(ids, packed.labels, 1, rows * cols, packed.cu_seqlens);
    }
    std::vector<int64_t> labels(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t* row = ids.data() + r * cols;
      const auto window = sampler.sample(rng, cols, pad_, row);
      if (vocab_size_ > 0) sampler.check_ids(window, row, vocab_size_);
      const int64_t real = window.real;
      for (int64_t c = 0; c < cols; ++c) labels[r * cols + c] = c < real ? row[c] : nn::kIgnoreIndex;
    }
    return make_batch(ids, labels, rows, cols);
  }

  std::vector<core::MappedFile> files_;    // keep byte files mapped
  std::vector<TokenShard> shards_;   // keep shards mapped
  WindowSampler train_;
  WindowSampler eval_;
  BatchOptions batch_;
  uint64_t seed_;
  bool pack_;
  int64_t eos_;
  int64_t pad_;
  int64_t vocab_size_;
  std::string what_;
};

std::unique_ptr<DataSource> make_shard_source(const DataOptions& options,
                                              const BatchOptions& batch, uint64_t seed,
                                              int64_t vocab_size, int64_t eos_id) {
  if (eos_id < 0 || eos_id >= vocab_size) {
    throw std::invalid_argument(
        std::string(options.eos_id ? "data.eos_id" : "data.eos_id (null: model.eos_token_id)") +
        ": expected a token id in [0, model.vocab_size = " + std::to_string(vocab_size) +
        "), got " + std::to_string(eos_id));
  }
  const auto train_paths = glob_files(options.train_files);
  if (train_paths.empty()) {
    throw std::runtime_error("data.train_files: no file matches \"" + options.train_files + "\"");
  }
  auto val_paths = glob_files(options.val_files);
  if (val_paths.empty()) {
    throw std::runtime_error("data.val_files: no file matches \"" + options.val_files + "\"");
  }
  const ShardFormat format = parse_shard_format(options.format, "data.format");
  std::vector<TokenShard> shards;
  std::vector<TokenSpan> train_spans;
  std::vector<TokenSpan> val_spans;
  std::vector<SpanOrigin> train_origins;
  std::vector<SpanOrigin> val_origins;
  for (const auto& p : train_paths) {
    core::require_regular_file(p, "data.train_files");
    shards.emplace_back(p, format);
  }
  for (const auto& p : val_paths) {
    core::require_regular_file(p, "data.val_files");
    shards.emplace_back(p, format);
  }
  for (size_t i = 0; i < shards.size(); ++i) {
    const bool is_train = i < train_paths.size();
    (is_train ? train_spans : val_spans).push_back(shards[i].tokens());
    (is_train ? train_origins : val_origins).push_back({shards[i].path(), 0, shards[i].header_bytes()});
  }
  WindowSampler train("data.train_files", train_spans, train_origins);
  WindowSampler eval("data.val_files", val_spans, val_origins);
  if (train.total() == 0 || eval.total() == 0) {
    throw std::runtime_error("data: the shards of data.train_files and data.val_files must hold "
                             "tokens; one set is empty");
  }
  const std::string what = std::string(format == ShardFormat::kRawUint16 ? "raw uint16 token files: " : "token shards: ") +
                           std::to_string(train_paths.size()) + " train files (" +
                           std::to_string(train.total()) + " tokens), " +
                           std::to_string(val_paths.size()) + " val files (" +
                           std::to_string(eval.total()) + " tokens)" +
                           (options.pack_documents ? ", documents packed" : "");
  return std::make_unique<CorpusSource>(std::vector<core::MappedFile>{}, std::move(shards),
                                        std::move(train), std::move(eval), batch, seed,
                                        options.pack_documents, eos_id, eos_id, vocab_size, what);
}

std::unique_ptr<DataSource> make_byte_source(const DataOptions& options,
                                             const BatchOptions& batch, uint64_t seed) {
  const auto paths = glob_files(options.text_files);
  if (paths.empty()) {
    throw std::runtime_error("data.text_files: no file matches \"" + options.text_files + "\"");
  }
  std::vector<core::MappedFile> files;
  std::vector<TokenSpan> train_spans;
  std::vector<TokenSpan> val_spans;
  std::vector<SpanOrigin> train_origins;
  std::vector<SpanOrigin> val_origins;
  for (const auto& p : paths) {
    // Before mapping: a FIFO would block open(), a device maps nothing useful.
    core::require_regular_file(p, "data.text_files");
    files.emplace_back(p, core::MappedFile::Access::kRandom);  // windows at random offsets
    const TokenSpan all{files.back().data(), 1, static_cast<int64_t>(files.back().size())};
    if (all.size == 0) continue;
    const auto held_out = static_cast<int64_t>(options.val_fraction * static_cast<double>(all.size));
    const int64_t split = std::max<int64_t>(1, all.size - held_out);
    train_spans.push_back(all.slice(0, split));
    train_origins.push_back({p, 0, 0});
    if (split < all.size) {
      val_spans.push_back(all.slice(split, all.size));
      val_origins.push_back({p, split, split});
    }
  }
  if (train_spans.empty()) {
    throw std::runtime_error("data.text_files: every file matching \"" + options.text_files +
                             "\" is empty");
  }
  if (val_spans.empty()) {  // too little text to hold any out
    val_spans = train_spans;
    val_origins = train_origins;
  }
  WindowSampler train("data.text_files", train_spans, train_origins);
  WindowSampler eval("data.text_files", val_spans, val_origins);
  const std::string what = "bytes of " + std::to_string(paths.size()) + " text files (" +
                           std::to_string(train.total()) + " train, " +
                           std::to_string(eval.total()) + " val bytes)";
  return std::make_unique<CorpusSource>(std::move(files), std::vector<TokenShard>{},
                                        std::move(train), std::move(eval), batch, seed,
                                        /*pack=*/false, ByteVocab::kEos, ByteVocab::kPad,
                                        /*vocab_size=*/0, what);  // bytes < ByteVocab::kSize
}

}  // namespace

std::unique_ptr<DataSource> make_data_source(const DataOptions& options,
                                             const BatchOptions& batch, uint64_t seed,
                                             int64_t vocab_size, int64_t eos_id) {
  if (options.kind == "recall") {
    if (vocab_size < options.recall.vocab_needed()) {
      throw std::invalid_argument("model.vocab_size: the recall task needs at least " +
                                  std::to_string(options.recall.vocab_needed()) + ", got " +
                                  std::to_string(vocab_size));
    }
    return std::make_unique<RecallSource>(options.recall, batch, seed);
  }
  if (options.kind == "random") {
    return std::make_unique<RandomSource>(batch, seed, vocab_size, options.random_doc_len, options.pack_documents,
                                          options.eos_id.value_or(eos_id));
  }
  if (options.kind == "shards") {
    return make_shard_source(options, batch, seed, vocab_size, options.eos_id.value_or(eos_id));
  }
  if (options.kind == "bytes") {
    if (vocab_size < ByteVocab::kSize) {
      throw std::invalid_argument("model.vocab_size: byte-level data needs at least " +
                                  std::to_string(ByteVocab::kSize) + ", got " +
                                  std::to_string(vocab_size));
    }
    return make_byte_source(options, batch, seed);
  }
  throw std::invalid_argument("data.kind: expected one of recall, shards, bytes, random, got \"" +
                              options.kind + "\"");
}

}  // namespace comba::train
