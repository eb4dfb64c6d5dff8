// Shard reader on shards written here: llm.c's header ints read back raw, our legacy
// version-2 files, header-less raw uint16 files, bad magic / version / size rejected with
// the file named, uint16 and uint32 tokens, and document packing with cu_seqlens.
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

// The 256 int32 of a shard's header, read back as raw ints (independent of the reader).
std::vector<int32_t> raw_header(const std::string& p) {
  std::vector<int32_t> header(256, -1);
  std::ifstream in(p, std::ios::binary);
  in.read(reinterpret_cast<char*>(header.data()), 1024);
  EXPECT_EQ(in.gcount(), 1024);
  return header;
}

// A header written by hand: magic, version, count, then zeros.
void write_raw_shard(const std::string& p, int32_t magic, int32_t version,
                     const std::vector<uint32_t>& tokens) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = static_cast<int32_t>(tokens.size());
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()), 1024);
  out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(4 * tokens.size()));
}

TEST_F(ShardTest, Uint16RoundTrip) {
  const std::vector<uint32_t> tokens = {0, 1, 65535, 300, 7, 12345};
  write_token_shard(path("a.bin"), tokens, 2);
  EXPECT_EQ(core::file_size(path("a.bin")), static_cast<int64_t>(1024 + 2 * tokens.size()));
  // llm.c's uint16 header: magic 20240520, version 1, the count, 253 zeros.
  std::vector<int32_t> want(256, 0);
  want[0] = 20240520;
  want[1] = 1;
  want[2] = 6;
  EXPECT_EQ(raw_header(path("a.bin")), want);
  const TokenShard shard(path("a.bin"));
  EXPECT_EQ(shard.version(), 1);
  EXPECT_EQ(shard.header_bytes(), 1024);
  ASSERT_EQ(shard.tokens().size, 6);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(shard.tokens().at(i), tokens[i]);
  std::vector<int64_t> window(3);
  shard.tokens().copy(2, 3, window.data());
  EXPECT_EQ(window, (std::vector<int64_t>{65535, 300, 7}));
}

TEST_F(ShardTest, Uint32RoundTrip) {
  const std::vector<uint32_t> tokens = {70000, 5, 4000000000u};
  write_token_shard(path("b.bin"), tokens, 4);
  EXPECT_EQ(core::file_size(path("b.bin")), static_cast<int64_t>(1024 + 4 * tokens.size()));
  // llm.c's uint32 header: magic 20240801, version 7.
  std::vector<int32_t> want(256, 0);
  want[0] = 20240801;
  want[1] = 7;
  want[2] = 3;
  EXPECT_EQ(raw_header(path("b.bin")), want);
  const TokenShard shard(path("b.bin"));
  EXPECT_EQ(shard.magic(), 20240801);
  EXPECT_EQ(shard.version(), 7);
  ASSERT_EQ(shard.tokens().size, 3);
  EXPECT_EQ(shard.tokens().at(0), 70000);
  EXPECT_EQ(shard.tokens().at(1), 5);
  EXPECT_EQ(shard.tokens().at(2), 4000000000ll);
}

// The text byte count lives in slots llm.c leaves zero: slots 0-2 stay llm.c's, slot 3 is
// the tag ("byte" little-endian), slots 4-5 the count's low and high halves.
TEST_F(ShardTest, TextByteCountInSlotsLlmcLeavesZero) {
  const int64_t bytes = (int64_t{5} << 32) + 123;  // past 32 bits: both halves matter
  write_token_shard(path("t16.bin"), {1, 2, 3}, 2, bytes);
  std::vector<int32_t> want(256, 0);
  want[0] = 20240520;
  want[1] = 1;
  want[2] = 3;
  want[3] = 'b' | ('y' << 8) | ('t' << 16) | ('e' << 24);
  want[4] = 123;
  want[5] = 5;
  EXPECT_EQ(raw_header(path("t16.bin")), want);
  EXPECT_EQ(TokenShard(path("t16.bin")).text_bytes(), bytes);
  write_token_shard(path("t32.bin"), {70000}, 4, 0);  // an empty text is a known count
  EXPECT_EQ(TokenShard(path("t32.bin")).text_bytes(), 0);
  EXPECT_EQ(TokenShard(path("t32.bin")).tokens().at(0), 70000);
  // llm.c's own shards (zeros there) and ours written without a count: unknown.
  write_raw_shard(path("llmc.bin"), 20240801, 7, {9, 8});
  EXPECT_EQ(TokenShard(path("llmc.bin")).text_bytes(), -1);
  write_token_shard(path("none.bin"), {1}, 2);
  EXPECT_EQ(TokenShard(path("none.bin")).text_bytes(), -1);
  EXPECT_EQ(raw_header(path("none.bin"))[3], 0);
}

TEST_F(ShardTest, LlmcUint32ShardWrittenByHandIsRead) {
  write_raw_shard(path("llmc.bin"), 20240801, 7, {100000, 1, 65536});
  const TokenShard shard(path("llmc.bin"));
  ASSERT_EQ(shard.tokens().size, 3);
  EXPECT_EQ(shard.tokens().at(0), 100000);
  EXPECT_EQ(shard.tokens().at(2), 65536);
}

TEST_F(ShardTest, LegacyVersion2Uint32StillRead) {
  // Our uint32 files before llm.c's header: magic 20240520, version 2.
  write_raw_shard(path("old.bin"), 20240520, 2, {70000, 9, 123456789});
  const TokenShard shard(path("old.bin"));
  EXPECT_EQ(shard.magic(), 20240520);
  EXPECT_EQ(shard.version(), 2);
  ASSERT_EQ(shard.tokens().size, 3);
  EXPECT_EQ(shard.tokens().at(0), 70000);
  EXPECT_EQ(shard.tokens().at(1), 9);
  EXPECT_EQ(shard.tokens().at(2), 123456789);
}

TEST_F(ShardTest, MagicVersionMismatchRejected) {
  // llm.c's uint32 magic with the uint16 version, and the reverse pairing.
  write_raw_shard(path("mv.bin"), 20240801, 1, {1});
  std::string e = error_of(path("mv.bin"));
  EXPECT_NE(e.find("mv.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("version expected 7 (uint32 tokens) with magic 20240801, got 1"), std::string::npos) << e;
  write_raw_shard(path("vm.bin"), 20240520, 7, {1});
  e = error_of(path("vm.bin"));
  EXPECT_NE(e.find("vm.bin: header version expected 1 (uint16 tokens) or 2"), std::string::npos) << e;
  EXPECT_NE(e.find("with magic 20240520, got 7"), std::string::npos) << e;
}

TEST_F(ShardTest, RawUint16ReadsTheSameTokensAsTheHeaderedShard) {
  const std::vector<uint32_t> tokens = {3, 65535, 0, 42, 7};
  write_token_shard(path("h.bin"), tokens, 2);
  {
    std::ofstream raw(path("raw.bin"), std::ios::binary);
    for (const uint32_t t : tokens) {
      const auto v = static_cast<uint16_t>(t);
      raw.write(reinterpret_cast<const char*>(&v), 2);
    }
  }
  const TokenShard headered(path("h.bin"));
  const TokenShard raw(path("raw.bin"), ShardFormat::kRawUint16);
  EXPECT_EQ(raw.header_bytes(), 0);
  ASSERT_EQ(raw.tokens().size, headered.tokens().size);
  for (int64_t i = 0; i < raw.tokens().size; ++i) {
    EXPECT_EQ(raw.tokens().at(i), headered.tokens().at(i));
    EXPECT_EQ(raw.tokens().at(i), tokens[i]);
  }
  std::ofstream(path("odd.bin")) << "abc";
  std::string e;
  try {
    TokenShard odd(path("odd.bin"), ShardFormat::kRawUint16);
  } catch (const std::exception& ex) {
    e = ex.what();
  }
  EXPECT_NE(e.find("odd.bin: data.format raw_uint16 expects an even number of bytes"), std::string::npos) << e;
  EXPECT_EQ(parse_shard_format("raw_uint16", "data.format"), ShardFormat::kRawUint16);
  EXPECT_EQ(parse_shard_format("llm.c", "data.format"), ShardFormat::kLlmc);
  EXPECT_THROW(parse_shard_format("nanogpt", "data.format"), std::invalid_argument);
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
  EXPECT_NE(e.find("magic expected 20240520 (uint16 tokens) or 20240801 (uint32 tokens), got 12345"),
            std::string::npos) << e;
}

TEST_F(ShardTest, BadVersionRejected) {
  write_token_shard(path("v.bin"), {1, 2, 3}, 2);
  {
    std::fstream f(path("v.bin"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4);
    const int32_t version = 7;
    f.write(reinterpret_cast<const char*>(&version), 4);
  }
  const std::string e = error_of(path("v.bin"));
  EXPECT_NE(e.find("v.bin: header version expected 1 (uint16 tokens) or 2"), std::string::npos) << e;
  EXPECT_NE(e.find("got 7"), std::string::npos) << e;
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
