// SentencePiece and LibTorch in one process (issue 15, case 6). Debian's libsentencepiece
// and libc10 both export gflags' FLAGS_minloglevel; when SentencePiece was linked into our
// programs its static initialiser wrote over c10's FLAGS_caffe2_use_fatal_for_enforce, and
// every failed CAFFE_ENFORCE (an allocation too large, for one) aborted the process instead
// of throwing. Here a tokenizer is trained, loaded and used, and LibTorch's failures must
// still be exceptions; SentencePiece must not be among the program's dependencies and must
// stay out of the program's link-map namespace even once used. (The other tokenizer tests
// cover the RTLD_DEEPBIND failure: their programs use std::cerr, SentencePiece's first log
// line crashed there.)
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>
#include <link.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>

#include "comba/io/tokenizer.h"
#include "support/file_bytes.h"
#include "support/scratch_dir.h"
#include "io/text_gen.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;

// Whether an object whose path contains `name_part` is loaded in this process.
bool loaded(const std::string& name_part) {
  struct Search {
    const std::string* name_part;
    bool found;
  } search{&name_part, false};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto* s = static_cast<Search*>(data);
        if (info->dlpi_name != nullptr && std::string(info->dlpi_name).find(*s->name_part) != std::string::npos) {
          s->found = true;
        }
        return 0;
      },
      &search);
  return search.found;
}

// Before main: what the program's own dependencies brought in.
const bool kSentencePieceLoadedAtStart = loaded("libsentencepiece");

void* c10_symbol(const char* name) {
  void* c10 = dlopen("libc10.so", RTLD_NOW | RTLD_NOLOAD);
  return c10 != nullptr ? dlsym(c10, name) : nullptr;
}

// The flag's byte as stored: an overwritten bool need not be 0 or 1 (it was 222 here).
int fatal_for_enforce() { return *static_cast<const unsigned char*>(c10_symbol("FLAGS_caffe2_use_fatal_for_enforce")); }

// A trained tokenizer, used, so that SentencePiece's code and initialisers have run.
void use_a_tokenizer() {
  testing::TempDir dir;
  std::mt19937 rng(7);
  {
    std::ofstream corpus(dir.file("corpus.txt"));
    for (int i = 0; i < 500; ++i) corpus << testing::sentence(rng) << '\n';
  }
  train_sentencepiece(dir.file("corpus.txt"), dir.file("sp"), /*vocab_size=*/60);
  const Tokenizer tok(dir.file("sp.model"));
  const std::string text = "kalo mine suvi.";
  ASSERT_EQ(tok.decode(tok.encode(text)), text);
}

TEST(TokenizerIsolation, ProgramDoesNotDependOnSentencePiece) {
  EXPECT_FALSE(kSentencePieceLoadedAtStart) << "libsentencepiece is a (transitive) DT_NEEDED of this program";
}

TEST(TokenizerIsolation, LibTorchFailuresStillThrowAfterATokenizerWasUsed) {
  if (!Tokenizer::available()) GTEST_SKIP() << Tokenizer::unavailable_reason();
  ASSERT_NE(c10_symbol("FLAGS_caffe2_use_fatal_for_enforce"), nullptr);
  ASSERT_EQ(fatal_for_enforce(), 0);
  use_a_tokenizer();
  // SentencePiece ran, in a namespace of its own: not among this namespace's objects, its
  // FLAGS_minloglevel not what symbol lookup here answers, and c10's flags untouched.
  EXPECT_FALSE(loaded("libsentencepiece"));
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "FLAGS_minloglevel"), c10_symbol("FLAGS_minloglevel"));
  EXPECT_EQ(fatal_for_enforce(), 0);

  // CAFFE_ENFORCE is what aborted: a failed one, directly and from the CPU allocator (2^60
  // bytes exceed any address space), and a failed TORCH_CHECK, all as c10::Error.
  EXPECT_THROW(CAFFE_ENFORCE(1 + 1 == 3, "enforce after the tokenizer"), c10::Error);
  try {
    const auto huge = at::empty({int64_t{1} << 60}, at::kByte);
    FAIL() << "allocated 2^60 bytes";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("1152921504606846976 bytes"));
  }
  EXPECT_THROW(at::zeros({2, 3}).view({4}), c10::Error);
}

}  // namespace
}  // namespace comba::io
