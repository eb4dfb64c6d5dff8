// What the data component needs to know: where tokens come from (a built-in task, token
// shards, the user's text as bytes, or noise for benchmarks) and how batches are shaped.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace comba::train {

// Multi-query associative recall: key/value pairs, then queried keys whose values must
// be recalled. Token 0 pads; keys are 1..key_vocab, values follow the keys.
struct RecallOptions {
  int64_t num_pairs = 8;
  int64_t num_queries = 8;
  int64_t key_vocab = 32;
  int64_t value_vocab = 32;
  // Smallest model vocabulary that holds every token of the task.
  int64_t vocab_needed() const { return 1 + key_vocab + value_vocab; }
};

struct DataOptions {
  std::string kind = "recall";  // recall | shards | bytes | random
  RecallOptions recall;
  // shards: glob patterns of .bin files for training and evaluation.
  std::string train_files;
  std::string val_files;
  // shards: "llm.c" (1024-byte header: uint16 or uint32 tokens) or "raw_uint16" (no
  // header, uint16 tokens: nanoGPT's train.bin / val.bin).
  std::string format = "llm.c";
  // shards: pack documents separated by eos_id with cu_seqlens so that none sees another.
  bool pack_documents = false;
  std::optional<int64_t> eos_id;  // null: the model's eos_token_id
  // random: an EOS every random_doc_len tokens (0: none); with pack_documents each
  // micro-batch is one row of documents of that length, separated by cu_seqlens.
  int64_t random_doc_len = 0;
  // bytes: glob of text files; the last val_fraction of every file is held out.
  std::string text_files;
  double val_fraction = 0.1;
  // Batches produced ahead of the loop by the background thread.
  int64_t prefetch = 4;
};

struct BatchOptions {
  int64_t micro_batch_size = 8;
  int64_t seq_len = 128;
  int64_t grad_accum_steps = 1;
  int64_t tokens_per_step() const { return micro_batch_size * seq_len * grad_accum_steps; }
};

// Byte-level vocabulary: the 256 byte values, then these specials.
struct ByteVocab {
  static constexpr int64_t kBos = 256;
  static constexpr int64_t kEos = 257;
  static constexpr int64_t kPad = 258;
  static constexpr int64_t kSize = 259;
};

}  // namespace comba::train
