// comba-tokenize end to end: generated documents -> shards the trainer's reader opens,
// holding exactly encode(doc) + EOS for each document in order, split at --shard-tokens.
// The JSONL reader, the validation split, sharding and threading are checked with the
// byte-level mode (--bytes), which needs no SentencePiece.
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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
            "\" --separator \"<|endoftext|>\" --shard-tokens 1000 --threads 3 --no-progress \"" + dir.file("a.txt") + "\" \"" +
            dir.file("b.txt") + "\"",
        dir.file("sep/train"));

  EXPECT_EQ(run("--out x " + dir.file("corpus.txt"), dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("--tokenizer is required (or --bytes)"));
  EXPECT_EQ(run("--tokenizer \"" + dir.file("sp.model") + "\" --out x missing.txt", dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("missing.txt: not a readable file"));
}

// All tokens of the shards matching `pattern`, in order; every shard at most `limit` long
// with llm.c's uint16 header.
std::vector<int64_t> shard_tokens(const std::string& pattern, int64_t limit, size_t* shards) {
  std::vector<int64_t> got;
  *shards = 0;
  for (const auto& path : train::glob_files(pattern)) {
    const train::TokenShard shard(path);
    EXPECT_EQ(shard.magic(), train::kShardMagic) << path;
    EXPECT_EQ(shard.version(), train::kShardVersionU16) << path;
    EXPECT_LE(shard.tokens().size, limit) << path;
    for (int64_t i = 0; i < shard.tokens().size; ++i) got.push_back(shard.tokens().at(i));
    ++*shards;
  }
  return got;
}

// The text byte counts the shards matching `pattern` record, added up (-1 if one has none).
int64_t shard_text_bytes(const std::string& pattern) {
  int64_t total = 0;
  for (const auto& path : train::glob_files(pattern)) {
    const train::TokenShard shard(path);
    EXPECT_GE(shard.text_bytes(), 0) << path;
    if (shard.text_bytes() < 0) return -1;
    total += shard.text_bytes();
  }
  return total;
}

TEST(Tokenize, JsonlBytesWithValidationSplitAndThreads) {
  testing::TempDir dir;
  std::mt19937 rng(3);
  std::vector<std::string> docs;
  for (int i = 0; i < 120; ++i) docs.push_back(testing::sentence(rng) + (i % 7 == 0 ? " \"q\"\n\u00e9" : ""));
  {
    // Two files; other fields, a blank line and CRLF endings are allowed.
    std::ofstream a(dir.file("a.jsonl"), std::ios::binary), b(dir.file("b.jsonl"), std::ios::binary);
    for (size_t i = 0; i < docs.size(); ++i) {
      const nlohmann::json line = {{"id", i}, {"body", docs[i]}};
      (i < 50 ? a : b) << line.dump() << (i % 5 == 0 ? "\r\n" : "\n") << (i == 10 ? "\n" : "");
    }
  }
  // Independent reference: each document's UTF-8 bytes, then EOS 257.
  std::vector<std::vector<int64_t>> encoded;
  std::vector<int64_t> expected;
  for (const auto& d : docs) {
    std::vector<int64_t> ids(d.begin(), d.end());
    for (auto& t : ids) t = static_cast<unsigned char>(t);
    ids.push_back(257);
    expected.insert(expected.end(), ids.begin(), ids.end());
    encoded.push_back(ids);
  }
  // The validation split: whole documents from the first until at least 500 tokens.
  size_t val_docs = 0, val_size = 0;
  while (val_size < 500) val_size += encoded[val_docs++].size();
  const std::string files = " \"" + dir.file("a.jsonl") + "\" \"" + dir.file("b.jsonl") + "\"";
  for (const int threads : {1, 4, 0}) {  // 0: no --threads (the machine's cores)
    const std::string out = dir.file("t" + std::to_string(threads) + "/d");
    const std::string threads_flag = threads > 0 ? " --threads " + std::to_string(threads) : "";
    ASSERT_EQ(run("--bytes --jsonl --jsonl-field body --shard-tokens 700 --val-tokens 500" + threads_flag +
                      " --out \"" + out + "\"" + files,
                  dir.file("log")),
              0)
        << testing::read_bytes(dir.file("log"));
    const std::string log = testing::read_bytes(dir.file("log"));
    EXPECT_THAT(log, HasSubstr("\"documents\":120"));
    EXPECT_THAT(log, HasSubstr("\"val_tokens\":" + std::to_string(val_size)));
    EXPECT_THAT(log, HasSubstr("comba-tokenize: 100.0%"));  // the plain progress line off a terminal
    size_t val_shards = 0, train_shards = 0;
    const auto val = shard_tokens(out + "_val_*.bin", 700, &val_shards);
    const auto train = shard_tokens(out + "_train_*.bin", 700, &train_shards);
    EXPECT_EQ(val, std::vector<int64_t>(expected.begin(), expected.begin() + static_cast<int64_t>(val_size)));
    EXPECT_EQ(train, std::vector<int64_t>(expected.begin() + static_cast<int64_t>(val_size), expected.end()));
    EXPECT_EQ(val_shards, (val_size + 699) / 700);
    EXPECT_EQ(train_shards, (expected.size() - val_size + 699) / 700);
    // Each shard records the bytes of text it encodes (documents cut by a shard boundary
    // shared out by tokens): per split they add up to its documents' UTF-8 bytes.
    int64_t val_text = 0, all_text = 0;
    for (size_t i = 0; i < docs.size(); ++i) (i < val_docs ? val_text : all_text) += static_cast<int64_t>(docs[i].size());
    all_text += val_text;
    EXPECT_EQ(shard_text_bytes(out + "_val_*.bin"), val_text);
    EXPECT_EQ(shard_text_bytes(out + "_train_*.bin"), all_text - val_text);
    EXPECT_THAT(log, HasSubstr("\"text_bytes\":" + std::to_string(all_text)));
    EXPECT_THAT(log, HasSubstr("\"val_text_bytes\":" + std::to_string(val_text)));
  }
  // Byte-identical output whatever the thread count.
  for (const auto& name : train::glob_files(dir.file("t1/d_*.bin"))) {
    const std::string other = dir.file("t4/") + name.substr(name.find_last_of('/') + 1);
    EXPECT_EQ(testing::read_bytes(name), testing::read_bytes(other)) << name;
  }
  EXPECT_EQ(train::glob_files(dir.file("t1/d_*.bin")).size(), train::glob_files(dir.file("t4/d_*.bin")).size());

  // --val-fraction: whole documents from the start; train and val together are everything.
  ASSERT_EQ(run("--bytes --jsonl --jsonl-field body --val-fraction 0.25 --no-progress --out \"" + dir.file("f/d") +
                    "\"" + files,
                dir.file("log")),
            0)
      << testing::read_bytes(dir.file("log"));
  size_t n = 0;
  auto all = shard_tokens(dir.file("f/d_val_*.bin"), 1 << 30, &n);
  const size_t val_count = all.size();
  const auto rest = shard_tokens(dir.file("f/d_train_*.bin"), 1 << 30, &n);
  all.insert(all.end(), rest.begin(), rest.end());
  EXPECT_EQ(all, expected);
  EXPECT_EQ(all[val_count - 1], 257) << "the split falls between documents";
  EXPECT_GT(val_count, expected.size() / 8);
  EXPECT_LT(val_count, expected.size() / 2);
}

TEST(Tokenize, BadJsonlLinesNameFileAndLine) {
  testing::TempDir dir;
  std::ofstream(dir.file("bad.jsonl")) << "{\"text\": \"ok\"}\n\n{\"text\": oops}\n";
  std::ofstream(dir.file("nofield.jsonl")) << "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n";
  std::ofstream(dir.file("notstring.jsonl")) << "{\"text\": 3}\n";
  std::ofstream(dir.file("array.jsonl")) << "[1, 2]\n";
  const auto error_of = [&](const std::string& file) {
    EXPECT_EQ(run("--bytes --jsonl --no-progress --out \"" + dir.file("o/x") + "\" \"" + dir.file(file) + "\"",
                  dir.file("log")),
              1);
    return testing::read_bytes(dir.file("log"));
  };
  EXPECT_THAT(error_of("bad.jsonl"), HasSubstr("bad.jsonl:3: not a JSON line"));
  EXPECT_THAT(error_of("nofield.jsonl"), HasSubstr("nofield.jsonl:2: no field \"text\" (--jsonl-field)"));
  EXPECT_THAT(error_of("notstring.jsonl"), HasSubstr("notstring.jsonl:1: field \"text\" expected a string, got number"));
  EXPECT_THAT(error_of("array.jsonl"), HasSubstr("array.jsonl:1: expected a JSON object, got array"));
  // Neither a tokenizer nor --bytes; --jsonl-field without --jsonl; both split options.
  EXPECT_EQ(run("--out x \"" + dir.file("bad.jsonl") + "\"", dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("--tokenizer is required (or --bytes)"));
  EXPECT_EQ(run("--bytes --jsonl-field body --out x \"" + dir.file("bad.jsonl") + "\"", dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("--jsonl-field needs --jsonl"));
  EXPECT_EQ(run("--bytes --val-tokens 5 --val-fraction 0.1 --out x \"" + dir.file("bad.jsonl") + "\"",
                dir.file("log")),
            2);
  EXPECT_EQ(run("--bytes --val-fraction 1.5 --out x \"" + dir.file("bad.jsonl") + "\"", dir.file("log")), 2);
  EXPECT_THAT(testing::read_bytes(dir.file("log")), HasSubstr("--val-fraction"));
}

}  // namespace
}  // namespace comba::io
