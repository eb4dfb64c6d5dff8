// Tokenizer training (issue 19): io::train_sentencepiece with its options, and
// comba-tokenize --train-tokenizer end to end, on generated text. The trained models hold
// the special ids the model configs expect (unk 0, bos 1, eos 2) and round-trip text.
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "comba/core/file_util.h"
#include "comba/io/tokenizer.h"
#include "io/text_gen.h"
#include "support/file_bytes.h"
#include "support/scratch_dir.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;

void write_corpus(const std::string& path, int lines, unsigned seed) {
  std::ofstream out(path);
  std::mt19937 rng(seed);
  for (int i = 0; i < lines; ++i) out << testing::sentence(rng) << "\n";
}

int run(const std::string& args, const std::string& log) {
  const std::string cmd = "\"" COMBA_TOKENIZE_BIN "\" " + args + " > \"" + log + "\" 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string what_of(const TrainTokenizerOptions& options) {
  try {
    train_sentencepiece(options);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument)";
}

// Bad options are refused before SentencePiece is reached (so also in builds without it),
// naming the option.
TEST(TrainTokenizer, BadOptionsNameTheOption) {
  TrainTokenizerOptions good;
  good.input_files = {"corpus.txt"};
  good.model_prefix = "out/tok";
  good.vocab_size = 300;
  auto o = good;
  o.input_files.clear();
  EXPECT_THAT(what_of(o), HasSubstr("input_files: expected at least one file"));
  o = good;
  o.input_files = {"my corpus.txt"};
  EXPECT_THAT(what_of(o), HasSubstr("input_files: \"my corpus.txt\": SentencePiece's trainer cannot take a path with whitespace"));
  o = good;
  o.input_files = {"a,b.txt"};
  EXPECT_THAT(what_of(o), HasSubstr("cannot take a path with a comma"));
  o = good;
  o.model_type = "wordpiece";
  EXPECT_THAT(what_of(o), HasSubstr("model_type: expected one of unigram, bpe, char, word, got \"wordpiece\""));
  o = good;
  o.vocab_size = 0;
  EXPECT_THAT(what_of(o), HasSubstr("vocab_size: expected > 0, got 0"));
  o = good;
  o.eos_id = 1;
  EXPECT_THAT(what_of(o), HasSubstr("eos_id and bos_id: both 1; special ids must differ"));
  o = good;
  o.pad_id = 300;
  EXPECT_THAT(what_of(o), HasSubstr("pad_id: expected -1 (none) or an id below vocab_size 300, got 300"));
  o = good;
  o.input_sentence_size = -5;
  EXPECT_THAT(what_of(o), HasSubstr("input_sentence_size: expected >= 0"));
}

// A tiny BPE with byte fallback: the configs' special ids, text round-trips, and characters
// the corpus never had become byte pieces instead of <unk>.
TEST(TrainTokenizer, TinyBpeWithByteFallbackRoundTrips) {
  if (!Tokenizer::available()) GTEST_SKIP() << "built without SentencePiece";
  testing::TempDir dir;
  write_corpus(dir.file("a.txt"), 600, 1);
  write_corpus(dir.file("b.txt"), 600, 2);
  TrainTokenizerOptions o;
  o.input_files = {dir.file("a.txt"), dir.file("b.txt")};
  o.model_prefix = dir.file("bpe");
  o.vocab_size = 300;
  o.model_type = "bpe";
  o.byte_fallback = true;
  train_sentencepiece(o);
  ASSERT_TRUE(core::path_exists(dir.file("bpe.vocab")));
  const Tokenizer tok(dir.file("bpe.model"));
  EXPECT_EQ(tok.vocab_size(), 300);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);  // configs/comba-340m.yaml: bos_token_id 1
  EXPECT_EQ(tok.eos_id(), 2);  // eos_token_id 2
  EXPECT_EQ(tok.pad_id(), -1);
  EXPECT_EQ(tok.id_to_piece(1), "<s>");
  EXPECT_EQ(tok.id_to_piece(2), "</s>");
  std::mt19937 rng(99);  // sentences the trainer did not see
  for (int i = 0; i < 20; ++i) {
    const std::string text = testing::sentence(rng);
    const auto ids = tok.encode(text);
    EXPECT_LT(ids.size(), text.size()) << text;  // merges were learned
    EXPECT_EQ(tok.decode(ids), text);
  }
  const std::string unseen = "kalo Zé!";
  const auto ids = tok.encode(unseen);
  for (const int id : ids) EXPECT_NE(id, tok.unk_id()) << unseen;
  EXPECT_EQ(tok.decode(ids), unseen);
  EXPECT_EQ(tok.id_to_piece(tok.piece_to_id("<0x5A>")), "<0x5A>");  // 'Z' as a byte piece
}

// comba-tokenize --train-tokenizer: unigram on a sample of two files, into a folder that
// does not exist yet; the result encodes shards at once; bad flags are named.
TEST(TrainTokenizer, CommandLineTrainsAModelThatEncodes) {
  testing::TempDir dir;
  write_corpus(dir.file("a.txt"), 800, 3);
  write_corpus(dir.file("b.txt"), 800, 4);
  const std::string inputs = " --input \"" + dir.file("a.txt") + "\" \"" + dir.file("b.txt") + "\"";
  EXPECT_EQ(run("--train-tokenizer --vocab-size 200 --model-type wordpiece --out x" + inputs, dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("--model-type"));
  EXPECT_EQ(run("--train-tokenizer --model-type bpe --out x" + inputs, dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("--vocab-size"));
  EXPECT_EQ(run("--train-tokenizer --vocab-size 200 --out x --input \"" + dir.file("nope.txt") + "\"", dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("nope.txt: not a readable file"));
  if (!Tokenizer::available()) GTEST_SKIP() << "built without SentencePiece";

  const std::string prefix = dir.file("tok/sp");
  ASSERT_EQ(run("--train-tokenizer --vocab-size 200 --model-type unigram --input-sentence-size 1000 --threads 1 --out \"" +
                    prefix + "\"" + inputs,
                dir.file("log")),
            0)
      << testing::read_bytes(dir.file("log"));
  // The summary is the last line (the trainer may log above it).
  std::string log = testing::read_bytes(dir.file("log"));
  while (!log.empty() && log.back() == '\n') log.pop_back();
  const auto summary = nlohmann::json::parse(log.substr(log.find_last_of('\n') + 1));
  EXPECT_EQ(summary.at("vocab_size"), 200);
  EXPECT_EQ(summary.at("bos_id"), 1);
  EXPECT_EQ(summary.at("eos_id"), 2);
  EXPECT_EQ(summary.at("unk_id"), 0);
  EXPECT_EQ(summary.at("pad_id"), -1);
  EXPECT_TRUE(core::path_exists(prefix + ".vocab"));
  const Tokenizer tok(prefix + ".model");
  EXPECT_EQ(tok.vocab_size(), 200);
  std::mt19937 rng(5);
  const std::string text = testing::sentence(rng);
  EXPECT_EQ(tok.decode(tok.encode(text)), text);

  // --pad-id as a config may want it; and the trained model feeds the encoding mode.
  ASSERT_EQ(run("--train-tokenizer --vocab-size 200 --pad-id 3 --threads 1 --out \"" + prefix + "_pad\"" + inputs,
                dir.file("log")),
            0)
      << testing::read_bytes(dir.file("log"));
  EXPECT_EQ(Tokenizer(prefix + "_pad.model").pad_id(), 3);
  ASSERT_EQ(run("--tokenizer \"" + prefix + ".model\" --out \"" + dir.file("shards/train") + "\" --no-progress \"" +
                    dir.file("a.txt") + "\"",
                dir.file("log")),
            0)
      << testing::read_bytes(dir.file("log"));
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("\"eos_id\":2"));
}

}  // namespace
}  // namespace comba::io
