// comba-tokenize end to end: generated documents -> shards the trainer's reader opens,
// holding exactly encode(doc) + EOS for each document in order, split at --shard-tokens.
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "comba/io/tokenizer.h"
#include "comba/train/data/token_shard.h"
#include "support/file_bytes.h"
#include "support/scratch_dir.h"
#include "io/text_gen.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;

int run(const std::string& args, const std::string& log) {
  const std::string cmd = "\"" COMBA_TOKENIZE_BIN "\" " + args + " > \"" + log + "\" 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Tokenize, TextFilesBecomeShardsWithEosBetweenDocuments) {
  if (!Tokenizer::available()) GTEST_SKIP() << "built without SentencePiece";
  testing::TempDir dir;
  std::mt19937 rng(8);
  std::vector<std::string> docs;
  for (int i = 0; i < 300; ++i) docs.push_back(testing::sentence(rng) + " " + testing::sentence(rng));
  {
    std::ofstream corpus(dir.file("corpus.txt"));
    for (const auto& d : docs) corpus << d << '\n';
  }
  train_sentencepiece(dir.file("corpus.txt"), dir.file("sp"), /*vocab_size=*/100);
  {
    // The same documents split across two files by a separator string.
    std::ofstream a(dir.file("a.txt")), b(dir.file("b.txt"));
    for (size_t i = 0; i < docs.size(); ++i) (i < 100 ? a : b) << docs[i] << "<|endoftext|>";
  }
  const Tokenizer tok(dir.file("sp.model"));
  std::vector<int64_t> expected;
  for (const auto& d : docs) {
    for (const int id : tok.encode(d)) expected.push_back(id);
    expected.push_back(tok.eos_id());
  }

  const auto check = [&](const std::string& args, const std::string& prefix) {
    ASSERT_EQ(run(args, dir.file("log")), 0) << testing::read_bytes(dir.file("log"));
    std::vector<int64_t> got;
    size_t shards = 0;
    for (const auto& path : train::glob_files(prefix + "_*.bin")) {
      const train::TokenShard shard(path);
      EXPECT_EQ(shard.version(), train::kShardVersionU16);
      EXPECT_LE(shard.tokens().size, 1000);
      for (int64_t i = 0; i < shard.tokens().size; ++i) got.push_back(shard.tokens().at(i));
      ++shards;
    }
    EXPECT_EQ(shards, (expected.size() + 999) / 1000);
    EXPECT_EQ(got, expected);
    EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("\"documents\":300"));
  };
  check("--tokenizer \"" + dir.file("sp.model") + "\" --out \"" + dir.file("lines/train") +
            "\" --per-line --shard-tokens 1000 \"" + dir.file("corpus.txt") + "\"",
        dir.file("lines/train"));
  check("--tokenizer \"" + dir.file("sp.model") + "\" --out \"" + dir.file("sep/train") +
            "\" --separator \"<|endoftext|>\" --shard-tokens 1000 --no-progress \"" + dir.file("a.txt") + "\" \"" +
            dir.file("b.txt") + "\"",
        dir.file("sep/train"));

  EXPECT_EQ(run("--out x " + dir.file("corpus.txt"), dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("--tokenizer is required"));
  EXPECT_EQ(run("--tokenizer \"" + dir.file("sp.model") + "\" --out x missing.txt", dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("missing.txt: not a readable file"));
}

}  // namespace
}  // namespace comba::io
