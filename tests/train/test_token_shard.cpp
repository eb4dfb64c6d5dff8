// Shard reader on shards written here: header checks, bad magic / version / size rejected
// with the file named, uint16 and uint32 tokens, and document packing with cu_seqlens.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "comba/core/file_util.h"
#include "comba/train/data/packing.h"
#include "comba/nn/labels.h"
#include "comba/train/data/recall_task.h"
#include "comba/train/data/token_shard.h"
#include "support/scratch_dir.h"

namespace comba::train {
namespace {

using nn::kIgnoreIndex;

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = comba::testing::fresh_dir(std::string("shard_") +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override { core::remove_tree(dir_); }
  std::string path(const std::string& name) const { return core::join_path(dir_, name); }
  std::string dir_;
};

std::string error_of(const std::string& p) {
  try {
    TokenShard shard(p);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST_F(ShardTest, Uint16RoundTrip) {
  const std::vector<uint32_t> tokens = {0, 1, 65535, 300, 7, 12345};
  write_token_shard(path("a.bin"), tokens, 2);
  EXPECT_EQ(core::file_size(path("a.bin")), static_cast<int64_t>(1024 + 2 * tokens.size()));
  const TokenShard shard(path("a.bin"));
  EXPECT_EQ(shard.version(), 1);
  ASSERT_EQ(shard.tokens().size, 6);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(shard.tokens().at(i), tokens[i]);
  std::vector<int64_t> window(3);
  shard.tokens().copy(2, 3, window.data());
  EXPECT_EQ(window, (std::vector<int64_t>{65535, 300, 7}));
}

TEST_F(ShardTest, Uint32RoundTrip) {
  const std::vector<uint32_t> tokens = {70000, 5, 4000000000u};
  write_token_shard(path("b.bin"), tokens, 4);
  const TokenShard shard(path("b.bin"));
  EXPECT_EQ(shard.version(), 2);
  EXPECT_EQ(shard.tokens().at(0), 70000);
  EXPECT_EQ(shard.tokens().at(2), 4000000000ll);
}

TEST_F(ShardTest, Uint16RejectsLargeTokens) {
  EXPECT_THROW(write_token_shard(path("c.bin"), {70000}, 2), std::invalid_argument);
}

TEST_F(ShardTest, BadMagicRejected) {
  write_token_shard(path("m.bin"), {1, 2, 3}, 2);
  {
    std::fstream f(path("m.bin"), std::ios::in | std::ios::out | std::ios::binary);
    const int32_t wrong = 12345;
    f.write(reinterpret_cast<const char*>(&wrong), 4);
  }
  const std::string e = error_of(path("m.bin"));
  EXPECT_NE(e.find("m.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("magic expected 20240520, got 12345"), std::string::npos) << e;
}

TEST_F(ShardTest, BadVersionRejected) {
  write_token_shard(path("v.bin"), {1, 2, 3}, 2);
  {
    std::fstream f(path("v.bin"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4);
    const int32_t version = 7;
    f.write(reinterpret_cast<const char*>(&version), 4);
  }
  EXPECT_NE(error_of(path("v.bin")).find("version expected 1 (uint16 tokens) or 2"),
            std::string::npos);
}

TEST_F(ShardTest, SizeMismatchAndShortFileRejected) {
  write_token_shard(path("t.bin"), {1, 2, 3, 4}, 2);
  core::truncate_file(path("t.bin"), 1024 + 5);
  EXPECT_NE(error_of(path("t.bin")).find("header says 4 tokens"), std::string::npos);
  std::ofstream(path("short.bin")) << "tiny";
  EXPECT_NE(error_of(path("short.bin")).find("shorter than the 1024-byte header"),
            std::string::npos);
}

TEST_F(ShardTest, GlobIsSorted) {
  write_token_shard(path("x_val_000.bin"), {1}, 2);
  write_token_shard(path("x_train_001.bin"), {1}, 2);
  write_token_shard(path("x_train_000.bin"), {1}, 2);
  const auto train = glob_files(path("x_train_*.bin"));
  ASSERT_EQ(train.size(), 2u);
  EXPECT_LT(train[0], train[1]);
  EXPECT_TRUE(glob_files(path("nothing_*.bin")).empty());
}

TEST(Packing, CuSeqlensAtDocumentEndsAndNoCrossDocumentTargets) {
  const int64_t eos = 2;
  //                       doc A: 5 6 2 | doc B: 7 2 | doc C: 8 9
  const std::vector<int64_t> tokens = {5, 6, 2, 7, 2, 8, 9};
  const PackedWindow packed = pack_documents(tokens, eos);
  EXPECT_EQ(packed.cu_seqlens, (std::vector<int64_t>{0, 3, 5, 7}));
  EXPECT_EQ(packed.labels, (std::vector<int64_t>{5, 6, 2, kIgnoreIndex, 2, kIgnoreIndex, 9}));
}

TEST(Packing, TrailingEosMakesNoEmptySegment) {
  const PackedWindow packed = pack_documents({4, 2}, 2);
  EXPECT_EQ(packed.cu_seqlens, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(packed.labels, (std::vector<int64_t>{4, 2}));
}

TEST(RecallTask, LayoutAndAnswers) {
  RecallOptions o;
  o.num_pairs = 4;
  o.num_queries = 3;
  o.key_vocab = 10;
  o.value_vocab = 5;
  CounterRng rng(7, 1, 0);
  const TokenSequence s = make_recall_sequence(o, 20, rng);
  std::map<int64_t, int64_t> value_of;
  for (int i = 0; i < 4; ++i) {
    const int64_t k = s.input_ids[2 * i], v = s.input_ids[2 * i + 1];
    EXPECT_GE(k, 1);
    EXPECT_LE(k, 10);
    EXPECT_GE(v, 11);
    EXPECT_LE(v, 15);
    EXPECT_EQ(value_of.count(k), 0u) << "keys are distinct";
    value_of[k] = v;
    EXPECT_EQ(s.labels[2 * i + 1], kIgnoreIndex);
  }
  for (int q = 0; q < 3; ++q) {
    const int at = 2 * (4 + q);
    ASSERT_EQ(value_of.count(s.input_ids[at]), 1u);
    EXPECT_EQ(s.input_ids[at + 1], value_of[s.input_ids[at]]);
    EXPECT_EQ(s.labels[at + 1], value_of[s.input_ids[at]]);
  }
  for (int t = 14; t < 20; ++t) EXPECT_EQ(s.input_ids[t], 0);
}

}  // namespace
}  // namespace comba::train
