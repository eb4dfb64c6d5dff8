// libcomba_sentencepiece: SentencePiece behind the C interface of sentencepiece_abi.h.
// Built with hidden visibility; only the comba_spm_* functions are exported. Every entry
// point catches everything (no exception crosses the C boundary) and leaves the reason in
// a thread-local message.
#include "sentencepiece_abi.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#define COMBA_SPM_EXPORT extern "C" __attribute__((visibility("default")))

struct comba_spm_model {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

thread_local std::string last_error;

int fail(std::string message) {
  last_error = std::move(message);
  return 1;
}

// Runs `body` (returning 0 or an error code), turning exceptions into an error code.
template <typename Body>
int guarded(const Body& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(e.what());
  } catch (...) {
    return fail("unknown exception in SentencePiece");
  }
}

int check_id(const comba_spm_model* model, int id) {
  const int n = model->processor.GetPieceSize();
  if (id >= 0 && id < n) return 0;
  return fail("token id " + std::to_string(id) + " outside the vocabulary [0, " + std::to_string(n) + ")");
}

}  // namespace

COMBA_SPM_EXPORT int comba_spm_abi_version(void) { return COMBA_SPM_ABI_VERSION; }

COMBA_SPM_EXPORT const char* comba_spm_last_error(void) { return last_error.c_str(); }

COMBA_SPM_EXPORT comba_spm_model* comba_spm_load(const char* path) {
  comba_spm_model* out = nullptr;
  guarded([&] {
    auto model = std::make_unique<comba_spm_model>();
    const auto status = model->processor.Load(path);
    if (!status.ok()) return fail(status.ToString());
    out = model.release();  // the caller owns it until comba_spm_free
    return 0;
  });
  return out;
}

COMBA_SPM_EXPORT void comba_spm_free(comba_spm_model* model) {
  const std::unique_ptr<comba_spm_model> owned(model);  // made by comba_spm_load's make_unique
}

COMBA_SPM_EXPORT int comba_spm_encode(const comba_spm_model* model, const char* text, size_t size,
                                      comba_spm_ids_sink sink, void* context) {
  return guarded([&] {
    std::vector<int> ids;
    const auto status = model->processor.Encode(std::string_view(text, size), &ids);
    if (!status.ok()) return fail(status.ToString());
    sink(context, ids.data(), ids.size());
    return 0;
  });
}

COMBA_SPM_EXPORT int comba_spm_decode(const comba_spm_model* model, const int* ids, size_t count,
                                      comba_spm_text_sink sink, void* context) {
  return guarded([&] {
    for (size_t i = 0; i < count; ++i) {
      if (check_id(model, ids[i]) != 0) return 1;
    }
    std::string text;
    const auto status = model->processor.Decode(std::vector<int>(ids, ids + count), &text);
    if (!status.ok()) return fail(status.ToString());
    sink(context, text.data(), text.size());
    return 0;
  });
}

COMBA_SPM_EXPORT int comba_spm_piece_size(const comba_spm_model* model) { return model->processor.GetPieceSize(); }

COMBA_SPM_EXPORT int comba_spm_special_id(const comba_spm_model* model, int which) {
  const auto& p = model->processor;
  switch (which) {
    case COMBA_SPM_UNK: return p.unk_id();
    case COMBA_SPM_BOS: return p.bos_id();
    case COMBA_SPM_EOS: return p.eos_id();
    case COMBA_SPM_PAD: return p.pad_id();
    default: return -1;
  }
}

COMBA_SPM_EXPORT int comba_spm_id_to_piece(const comba_spm_model* model, int id, comba_spm_text_sink sink,
                                           void* context) {
  return guarded([&] {
    if (check_id(model, id) != 0) return 1;
    const std::string& piece = model->processor.IdToPiece(id);
    sink(context, piece.data(), piece.size());
    return 0;
  });
}

COMBA_SPM_EXPORT int comba_spm_piece_to_id(const comba_spm_model* model, const char* piece, size_t size) {
  return model->processor.PieceToId(std::string_view(piece, size));
}

COMBA_SPM_EXPORT int comba_spm_train(const char* args) {
  return guarded([&] {
    const auto status = sentencepiece::SentencePieceTrainer::Train(args);
    return status.ok() ? 0 : fail(status.ToString());
  });
}

// The definitions above must match the pointer types the loader casts dlsym's results to.
static_assert(std::is_same_v<decltype(&comba_spm_abi_version), comba_spm_abi_version_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_last_error), comba_spm_last_error_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_load), comba_spm_load_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_free), comba_spm_free_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_encode), comba_spm_encode_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_decode), comba_spm_decode_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_piece_size), comba_spm_piece_size_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_special_id), comba_spm_special_id_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_id_to_piece), comba_spm_id_to_piece_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_piece_to_id), comba_spm_piece_to_id_fn>);
static_assert(std::is_same_v<decltype(&comba_spm_train), comba_spm_train_fn>);
