// Tokenizer over SentencePiece, reached only through libcomba_sentencepiece's C interface
// (sentencepiece_abi.h explains why SentencePiece is not linked here). Without that
// library every call explains why it is missing (see tokenizer.h).
#include "comba/io/tokenizer.h"

#include <new>
#include <stdexcept>
#include <utility>

#include "sentencepiece_library.h"

namespace comba::io {

namespace {

const detail::SentencePieceLibrary& library(const std::string& what) {
  const auto* lib = detail::sentencepiece_library();
  if (lib == nullptr) throw std::runtime_error(what + ": " + detail::sentencepiece_unavailable_reason());
  return *lib;
}

// Where a sink copies a result to. Sinks run inside the library's call and must not throw
// (an exception cannot unwind through the other namespace's frames): a failure to copy is
// recorded and raised here once the call has returned.
template <typename Out>
struct Sink {
  Out value;
  bool failed = false;

  Out take() {
    if (failed) throw std::bad_alloc();
    return std::move(value);
  }
};

void assign_ids(void* context, const int* ids, size_t count) noexcept {
  auto* sink = static_cast<Sink<std::vector<int>>*>(context);
  try {
    sink->value.assign(ids, ids + count);
  } catch (...) {
    sink->failed = true;
  }
}

void assign_text(void* context, const char* text, size_t size) noexcept {
  auto* sink = static_cast<Sink<std::string>*>(context);
  try {
    sink->value.assign(text, size);
  } catch (...) {
    sink->failed = true;
  }
}

}  // namespace

struct Tokenizer::Impl {
  struct Free {
    const detail::SentencePieceLibrary* lib;
    void operator()(comba_spm_model* model) const { lib->free_model(model); }
  };

  explicit Impl(const detail::SentencePieceLibrary& library, comba_spm_model* loaded)
      : lib(&library), model(loaded, Free{&library}) {}

  const detail::SentencePieceLibrary* lib;
  std::unique_ptr<comba_spm_model, Free> model;

  [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(what + lib->last_error()); }
};

bool Tokenizer::available() { return detail::sentencepiece_library() != nullptr; }

std::string Tokenizer::unavailable_reason() { return detail::sentencepiece_unavailable_reason(); }

Tokenizer::Tokenizer(const std::string& model_path) : path_(model_path) {
  const auto& lib = library(model_path);
  comba_spm_model* model = lib.load(model_path.c_str());
  if (model == nullptr) {
    throw std::runtime_error(model_path + ": cannot load the SentencePiece model: " + lib.last_error());
  }
  impl_ = std::make_unique<Impl>(lib, model);
}

std::vector<int> Tokenizer::encode(const std::string& text) const {
  Sink<std::vector<int>> ids;
  if (impl_->lib->encode(impl_->model.get(), text.data(), text.size(), &assign_ids, &ids) != 0) {
    impl_->fail(path_ + ": encode failed: ");
  }
  return ids.take();
}

void Tokenizer::check_id(int id, const char* what) const {
  const int n = vocab_size();
  if (id < 0 || id >= n) {
    throw std::out_of_range(path_ + ": " + what + ": token id " + std::to_string(id) + " outside the vocabulary [0, " +
                            std::to_string(n) + ")");
  }
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  for (const int id : ids) check_id(id, "decode");
  Sink<std::string> text;
  if (impl_->lib->decode(impl_->model.get(), ids.data(), ids.size(), &assign_text, &text) != 0) {
    impl_->fail(path_ + ": decode failed: ");
  }
  return text.take();
}

std::string Tokenizer::id_to_piece(int id) const {
  check_id(id, "id_to_piece");
  Sink<std::string> piece;
  if (impl_->lib->id_to_piece(impl_->model.get(), id, &assign_text, &piece) != 0) {
    impl_->fail(path_ + ": id_to_piece failed: ");
  }
  return piece.take();
}

int Tokenizer::piece_to_id(const std::string& piece) const {
  return impl_->lib->piece_to_id(impl_->model.get(), piece.data(), piece.size());
}

int Tokenizer::vocab_size() const { return impl_->lib->piece_size(impl_->model.get()); }
int Tokenizer::bos_id() const { return impl_->lib->special_id(impl_->model.get(), COMBA_SPM_BOS); }
int Tokenizer::eos_id() const { return impl_->lib->special_id(impl_->model.get(), COMBA_SPM_EOS); }
int Tokenizer::pad_id() const { return impl_->lib->special_id(impl_->model.get(), COMBA_SPM_PAD); }
int Tokenizer::unk_id() const { return impl_->lib->special_id(impl_->model.get(), COMBA_SPM_UNK); }

void train_sentencepiece(const std::string& input_file, const std::string& model_prefix, int vocab_size,
                         const std::string& model_type) {
  const auto& lib = library("train_sentencepiece(" + input_file + ")");
  // Llama-style ids (unk 0, bos 1, eos 2), which is what fla's configs assume.
  const std::string args = "--input=" + input_file + " --model_prefix=" + model_prefix +
                           " --vocab_size=" + std::to_string(vocab_size) + " --model_type=" + model_type +
                           " --character_coverage=1.0 --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
                           " --minloglevel=2 --num_threads=1";
  if (lib.train(args.c_str()) != 0) {
    throw std::runtime_error("train_sentencepiece(" + input_file + "): " + lib.last_error());
  }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

}  // namespace comba::io
