// Finds and loads libcomba_sentencepiece (sentencepiece_abi.h) once per process, into a
// link-map namespace of its own, so that SentencePiece's symbols never meet the program's
// (see sentencepiece_abi.h for why). Torch-free; internal to the io library.
//
// Where it looks, first hit wins:
//   1. $COMBA_SENTENCEPIECE_LIBRARY, when set (then nowhere else);
//   2. beside the program or library that holds this code (an installed libcomba_io.so
//      and the plugin share lib/);
//   3. where the build tree put it, then where `cmake --install` puts it;
//   4. the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache, system folders).
#pragma once
#include <string>

#include "sentencepiece_abi.h"

namespace comba::io::detail {

struct SentencePieceLibrary {
  std::string path;  // where it was loaded from
  comba_spm_last_error_fn last_error = nullptr;
  comba_spm_load_fn load = nullptr;
  comba_spm_free_fn free_model = nullptr;
  comba_spm_encode_fn encode = nullptr;
  comba_spm_decode_fn decode = nullptr;
  comba_spm_piece_size_fn piece_size = nullptr;
  comba_spm_special_id_fn special_id = nullptr;
  comba_spm_id_to_piece_fn id_to_piece = nullptr;
  comba_spm_piece_to_id_fn piece_to_id = nullptr;
  comba_spm_train_fn train = nullptr;
};

// The environment variable of step 1 above.
inline constexpr const char* kSentencePieceLibraryEnv = "COMBA_SENTENCEPIECE_LIBRARY";

// Null when SentencePiece support cannot be loaded; sentencepiece_unavailable_reason()
// then says why (every place tried and what failed there).
const SentencePieceLibrary* sentencepiece_library();
const std::string& sentencepiece_unavailable_reason();

}  // namespace comba::io::detail
