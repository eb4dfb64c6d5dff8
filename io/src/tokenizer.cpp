// Tokenizer over SentencePiece when the build has it (COMBA_HAS_SENTENCEPIECE), and a
// stand-in that explains itself when it does not (see tokenizer.h).
#include "comba/io/tokenizer.h"

#include <stdexcept>

#ifdef COMBA_HAS_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

namespace comba::io {

#ifdef COMBA_HAS_SENTENCEPIECE

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

bool Tokenizer::available() { return true; }

Tokenizer::Tokenizer(const std::string& model_path) : impl_(std::make_unique<Impl>()), path_(model_path) {
  const auto status = impl_->processor.Load(model_path);
  if (!status.ok()) {
    throw std::runtime_error(model_path + ": cannot load the SentencePiece model: " + status.ToString());
  }
}

std::vector<int> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = impl_->processor.Encode(text, &ids);
  if (!status.ok()) throw std::runtime_error(path_ + ": encode failed: " + status.ToString());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  const int n = impl_->processor.GetPieceSize();
  for (const int id : ids) {
    // SentencePiece aborts the process on an out-of-range id: check first.
    if (id < 0 || id >= n) {
      throw std::out_of_range(path_ + ": decode: token id " + std::to_string(id) + " outside the vocabulary [0, " +
                              std::to_string(n) + ")");
    }
  }
  std::string text;
  const auto status = impl_->processor.Decode(ids, &text);
  if (!status.ok()) throw std::runtime_error(path_ + ": decode failed: " + status.ToString());
  return text;
}

int Tokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }
int Tokenizer::bos_id() const { return impl_->processor.bos_id(); }
int Tokenizer::eos_id() const { return impl_->processor.eos_id(); }
int Tokenizer::pad_id() const { return impl_->processor.pad_id(); }
int Tokenizer::unk_id() const { return impl_->processor.unk_id(); }

void train_sentencepiece(const std::string& input_file, const std::string& model_prefix, int vocab_size,
                         const std::string& model_type) {
  // Llama-style ids (unk 0, bos 1, eos 2), which is what fla's configs assume.
  const std::string args = "--input=" + input_file + " --model_prefix=" + model_prefix +
                           " --vocab_size=" + std::to_string(vocab_size) + " --model_type=" + model_type +
                           " --character_coverage=1.0 --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
                           " --minloglevel=2 --num_threads=1";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    throw std::runtime_error("train_sentencepiece(" + input_file + "): " + status.ToString());
  }
}

#else

struct Tokenizer::Impl {};

namespace {
[[noreturn]] void unavailable(const std::string& what) {
  throw std::runtime_error(what + ": this build has no SentencePiece (install libsentencepiece-dev and reconfigure)");
}
}  // namespace

bool Tokenizer::available() { return false; }
Tokenizer::Tokenizer(const std::string& model_path) : path_(model_path) { unavailable(model_path); }
std::vector<int> Tokenizer::encode(const std::string&) const { unavailable(path_); }
std::string Tokenizer::decode(const std::vector<int>&) const { unavailable(path_); }
int Tokenizer::vocab_size() const { unavailable(path_); }
int Tokenizer::bos_id() const { unavailable(path_); }
int Tokenizer::eos_id() const { unavailable(path_); }
int Tokenizer::pad_id() const { unavailable(path_); }
int Tokenizer::unk_id() const { unavailable(path_); }
void train_sentencepiece(const std::string& input_file, const std::string&, int, const std::string&) {
  unavailable(input_file);
}

#endif

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

}  // namespace comba::io
