// Checkpoint files: atomic write round trip, truncation and corruption detected, names
// ordered by step, retention of the last N; metrics JSONL rewinding; the SVG plot.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "comba/train/checkpoint_file.h"
#include "comba/core/file_util.h"
#include "comba/train/loss_plot.h"
#include "comba/train/metrics_log.h"

namespace comba::train {
namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = "/tmp/comba_ckptfile_" + name;
  core::remove_tree(dir);
  core::make_directories(dir);
  return dir;
}

TEST(CheckpointFile, RoundTripAndNoTemporaryLeft) {
  const auto dir = fresh_dir("roundtrip");
  std::string payload(100000, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
  const std::string p = checkpoint_path(dir, 12);
  write_checkpoint_file(p, payload);
  std::string why;
  const auto back = read_checkpoint_file(p, &why);
  ASSERT_TRUE(back.has_value()) << why;
  EXPECT_EQ(*back, payload);
  EXPECT_EQ(core::list_directory(dir).size(), 1u);
  core::remove_tree(dir);
}

TEST(CheckpointFile, TruncatedAndCorruptedDetected) {
  const auto dir = fresh_dir("damaged");
  const std::string p = checkpoint_path(dir, 3);
  write_checkpoint_file(p, std::string(5000, 'x'));
  core::truncate_file(p, core::file_size(p) - 10);
  std::string why;
  EXPECT_FALSE(read_checkpoint_file(p, &why).has_value());
  EXPECT_NE(why.find("truncated"), std::string::npos) << why;

  write_checkpoint_file(p, std::string(5000, 'x'));
  {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3000);
    f.put('y');
  }
  EXPECT_FALSE(read_checkpoint_file(p, &why).has_value());
  EXPECT_NE(why.find("checksum"), std::string::npos) << why;

  std::ofstream(core::join_path(dir, "step_0000000009.ckpt")) << "garbage";
  EXPECT_FALSE(read_checkpoint_file(core::join_path(dir, "step_0000000009.ckpt"), &why).has_value());
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
