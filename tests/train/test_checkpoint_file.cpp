// Checkpoint files: atomic write round trip, streamed payloads and range reads, files of
// the earlier writer, truncation and corruption detected, FIFOs refused, names ordered by
// step, retention of the last N; metrics JSONL rewinding; the SVG plot.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include "../core/fifo_guard.h"

#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/core/file_util.h"
#include "comba/train/metrics/loss_plot.h"
#include "comba/train/metrics/metrics_log.h"
#include "support/scratch_dir.h"

namespace comba::train {
namespace {

std::string fresh_dir(const std::string& name) { return comba::testing::fresh_dir("ckptfile_" + name); }

std::optional<std::string> read_payload(const std::string& path, std::string* why) {
  const auto file = CheckpointReader::open(path, why);
  if (!file) return std::nullopt;
  return file->read_all();
}

TEST(CheckpointFile, RoundTripAndNoTemporaryLeft) {
  const auto dir = fresh_dir("roundtrip");
  std::string payload(100000, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
  const std::string p = checkpoint_path(dir, 12);
  write_checkpoint_file(p, payload);
  std::string why;
  const auto back = read_payload(p, &why);
  ASSERT_TRUE(back.has_value()) << why;
  EXPECT_EQ(*back, payload);
  EXPECT_EQ(core::list_directory(dir).size(), 1u);
  core::remove_tree(dir);
}

// The payload arrives in pieces (as torch's zip writer hands it over) and is read back at
// any offset without loading the file.
TEST(CheckpointFile, StreamedPiecesAndRangeReads) {
  const auto dir = fresh_dir("streamed");
  std::string payload(3 << 20, '\0');  // larger than the writer's and the reader's buffers
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>((i * 131) % 251);
  const std::string p = checkpoint_path(dir, 1);
  write_checkpoint_file(p, [&](const PayloadSink& sink) {
    for (size_t at = 0; at < payload.size();) {
      const size_t n = std::min<size_t>(payload.size() - at, 1 + at % 70001);
      sink(payload.data() + at, n);
      at += n;
    }
  });
  std::string why;
  const auto file = CheckpointReader::open(p, &why);
  ASSERT_TRUE(file.has_value()) << why;
  EXPECT_EQ(file->payload_size(), payload.size());
  std::string piece(1000, '\0');
  ASSERT_EQ(file->read(2000000, piece.data(), piece.size()), piece.size());
  EXPECT_EQ(piece, payload.substr(2000000, 1000));
  EXPECT_EQ(file->read(payload.size() - 10, piece.data(), piece.size()), 10u);  // clipped at the end
  EXPECT_EQ(file->read(payload.size(), piece.data(), piece.size()), 0u);
  EXPECT_EQ(file->read_all(), payload);
  core::remove_tree(dir);
}

// The frame of files written before the payload was streamed: magic, length, FNV-1a of
// the payload (built here by hand); such files still read.
TEST(CheckpointFile, FilesOfTheEarlierWriterRead) {
  const auto dir = fresh_dir("earlier");
  const std::string payload = "an archive of an earlier run";
  uint64_t hash = 14695981039346656037ull;
  for (const unsigned char c : payload) hash = (hash ^ c) * 1099511628211ull;
  const uint64_t size = payload.size();
  const std::string p = checkpoint_path(dir, 7);
  {
    std::ofstream out(p, std::ios::binary);
    out << "COMBACK1";
    out.write(reinterpret_cast<const char*>(&size), 8);
    out.write(reinterpret_cast<const char*>(&hash), 8);
    out << payload;
  }
  std::string why;
  const auto back = read_payload(p, &why);
  ASSERT_TRUE(back.has_value()) << why;
  EXPECT_EQ(*back, payload);
  core::remove_tree(dir);
}

// Frame version 2: magic COMBACK2, length, then four FNV-style lanes over the payload's
// 64-bit words (zero-padded to whole 32-byte blocks) folded with the length. Recomputed
// here word by word from the whole payload.
TEST(CheckpointFile, WrittenFrameMatchesAReferenceChecksum) {
  const auto dir = fresh_dir("frame2");
  std::string payload(100003, '\0');  // not a whole number of blocks
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>((i * 31 + 5) % 253);
  const std::string p = checkpoint_path(dir, 2);
  write_checkpoint_file(p, [&](const PayloadSink& sink) {  // in odd pieces
    for (size_t at = 0; at < payload.size(); at += 999) sink(payload.data() + at, std::min<size_t>(999, payload.size() - at));
  });
  const uint64_t prime = 1099511628211ull;
  const uint64_t offset = 14695981039346656037ull;
  std::string padded = payload;
  padded.resize((payload.size() / 32 + 1) * 32, '\0');
  uint64_t lanes[4] = {offset, offset + 1, offset + 2, offset + 3};
  for (size_t w = 0; w < padded.size() / 8; ++w) {
    uint64_t word = 0;
    for (int b = 7; b >= 0; --b) word = (word << 8) | static_cast<unsigned char>(padded[w * 8 + b]);
    lanes[w % 4] = (lanes[w % 4] ^ word) * prime;
  }
  uint64_t expected = offset ^ payload.size();
  for (const uint64_t lane : lanes) {
    expected = (expected ^ lane) * prime;
    expected ^= expected >> 32;
  }
  std::ifstream in(p, std::ios::binary);
  char magic[8];
  uint64_t size = 0;
  uint64_t hash = 0;
  in.read(magic, 8);
  in.read(reinterpret_cast<char*>(&size), 8);
  in.read(reinterpret_cast<char*>(&hash), 8);
  EXPECT_EQ(std::string(magic, 8), "COMBACK2");
  EXPECT_EQ(size, payload.size());
  EXPECT_EQ(hash, expected);
  core::remove_tree(dir);
}

TEST(CheckpointFile, TruncatedAndCorruptedDetected) {
  const auto dir = fresh_dir("damaged");
  const std::string p = checkpoint_path(dir, 3);
  write_checkpoint_file(p, std::string(5000, 'x'));
  core::truncate_file(p, core::file_size(p) - 10);
  std::string why;
  EXPECT_FALSE(read_payload(p, &why).has_value());
  EXPECT_NE(why.find("truncated"), std::string::npos) << why;

  write_checkpoint_file(p, std::string(5000, 'x'));
  {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3000);
    f.put('y');
  }
  EXPECT_FALSE(read_payload(p, &why).has_value());
  EXPECT_NE(why.find("checksum"), std::string::npos) << why;

  std::ofstream(core::join_path(dir, "step_0000000009.ckpt")) << "garbage";
  EXPECT_FALSE(read_payload(core::join_path(dir, "step_0000000009.ckpt"), &why).has_value());
  EXPECT_FALSE(read_payload(core::join_path(dir, "missing.ckpt"), &why).has_value());
  EXPECT_NE(why.find("cannot open: No such file or directory"), std::string::npos) << why;
  core::remove_tree(dir);
}

TEST(CheckpointFile, FifoRefusedWithoutBlocking) {
  const auto dir = fresh_dir("fifo");
  const std::string p = core::join_path(dir, "step_0000000001.ckpt");
  comba::testing::make_fifo(p);
  std::string why;
  const auto r = comba::testing::call_without_hang(
      [&] { EXPECT_FALSE(CheckpointReader::open(p, &why).has_value()); }, p);
  EXPECT_FALSE(r.hung);
  EXPECT_EQ(why, p + ": is a FIFO (named pipe), expected a checkpoint file");
  EXPECT_TRUE(list_checkpoints(dir).empty());  // only regular files count as checkpoints
  core::remove_tree(dir);
}

TEST(CheckpointFile, ListAndPruneKeepNewest) {
  const auto dir = fresh_dir("prune");
  for (const int64_t step : {100, 5, 20, 1000}) {
    write_checkpoint_file(checkpoint_path(dir, step), "s");
  }
  std::ofstream(core::join_path(dir, "unrelated.txt")) << "keep me";
  std::ofstream(core::join_path(dir, "step_0000000001.ckpt.tmp.99")) << "stale";
  auto all = list_checkpoints(dir);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all.front().first, 5);
  EXPECT_EQ(all.back().first, 1000);
  prune_checkpoints(dir, 2);
  all = list_checkpoints(dir);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 100);
  EXPECT_EQ(all[1].first, 1000);
  EXPECT_TRUE(core::path_exists(core::join_path(dir, "unrelated.txt")));
  EXPECT_FALSE(core::path_exists(core::join_path(dir, "step_0000000001.ckpt.tmp.99")));
  EXPECT_TRUE(list_checkpoints(core::join_path(dir, "missing")).empty());
  core::remove_tree(dir);
}

TEST(MetricsLog, JsonLinesAndRewindOnResume) {
  const auto dir = fresh_dir("metrics");
  const std::string p = core::join_path(dir, "metrics.jsonl");
  {
    MetricsLog log(p);
    for (int64_t s = 1; s <= 5; ++s) {
      log.write(JsonLine().add("type", "train").add("step", s).add("loss", 1.5 / s));
    }
  }
  {
    MetricsLog log(p, /*keep_through_step=*/3);
    log.write(JsonLine().add("type", "eval").add("step", int64_t{4}).add("name", "a\"b"));
  }
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "{\"type\": \"train\", \"step\": 1, \"loss\": 1.5}");
  EXPECT_EQ(lines[2], "{\"type\": \"train\", \"step\": 3, \"loss\": 0.5}");
  EXPECT_EQ(lines[3], "{\"type\": \"eval\", \"step\": 4, \"name\": \"a\\\"b\"}");
  EXPECT_EQ(step_of_json_line(lines[1]), 2);
  core::remove_tree(dir);
}

TEST(LossPlot, SvgHasEveryCurve) {
  LossCurves c;
  c.title = "test";
  for (int64_t s = 0; s < 10; ++s) c.train_loss.push_back({s, 3.0 - 0.2 * s});
  c.eval_loss = {{5, 2.0}, {9, 1.5}};
  c.eval_accuracy = {{5, 0.3}, {9, 0.9}};
  const std::string svg = render_loss_svg(c);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  size_t lines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 3u);
  EXPECT_NE(svg.find("eval accuracy"), std::string::npos);
}

}  // namespace
}  // namespace comba::train
