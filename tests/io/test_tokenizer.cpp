// SentencePiece tokenizer: a model trained here with SentencePiece's own trainer on
// generated text must encode and decode text back unchanged. Skipped in builds without
// SentencePiece (where the stand-in must say so instead).
#include "comba/io/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "io/temp_dir.h"
#include "io/text_gen.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;

using testing::sentence;

TEST(Tokenizer, UnavailableBuildSaysSo) {
  if (Tokenizer::available()) GTEST_SKIP() << "this build has SentencePiece";
  try {
    Tokenizer t("x.model");
    FAIL() << "constructed without SentencePiece";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("no SentencePiece"));
  }
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
  EXPECT_THROW(Tokenizer(dir.file("missing.model")), std::runtime_error);
  Tokenizer moved = Tokenizer(dir.file("sp.model"));
  EXPECT_EQ(moved.encode("kalo"), tok.encode("kalo"));
}

}  // namespace
}  // namespace comba::io
