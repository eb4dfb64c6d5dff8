// SentencePiece tokenizers (tokenizer.model, the kind fla's released checkpoints ship),
// behind a torch-free interface. SentencePiece itself lives in a separate library,
// libcomba_sentencepiece, loaded on first use so that its symbols never meet LibTorch's
// (src/sentencepiece_abi.h says why); $COMBA_SENTENCEPIECE_LIBRARY names it explicitly.
// It is optional in the build: without it (or when it cannot be loaded) the class still
// exists, available() is false and constructing one throws saying why, so that programs
// and tests decide at run time instead of through #ifdefs of their own.
#pragma once
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

// Trains a SentencePiece model on a text file (one sentence per line) with SentencePiece's
// own trainer, writing <model_prefix>.model and .vocab. `model_type`: unigram, bpe, char,
// word. Throws when SentencePiece is unavailable or training fails.
void train_sentencepiece(const std::string& input_file, const std::string& model_prefix, int vocab_size,
                         const std::string& model_type = "unigram");

}  // namespace comba::io
