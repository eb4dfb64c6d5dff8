// SentencePiece tokenizers (tokenizer.model, the kind fla's released checkpoints ship),
// behind a torch-free interface. SentencePiece itself lives in a separate library,
// libcomba_sentencepiece, loaded on first use so that its symbols never meet LibTorch's
// (src/sentencepiece_abi.h says why); $COMBA_SENTENCEPIECE_LIBRARY names it explicitly.
// It is optional in the build: without it (or when it cannot be loaded) the class still
// exists, available() is false and constructing one throws saying why, so that programs
// and tests decide at run time instead of through #ifdefs of their own.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace comba::io {

class Tokenizer {
 public:
  // True when SentencePiece support is built and loads.
  static bool available();
  // Why available() is false ("" when it is true).
  static std::string unavailable_reason();

  // Loads a SentencePiece model file; throws std::runtime_error naming the file.
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Pieces' ids, without BOS/EOS (callers add those where the model expects them).
  std::vector<int> encode(const std::string& text) const;
  // Throws std::out_of_range naming an id outside [0, vocab_size()).
  std::string decode(const std::vector<int>& ids) const;
  std::string id_to_piece(int id) const;  // throws std::out_of_range like decode
  int piece_to_id(const std::string& piece) const;  // unk_id() for a piece not in the vocabulary

  int vocab_size() const;
  int bos_id() const;  // -1 when the model defines none
  int eos_id() const;
  int pad_id() const;
  int unk_id() const;
  const std::string& path() const { return path_; }

 private:
  void check_id(int id, const char* what) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

// What SentencePiece's trainer is asked for (train_sentencepiece below).
struct TrainTokenizerOptions {
  std::vector<std::string> input_files;  // text, one sentence per line
  std::string model_prefix;              // writes <model_prefix>.model and .vocab
  int vocab_size = 8000;
  std::string model_type = "unigram";    // unigram, bpe, char or word
  // Train on this many sentences sampled from the input (0: every sentence), so that a
  // corpus larger than memory can be used.
  int64_t input_sentence_size = 0;
  // Characters outside the vocabulary become their UTF-8 bytes (<0x..> pieces) instead
  // of <unk>: every text round-trips.
  bool byte_fallback = false;
  double character_coverage = 1.0;
  // Special ids; Llama-style defaults (unk 0, bos 1, eos 2, no pad), which fla's configs
  // (bos_token_id 1, eos_token_id 2) assume. -1: none (not for unk).
  int unk_id = 0;
  int bos_id = 1;
  int eos_id = 2;
  int pad_id = -1;
  int num_threads = 1;
};

// Trains a SentencePiece model with SentencePiece's own trainer. Throws
// std::invalid_argument naming the option for bad options (SentencePiece's argument string
// cannot carry whitespace in paths, or commas in input paths), std::runtime_error when
// SentencePiece is unavailable or training fails.
void train_sentencepiece(const TrainTokenizerOptions& options);

// One input file, Llama-style ids, one thread.
void train_sentencepiece(const std::string& input_file, const std::string& model_prefix, int vocab_size,
                         const std::string& model_type = "unigram");

}  // namespace comba::io
