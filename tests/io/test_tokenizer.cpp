// SentencePiece tokenizer: a model trained here with SentencePiece's own trainer on
// generated text must encode and decode text back unchanged. Skipped in builds without
// SentencePiece (where the stand-in must say so instead).
#include "comba/io/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "support/file_bytes.h"
#include "support/scratch_dir.h"
#include "io/text_gen.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;

using testing::sentence;

// Also run by ctest with $COMBA_SENTENCEPIECE_LIBRARY naming a missing file (tests/io/
// CMakeLists.txt): the override is the only place looked at, and the message names it.
TEST(Tokenizer, UnavailableSaysWhy) {
  if (Tokenizer::available()) GTEST_SKIP() << "SentencePiece support is available";
  const char* library = std::getenv("COMBA_SENTENCEPIECE_LIBRARY");
  const std::string why = library != nullptr && *library != '\0' ? library : "SentencePiece";
  EXPECT_THAT(Tokenizer::unavailable_reason(), HasSubstr(why));
  try {
    Tokenizer t("x.model");
    FAIL() << "constructed without SentencePiece";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("x.model"));
    EXPECT_THAT(std::string(e.what()), HasSubstr(why));
  }
  EXPECT_THROW(train_sentencepiece("corpus.txt", "sp", 100), std::runtime_error);
}

TEST(Tokenizer, TrainedModelRoundTripsText) {
  if (!Tokenizer::available()) GTEST_SKIP() << "built without SentencePiece";
  testing::TempDir dir;
  std::mt19937 rng(1234);
  {
    std::ofstream corpus(dir.file("corpus.txt"));
    for (int i = 0; i < 2000; ++i) corpus << sentence(rng) << '\n';
  }
  train_sentencepiece(dir.file("corpus.txt"), dir.file("sp"), /*vocab_size=*/120);
  const Tokenizer tok(dir.file("sp.model"));
  EXPECT_EQ(tok.vocab_size(), 120);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), -1);

  std::mt19937 held_out(99);
  for (int i = 0; i < 50; ++i) {
    const std::string text = sentence(held_out) + " " + sentence(held_out);
    const std::vector<int> ids = tok.encode(text);
    ASSERT_FALSE(ids.empty());
    for (const int id : ids) {
      EXPECT_GE(id, 3);  // no unk, bos or eos inside ordinary text
      EXPECT_LT(id, tok.vocab_size());
    }
    EXPECT_LT(ids.size(), text.size());  // pieces are longer than characters on average
    EXPECT_EQ(tok.decode(ids), text);
  }
  EXPECT_EQ(tok.decode({}), "");
  EXPECT_THROW(tok.decode({5, 120}), std::out_of_range);
  EXPECT_THROW(tok.decode({-1}), std::out_of_range);

  // Pieces and ids map both ways; the specials have SentencePiece's default spellings.
  EXPECT_EQ(tok.id_to_piece(0), "<unk>");
  EXPECT_EQ(tok.id_to_piece(1), "<s>");
  EXPECT_EQ(tok.id_to_piece(2), "</s>");
  for (int id = 3; id < tok.vocab_size(); ++id) EXPECT_EQ(tok.piece_to_id(tok.id_to_piece(id)), id);
  EXPECT_EQ(tok.piece_to_id("no such piece"), tok.unk_id());
  EXPECT_THROW(tok.id_to_piece(tok.vocab_size()), std::out_of_range);
  EXPECT_THROW(Tokenizer(dir.file("missing.model")), std::runtime_error);
  Tokenizer moved = Tokenizer(dir.file("sp.model"));
  EXPECT_EQ(moved.encode("kalo"), tok.encode("kalo"));
}

}  // namespace
}  // namespace comba::io
