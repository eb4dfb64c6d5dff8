// Data sources as the loop sees them: shard windows come from the right split, batches
// are a pure function of their index, packed batches carry cu_seqlens at EOS, byte mode
// reads text as bytes, non-regular files and ids past the vocabulary are refused with the
// key and the place, and the prefetcher hands out batches in index order.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

#include "../core/fifo_guard.h"

#include "comba/train/data/data_source.h"
#include "comba/core/file_util.h"
#include "comba/nn/labels.h"
#include "comba/train/data/prefetcher.h"
#include "comba/train/data/recall_task.h"
#include "comba/train/data/token_shard.h"
#include "support/scratch_dir.h"

namespace comba::train {
namespace {

using nn::kIgnoreIndex;

std::string fresh_dir(const std::string& name) { return comba::testing::fresh_dir("data_" + name); }

bool same(const Batch& a, const Batch& b) {
  return torch::equal(a.input_ids, b.input_ids) && torch::equal(a.labels, b.labels);
}

DataOptions shard_options(const std::string& train_files, const std::string& val_files) {
  DataOptions o;
  o.kind = "shards";
  o.train_files = train_files;
  o.val_files = val_files;
  return o;
}

BatchOptions batch_shape(int64_t micro_batch_size, int64_t seq_len) {
  BatchOptions shape;
  shape.micro_batch_size = micro_batch_size;
  shape.seq_len = seq_len;
  return shape;
}

TEST(ShardSource, WindowsFromTheirSplitAndPureInIndex) {
  const auto dir = fresh_dir("split");
  // Train tokens are 10..59 (uint16 and uint32 files mixed), val tokens 100..149.
  std::vector<uint32_t> train_a, train_b, val;
  for (uint32_t i = 0; i < 500; ++i) {
    train_a.push_back(10 + i % 50);
    train_b.push_back(10 + (i * 7) % 50);
    val.push_back(100 + i % 50);
  }
  write_token_shard(core::join_path(dir, "d_train_000.bin"), train_a, 2);
  write_token_shard(core::join_path(dir, "d_train_001.bin"), train_b, 4);
  write_token_shard(core::join_path(dir, "d_val_000.bin"), val, 2);
  DataOptions o = shard_options(core::join_path(dir, "d_train_*.bin"), core::join_path(dir, "d_val_*.bin"));
  const BatchOptions shape = batch_shape(3, 16);
  const auto source = make_data_source(o, shape, 11, 200, 2);
  for (int64_t i = 0; i < 20; ++i) {
    const Batch b = source->train_batch(i);
    ASSERT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{3, 16}));
    EXPECT_GE(b.input_ids.min().item<int64_t>(), 10);
    EXPECT_LT(b.input_ids.max().item<int64_t>(), 60);
    EXPECT_TRUE(torch::equal(b.labels, b.input_ids));
    EXPECT_EQ(b.num_targets, 3 * 15);
    const Batch e = source->eval_batch(i);
    EXPECT_GE(e.input_ids.min().item<int64_t>(), 100);
    // Consecutive tokens of a window are consecutive tokens of one file.
    const auto row = e.input_ids[0];
    for (int t = 1; t < 16; ++t) {
      EXPECT_EQ((row[t].item<int64_t>() - 100), (row[t - 1].item<int64_t>() - 100 + 1) % 50);
    }
  }
  EXPECT_TRUE(same(source->train_batch(7), source->train_batch(7)));
  EXPECT_FALSE(same(source->train_batch(7), source->train_batch(8)));
  core::remove_tree(dir);
}

// data.format raw_uint16 (nanoGPT's header-less train.bin): the same tokens as a headered
// shard give the same batches, and a bad id is placed at its byte offset without a header.
TEST(ShardSource, RawUint16FilesGiveTheSameBatchesAsHeaderedShards) {
  const auto dir = fresh_dir("raw");
  std::vector<uint32_t> train, val;
  for (uint32_t i = 0; i < 300; ++i) {
    train.push_back((i * 13) % 97);
    val.push_back(100 + i % 50);
  }
  const auto write_raw = [](const std::string& path, const std::vector<uint32_t>& tokens) {
    std::ofstream out(path, std::ios::binary);
    for (const uint32_t t : tokens) {
      const auto v = static_cast<uint16_t>(t);
      out.write(reinterpret_cast<const char*>(&v), 2);
    }
  };
  write_token_shard(core::join_path(dir, "h_train.bin"), train, 2);
  write_token_shard(core::join_path(dir, "h_val.bin"), val, 2);
  write_raw(core::join_path(dir, "train.bin"), train);
  write_raw(core::join_path(dir, "val.bin"), val);
  const BatchOptions shape = batch_shape(2, 24);
  DataOptions headered = shard_options(core::join_path(dir, "h_train.bin"), core::join_path(dir, "h_val.bin"));
  DataOptions raw = shard_options(core::join_path(dir, "train.bin"), core::join_path(dir, "val.bin"));
  raw.format = "raw_uint16";
  const auto a = make_data_source(headered, shape, 5, 200, 2);
  const auto b = make_data_source(raw, shape, 5, 200, 2);
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_TRUE(same(a->train_batch(i), b->train_batch(i))) << i;
    EXPECT_TRUE(same(a->eval_batch(i), b->eval_batch(i))) << i;
  }
  // Windows are real file contents: consecutive val tokens in the raw file.
  const auto row = b->eval_batch(0).input_ids[0];
  for (int t = 1; t < 24; ++t) {
    EXPECT_EQ(row[t].item<int64_t>() - 100, (row[t - 1].item<int64_t>() - 100 + 1) % 50);
  }
  // Read as llm.c shards, the header-less files are refused naming the file.
  raw.format = "llm.c";
  try {
    make_data_source(raw, shape, 5, 200, 2);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(core::join_path(dir, "train.bin") +
                                         ": not a token shard: 600 bytes, shorter than the 1024-byte header "
                                         "(header-less uint16 tokens are read with data.format: raw_uint16)"),
              std::string::npos)
        << e.what();
  }
  // An id past the vocabulary: byte offset 2 * index, no header to skip.
  std::vector<uint32_t> bad(20, 7);
  bad[13] = 300;
  write_raw(core::join_path(dir, "bad.bin"), bad);
  raw = shard_options(core::join_path(dir, "bad.bin"), core::join_path(dir, "bad.bin"));
  raw.format = "raw_uint16";
  try {
    make_data_source(raw, batch_shape(1, 32), 0, 256, 2)->train_batch(0);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.bin: token 13 (byte offset 26) is id 300"), std::string::npos)
        << e.what();
  }
  core::remove_tree(dir);
}

TEST(ShardSource, PackedDocumentsGetCuSeqlens) {
  const auto dir = fresh_dir("packed");
  const uint32_t eos = 2;
  std::vector<uint32_t> tokens;
  for (int doc = 0; doc < 100; ++doc) {
    for (int t = 0; t < 3 + doc % 5; ++t) tokens.push_back(10 + t);
    tokens.push_back(eos);
  }
  write_token_shard(core::join_path(dir, "p_train.bin"), tokens, 2);
  write_token_shard(core::join_path(dir, "p_val.bin"), tokens, 2);
  DataOptions o = shard_options(core::join_path(dir, "p_train.bin"), core::join_path(dir, "p_val.bin"));
  o.pack_documents = true;
  const BatchOptions shape = batch_shape(2, 20);
  const auto source = make_data_source(o, shape, 1, 64, /*eos_id=*/eos);
  const Batch b = source->train_batch(3);
  ASSERT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{1, 40}));
  ASSERT_TRUE(b.cu_seqlens.defined());
  const auto cu = b.cu_seqlens;
  EXPECT_EQ(cu[0].item<int64_t>(), 0);
  EXPECT_EQ(cu[-1].item<int64_t>(), 40);
  int64_t starts_ignored = 0;
  for (int64_t j = 1; j + 1 < cu.size(0); ++j) {
    const int64_t at = cu[j].item<int64_t>();
    EXPECT_EQ(b.input_ids[0][at - 1].item<int64_t>(), eos);  // a boundary follows every EOS
    EXPECT_EQ(b.labels[0][at].item<int64_t>(), kIgnoreIndex);
    ++starts_ignored;
  }
  EXPECT_GE(starts_ignored, 3);
  EXPECT_EQ(b.num_targets, 39 - starts_ignored);
  core::remove_tree(dir);
}

TEST(ByteSource, TextAsBytesWithHeldOutTail) {
  const auto dir = fresh_dir("bytes");
  std::string text;
  for (int i = 0; i < 200; ++i) text += "abcdefghij";
  std::ofstream(core::join_path(dir, "a.txt")) << text;
  DataOptions o;
  o.kind = "bytes";
  o.text_files = core::join_path(dir, "*.txt");
  o.val_fraction = 0.25;
  const BatchOptions shape = batch_shape(2, 8);
  EXPECT_THROW(make_data_source(o, shape, 0, 128, 2), std::invalid_argument);  // vocab < 259
  const auto source = make_data_source(o, shape, 0, ByteVocab::kSize, 2);
  const Batch b = source->train_batch(0);
  EXPECT_GE(b.input_ids.min().item<int64_t>(), 'a');
  EXPECT_LE(b.input_ids.max().item<int64_t>(), 'j');
  o.text_files = core::join_path(dir, "none_*.txt");
  try {
    make_data_source(o, shape, 0, ByteVocab::kSize, 2);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("data.text_files: no file matches"), std::string::npos);
  }
  core::remove_tree(dir);
}

// benchmarks/loss_parity.py feeds fla the windows comba-train draws, computed by its own
// Python copy of the sampler; the offsets below are that script's (window_starts with seed
// 1234, 3 rows of 32 bytes). Every 32 bytes of this text occur once, so each row's bytes
// locate its window.
TEST(ByteSource, WindowsAreTheOnesTheParityScriptDraws) {
  const auto dir = fresh_dir("bytes_parity");
  std::string text;
  char line[16];
  for (int k = 0; k < 2000; ++k) {
    std::snprintf(line, sizeof(line), "%07d\n", k);
    text += line;
  }
  std::ofstream(core::join_path(dir, "a.txt")) << text;
  DataOptions o;
  o.kind = "bytes";
  o.text_files = core::join_path(dir, "*.txt");
  o.val_fraction = 0.25;  // train bytes [0, 12000), held out [12000, 16000)
  const auto source = make_data_source(o, batch_shape(3, 32), 1234, ByteVocab::kSize, 2);
  const auto starts = [&](const Batch& b) {
    std::vector<size_t> out;
    for (int64_t r = 0; r < 3; ++r) {
      const auto row = b.input_ids[r];
      std::string bytes;
      for (int64_t c = 0; c < 32; ++c) bytes += static_cast<char>(row[c].item<int64_t>());
      out.push_back(text.find(bytes));
    }
    return out;
  };
  EXPECT_EQ(starts(source->train_batch(0)), (std::vector<size_t>{11280, 5871, 6579}));
  EXPECT_EQ(starts(source->train_batch(7)), (std::vector<size_t>{11262, 8066, 1264}));
  EXPECT_EQ(starts(source->eval_batch(0)), (std::vector<size_t>{13346, 13124, 15171}));
  core::remove_tree(dir);
}

// Case 7: a FIFO among data.text_files used to block forever in open().
TEST(ByteSource, FifoRefusedAtOnceNamingKeyAndPath) {
  const auto dir = fresh_dir("fifo");
  std::ofstream(core::join_path(dir, "a.txt")) << "some text to train on";
  const std::string fifo = core::join_path(dir, "b.txt");
  comba::testing::make_fifo(fifo);
  DataOptions o;
  o.kind = "bytes";
  o.text_files = core::join_path(dir, "*.txt");
  BatchOptions shape;
  const auto r = comba::testing::call_without_hang(
      [&] { make_data_source(o, shape, 0, ByteVocab::kSize, 2); }, fifo);
  EXPECT_FALSE(r.hung) << "open() blocked on the FIFO";
  EXPECT_EQ(r.message, "data.text_files: " + fifo + " is a FIFO (named pipe), expected a regular file");
  core::remove_tree(dir);
}

// Case 11: /dev/null (or a process substitution's pipe) used to say "not a regular file:
// No such file or directory" (a stale errno).
TEST(ByteSource, DeviceNamedWithoutStaleErrno) {
  DataOptions o;
  o.kind = "bytes";
  o.text_files = "/dev/null";
  BatchOptions shape;
  errno = ENOENT;
  try {
    make_data_source(o, shape, 0, ByteVocab::kSize, 2);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "data.text_files: /dev/null is a character device, expected a regular file");
  }
}

TEST(ShardSource, FifoRefusedNamingItsKey) {
  const auto dir = fresh_dir("shard_fifo");
  write_token_shard(core::join_path(dir, "t.bin"), std::vector<uint32_t>(100, 5), 2);
  const std::string fifo = core::join_path(dir, "v.bin");
  comba::testing::make_fifo(fifo);
  DataOptions o = shard_options(core::join_path(dir, "t.bin"), fifo);
  BatchOptions shape;
  const auto r = comba::testing::call_without_hang([&] { make_data_source(o, shape, 0, 64, 2); }, fifo);
  EXPECT_FALSE(r.hung);
  EXPECT_EQ(r.message, "data.val_files: " + fifo + " is a FIFO (named pipe), expected a regular file");
  core::remove_tree(dir);
}

// Case 8: an id past the vocabulary used to fail deep inside the embedding ("index out of
// range in self"), only in the step whose batch held it. Now the batch that holds it names
// the file, the offset, the id and the vocabulary.
TEST(ShardSource, TokenIdsPastTheVocabularyNamedWhereTheyAre) {
  const auto dir = fresh_dir("ids");
  // 20 tokens < seq_len: every window is the whole file, so every batch holds the bad id.
  std::vector<uint32_t> bad(20, 7);
  bad[13] = 300;
  std::vector<uint32_t> edge(20, 255);  // the largest id that fits a vocabulary of 256
  write_token_shard(core::join_path(dir, "bad.bin"), bad, 2);
  write_token_shard(core::join_path(dir, "edge.bin"), edge, 4);
  DataOptions o = shard_options(core::join_path(dir, "edge.bin"), core::join_path(dir, "bad.bin"));
  const BatchOptions shape = batch_shape(2, 32);
  const auto source = make_data_source(o, shape, 0, 256, 2);
  EXPECT_EQ(source->train_batch(0).input_ids.max().item<int64_t>(), 255);
  const std::string expected = "data.val_files: " + core::join_path(dir, "bad.bin") +
                               ": token 13 (byte offset 1050) is id 300, outside the model's "
                               "vocabulary: model.vocab_size is 256 (ids must be < 256)";
  try {
    source->eval_batch(0);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), expected);
  }
  // Packed windows are checked too.
  o.pack_documents = true;
  o.train_files = o.val_files;
  const auto packed = make_data_source(o, shape, 0, 256, 2);
  try {
    packed->train_batch(3);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("data.train_files: " + core::join_path(dir, "bad.bin") +
                                         ": token 13 (byte offset 1050) is id 300"),
              std::string::npos)
        << e.what();
  }
  // A separator outside the vocabulary is refused when the source is built.
  try {
    o.eos_id = 256;
    make_data_source(o, shape, 0, 256, 2);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "data.eos_id: expected a token id in [0, model.vocab_size = 256), got 256");
  }
  core::remove_tree(dir);
}

// Random tokens for long-context benchmarks: with random_doc_len and pack_documents, each
// micro-batch is one row of equal documents (EOS last) separated by cu_seqlens.
TEST(RandomSource, PackedDocumentsOfTheGivenLength) {
  DataOptions options;
  options.kind = "random";
  options.pack_documents = true;
  options.random_doc_len = 8;
  BatchOptions batch;
  batch.micro_batch_size = 2;
  batch.seq_len = 16;
  const auto source = make_data_source(options, batch, 3, 50, /*eos_id=*/7);
  const Batch b = source->train_batch(4);
  ASSERT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{1, 32}));
  EXPECT_TRUE(torch::equal(b.cu_seqlens, torch::tensor(std::vector<int64_t>{0, 8, 16, 24, 32})));
  for (int64_t end : {7, 15, 23, 31}) EXPECT_EQ(b.input_ids[0][end].item<int64_t>(), 7) << end;
  EXPECT_TRUE(same(b, source->train_batch(4)));
}

TEST(Prefetcher, BatchesInIndexOrderFromStart) {
  DataOptions o;
  const BatchOptions shape = batch_shape(2, 40);
  const auto source = make_data_source(o, shape, 3, 128, 2);
  Prefetcher prefetch(*source, /*start=*/5, /*depth=*/3, /*pin_memory=*/false);
  for (int64_t i = 5; i < 12; ++i) {
    EXPECT_EQ(prefetch.position(), i);
    EXPECT_TRUE(same(prefetch.next(), source->train_batch(i))) << i;
  }
}

TEST(RecallSource, AnswersAreScoredOnlyAtValuePositions) {
  DataOptions o;
  const BatchOptions shape = batch_shape(4, 40);
  const auto source = make_data_source(o, shape, 3, 128, 2);
  const Batch b = source->train_batch(0);
  EXPECT_EQ(b.num_targets, 4 * o.recall.num_queries);
  EXPECT_EQ((b.labels != kIgnoreIndex).sum().item<int64_t>(), 4 * o.recall.num_queries);
}

}  // namespace
}  // namespace comba::train
