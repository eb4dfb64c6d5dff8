// Tokenizer over SentencePiece, reached only through libcomba_sentencepiece's C interface
// (sentencepiece_abi.h explains why SentencePiece is not linked here). Without that
// library every call explains why it is missing (see tokenizer.h).
#include "comba/io/tokenizer.h"

#include <new>
#include <sstream>
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

namespace {

void check_option(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("train_sentencepiece: " + message);
}

// SentencePieceTrainer::Train splits its argument string at spaces, and --input at commas.
void check_path(const std::string& path, const char* option, bool list) {
  check_option(!path.empty(), std::string(option) + ": expected a path, got an empty one");
  for (const char c : path) {
    const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r';
    check_option(!space && !(list && c == ','), std::string(option) + ": \"" + path + "\": SentencePiece's trainer " +
                                                   "cannot take a path with " + (space ? "whitespace" : "a comma"));
  }
}

}  // namespace

void train_sentencepiece(const TrainTokenizerOptions& o) {
  check_option(!o.input_files.empty(), "input_files: expected at least one file");
  for (const auto& f : o.input_files) check_path(f, "input_files", /*list=*/true);
  check_path(o.model_prefix, "model_prefix", /*list=*/false);
  check_option(o.vocab_size > 0, "vocab_size: expected > 0, got " + std::to_string(o.vocab_size));
  check_option(o.model_type == "unigram" || o.model_type == "bpe" || o.model_type == "char" || o.model_type == "word",
               "model_type: expected one of unigram, bpe, char, word, got \"" + o.model_type + "\"");
  check_option(o.input_sentence_size >= 0,
               "input_sentence_size: expected >= 0 (0: all), got " + std::to_string(o.input_sentence_size));
  check_option(o.character_coverage > 0.0 && o.character_coverage <= 1.0,
               "character_coverage: expected in (0, 1], got " + std::to_string(o.character_coverage));
  check_option(o.unk_id >= 0, "unk_id: expected >= 0 (SentencePiece needs <unk>), got " + std::to_string(o.unk_id));
  check_option(o.num_threads >= 1, "num_threads: expected >= 1, got " + std::to_string(o.num_threads));
  const std::vector<std::pair<const char*, int>> ids = {
      {"unk_id", o.unk_id}, {"bos_id", o.bos_id}, {"eos_id", o.eos_id}, {"pad_id", o.pad_id}};
  for (size_t i = 0; i < ids.size(); ++i) {
    check_option(ids[i].second >= -1 && ids[i].second < o.vocab_size,
                 std::string(ids[i].first) + ": expected -1 (none) or an id below vocab_size " +
                     std::to_string(o.vocab_size) + ", got " + std::to_string(ids[i].second));
    for (size_t j = 0; j < i; ++j) {
      check_option(ids[i].second < 0 || ids[i].second != ids[j].second,
                   std::string(ids[i].first) + " and " + ids[j].first + ": both " + std::to_string(ids[i].second) +
                       "; special ids must differ");
    }
  }
  const auto& lib = library("train_sentencepiece(" + o.model_prefix + ")");
  std::string inputs;
  for (const auto& f : o.input_files) inputs += (inputs.empty() ? "" : ",") + f;
  std::ostringstream args;
  args << "--input=" << inputs << " --model_prefix=" << o.model_prefix << " --vocab_size=" << o.vocab_size
       << " --model_type=" << o.model_type << " --character_coverage=" << o.character_coverage
       << " --byte_fallback=" << (o.byte_fallback ? "true" : "false") << " --unk_id=" << o.unk_id
       << " --bos_id=" << o.bos_id << " --eos_id=" << o.eos_id << " --pad_id=" << o.pad_id
       << " --num_threads=" << o.num_threads << " --minloglevel=2";
  // A sample of the corpus, drawn at random from all of it (SentencePiece reservoir-samples).
  if (o.input_sentence_size > 0) {
    args << " --input_sentence_size=" << o.input_sentence_size << " --shuffle_input_sentence=true";
  }
  if (lib.train(args.str().c_str()) != 0) {
    throw std::runtime_error("train_sentencepiece(" + o.model_prefix + "): " + lib.last_error());
  }
}

void train_sentencepiece(const std::string& input_file, const std::string& model_prefix, int vocab_size,
                         const std::string& model_type) {
  TrainTokenizerOptions options;
  options.input_files = {input_file};
  options.model_prefix = model_prefix;
  options.vocab_size = vocab_size;
  options.model_type = model_type;
  train_sentencepiece(options);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

}  // namespace comba::io
