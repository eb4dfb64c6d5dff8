// The C interface of libcomba_sentencepiece, the only library that links SentencePiece.
// Debian's libsentencepiece exports gflags' FLAGS_minloglevel (a 32-byte flag object) as
// libc10 does (a 4-byte int); when both share the global symbol table, SentencePiece's
// static initialiser writes its flag over c10's FLAGS_caffe2_use_fatal_for_enforce, and
// every failed CAFFE_ENFORCE (an allocation too large, among others) aborts the process
// instead of throwing. So the tokenizer (sentencepiece_library.cpp) loads this library
// into a link-map namespace of its own (dlmopen) and calls it through these functions only.
//
// Plain C across the boundary, because the two sides use different copies of libstdc++
// and libc: no exceptions either way (failures return an error code or null and leave a
// message in comba_spm_last_error; the caller's sinks must not throw), no memory changing
// hands (results go to the caller's sink callbacks, which copy them; a model handle is
// freed by the library that made it).
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Raised whenever a signature below changes, so that a stale library is refused.
#define COMBA_SPM_ABI_VERSION 1

typedef struct comba_spm_model comba_spm_model;
// Sinks receive results for the caller to copy; they must return normally (no exception).
typedef void (*comba_spm_ids_sink)(void* context, const int* ids, size_t count);
typedef void (*comba_spm_text_sink)(void* context, const char* text, size_t size);

// Ids that comba_spm_special_id answers.
enum comba_spm_special { COMBA_SPM_UNK = 0, COMBA_SPM_BOS = 1, COMBA_SPM_EOS = 2, COMBA_SPM_PAD = 3 };

typedef int (*comba_spm_abi_version_fn)(void);
// The message of this thread's last failed call; valid until this thread's next call.
typedef const char* (*comba_spm_last_error_fn)(void);
// Null on failure.
typedef comba_spm_model* (*comba_spm_load_fn)(const char* path);
typedef void (*comba_spm_free_fn)(comba_spm_model* model);
// The functions returning int return 0 on success (encode, decode, id_to_piece, train).
typedef int (*comba_spm_encode_fn)(const comba_spm_model* model, const char* text, size_t size,
                                   comba_spm_ids_sink sink, void* context);
// Ids must lie in [0, piece_size): SentencePiece aborts on others, so the library checks.
typedef int (*comba_spm_decode_fn)(const comba_spm_model* model, const int* ids, size_t count,
                                   comba_spm_text_sink sink, void* context);
typedef int (*comba_spm_piece_size_fn)(const comba_spm_model* model);
typedef int (*comba_spm_special_id_fn)(const comba_spm_model* model, int which);  // -1: none
typedef int (*comba_spm_id_to_piece_fn)(const comba_spm_model* model, int id, comba_spm_text_sink sink,
                                        void* context);
// The piece's id, or the unknown id when the vocabulary has no such piece.
typedef int (*comba_spm_piece_to_id_fn)(const comba_spm_model* model, const char* piece, size_t size);
// SentencePieceTrainer::Train with a "--key=value ..." argument string.
typedef int (*comba_spm_train_fn)(const char* args);

#ifdef __cplusplus
}
#endif
