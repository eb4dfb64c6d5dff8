// The loop end to end on the CPU:
// - a run stopped at step k and resumed gives bit for bit the losses of an uninterrupted
//   run (fp32), and a checkpoint cut short on purpose is skipped for the previous one;
// - the outputs land in the run directory (resolved config, metrics JSONL, SVG, log);
// - a non-finite loss stops the run with the step named;
// - bf16 mixed precision keeps fp32 master weights and trains;
// - the built-in default config, shortened, learns recall well above chance.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "comba/train/checkpoint_file.h"
#include "comba/train/config.h"
#include "comba/train/trainer.h"

namespace comba::train {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("comba_trainer_" + name);
  fs::remove_all(dir);
  return dir.string();
}

// A tiny recall run: hidden 32, 2 layers, 8 steps, a log line and loss every step.
TrainConfig tiny(const std::string& run_dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {
      "device=cpu", "model.vocab_size=48", "model.hidden_size=32", "model.num_heads=2",
      "model.head_dim=16", "data.recall.num_pairs=4", "data.recall.num_queries=4",
      "data.recall.key_vocab=16", "data.recall.value_vocab=16", "batch.micro_batch_size=4",
      "batch.seq_len=24", "batch.grad_accum_steps=2", "train.max_steps=8",
      "schedule.warmup_steps=2", "optimizer.lr=0.01", "logging.interval=1", "eval.interval=0",
      "eval.batches=2", "checkpoint.interval=2", "checkpoint.keep_last=3",
      "logging.progress_bar=false", "logging.run_dir=" + run_dir};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return config_from_yaml("", sets);
}

std::map<int64_t, double> losses(const TrainSummary& s) {
  return {s.losses.begin(), s.losses.end()};
}

TEST(Trainer, ResumeAfterStopContinuesTheSameLossCurveBitForBit) {
  const std::string straight_dir = fresh_dir("straight");
  const TrainSummary straight = Trainer(tiny(straight_dir)).run();
  ASSERT_EQ(straight.final_step, 8);
  ASSERT_EQ(straight.losses.size(), 8u);

  const std::string split_dir = fresh_dir("split");
  const TrainSummary first = Trainer(tiny(split_dir, {"train.stop_at_step=5"})).run();
  EXPECT_TRUE(first.stopped_early);
  EXPECT_EQ(first.final_step, 5);
  const TrainSummary second = Trainer(tiny(split_dir)).run();
  EXPECT_EQ(second.start_step, 5);
  EXPECT_EQ(second.final_step, 8);
  auto all = losses(first);
  for (const auto& [step, loss] : second.losses) all[step] = loss;
  const auto expected = losses(straight);
  ASSERT_EQ(all.size(), expected.size());
  for (const auto& [step, loss] : expected) EXPECT_EQ(all.at(step), loss) << "step " << step;
  ASSERT_TRUE(straight.last_eval && second.last_eval);
  EXPECT_EQ(straight.last_eval->loss, second.last_eval->loss);

  // The run directory tells one story: 8 train lines (the stopped run's are kept, none
  // duplicated), the resolved config, the plot and the log.
  std::ifstream metrics(split_dir + "/metrics.jsonl");
  int train_lines = 0;
  for (std::string line; std::getline(metrics, line);) {
    train_lines += line.find("\"type\": \"train\"") != std::string::npos;
  }
  EXPECT_EQ(train_lines, 8);
  EXPECT_TRUE(fs::exists(split_dir + "/config.yaml"));
  EXPECT_TRUE(fs::exists(split_dir + "/loss_curve.svg"));
  EXPECT_TRUE(fs::exists(split_dir + "/train.log"));
  EXPECT_NO_THROW(load_config(split_dir + "/config.yaml"));
  fs::remove_all(straight_dir);
  fs::remove_all(split_dir);
}

TEST(Trainer, TruncatedCheckpointIsSkippedForThePreviousOne) {
  const std::string straight_dir = fresh_dir("straight2");
  const auto expected = losses(Trainer(tiny(straight_dir)).run());

  const std::string dir = fresh_dir("truncated");
  Trainer(tiny(dir, {"train.stop_at_step=5"})).run();  // checkpoints at 2, 4, 5
  const std::string newest = checkpoint_path(dir + "/checkpoints", 5);
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);
  const TrainSummary resumed = Trainer(tiny(dir)).run();
  EXPECT_EQ(resumed.start_step, 4);
  EXPECT_EQ(resumed.resumed_from, checkpoint_path(dir + "/checkpoints", 4));
  for (const auto& [step, loss] : resumed.losses) EXPECT_EQ(loss, expected.at(step)) << step;
  EXPECT_EQ(resumed.final_step, 8);
  fs::remove_all(straight_dir);
  fs::remove_all(dir);
}

TEST(Trainer, ResumeRequiredWithoutCheckpointFails) {
  const std::string dir = fresh_dir("nothing");
  EXPECT_THROW(Trainer(tiny(dir), ResumeMode::required), std::runtime_error);
  fs::remove_all(dir);
}

TEST(Trainer, NonFiniteLossStopsWithTheStepNamed) {
  const std::string dir = fresh_dir("nan");
  // An absurd learning rate blows the weights up after the first step.
  const TrainConfig c = tiny(dir, {"optimizer.lr=1e30", "schedule.warmup_steps=0",
                                   "schedule.kind=constant", "train.grad_clip=0"});
  try {
    Trainer(c).run();
    FAIL() << "expected a NonFiniteError";
  } catch (const NonFiniteError& e) {
    EXPECT_GE(e.step(), 1);
    EXPECT_NE(std::string(e.what()).find("at step " + std::to_string(e.step())), std::string::npos)
        << e.what();
    // No checkpoint after the bad step.
    for (const auto& [step, path] : list_checkpoints(dir + "/checkpoints")) EXPECT_LT(step, e.step());
  }
  fs::remove_all(dir);
}

TEST(Trainer, Bf16MixedPrecisionTrains) {
  const std::string dir = fresh_dir("bf16");
  const TrainSummary s = Trainer(tiny(dir, {"precision=bf16", "train.max_steps=4",
                                            "checkpoint.interval=0"})).run();
  ASSERT_EQ(s.losses.size(), 4u);
  for (const auto& [step, loss] : s.losses) EXPECT_TRUE(std::isfinite(loss));
  fs::remove_all(dir);
}

TEST(Trainer, DefaultConfigLearnsRecallWellAboveChance) {
  const std::string dir = fresh_dir("default");
  TrainConfig c = load_config(std::string(COMBA_SOURCE_DIR) + "/configs/default.yaml",
                              {"device=cpu", "logging.run_dir=" + dir, "train.max_steps=" COMBA_LEARN_STEPS,
                               "eval.interval=0", "checkpoint.interval=0", "logging.interval=50"});
  const TrainSummary s = Trainer(c).run();
  ASSERT_TRUE(s.last_eval.has_value());
  const double chance = 1.0 / static_cast<double>(c.data.recall.num_pairs);
  EXPECT_GT(s.last_eval->accuracy, 3 * chance) << "accuracy " << s.last_eval->accuracy;
  // Cross entropy of a uniform guess over the value vocabulary is log(value_vocab).
  EXPECT_LT(s.last_eval->loss, 0.6 * std::log(static_cast<double>(c.data.recall.value_vocab)));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace comba::train
