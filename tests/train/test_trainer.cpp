// The loop end to end on the CPU:
// - a run stopped at step k and resumed gives bit for bit the losses of an uninterrupted
//   run (fp32), and a checkpoint cut short on purpose is skipped for the previous one;
// - the outputs land in the run directory (resolved config, metrics JSONL, SVG, log);
// - a non-finite loss stops the run with the step named (the step that produced it);
// - a fresh start moves an earlier run aside; a resume with another model is refused
//   naming the key; a second trainer on a run directory is refused; output folders that
//   cannot be written stop the run before its first step;
// - bf16 (bf16 parameters, fp32 masters) tracks the fp32 loss curve, saves the fp32
//   masters and resumes bit for bit;
// - every train.recompute policy gives the fp32 loss curve of none; chunk_workspace
//   reaches every layer;
// - the built-in default config, shortened, learns recall well above chance.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fstream>

#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/train/config/config.h"
#include "comba/core/file_util.h"
#include "comba/train/optimizer.h"
#include "comba/train/data/token_shard.h"
#include "comba/train/trainer.h"
#include "comba/nn/causal_lm.h"
#include "support/tiny_config.h"
#include "support/scratch_dir.h"

namespace comba::train {
namespace {

// Removed, not created: the trainer creates its run directory.
std::string fresh_dir(const std::string& name) { return comba::testing::scratch_path("trainer_" + name); }

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

int train_lines(const std::string& metrics_path) {
  std::ifstream metrics(metrics_path);
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) {
    lines += line.find("\"type\": \"train\"") != std::string::npos;
  }
  return lines;
}

std::vector<int64_t> checkpoint_steps(const std::string& dir) {
  std::vector<int64_t> steps;
  for (const auto& [step, path] : list_checkpoints(dir)) steps.push_back(step);
  return steps;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// checkpoint.export_dir writes a model folder at the end; model.init_from starts another
// run from it: the folder's config replaces model.* and its weights the initialisation
// (a run with a vanishing learning rate then evaluates exactly like the exported model).
TEST(Trainer, ExportedFolderStartsANewRunWithItsConfigAndWeights) {
  const std::string first_dir = fresh_dir("export_first");
  const std::string folder = fresh_dir("export_folder");
  const TrainSummary first = Trainer(tiny(first_dir, {"checkpoint.export_dir=" + folder})).run();
  ASSERT_TRUE(core::path_exists(folder + "/config.json"));
  ASSERT_TRUE(core::path_exists(folder + "/model.safetensors"));

  const std::string second_dir = fresh_dir("export_second");
  TrainConfig second_config = tiny(second_dir, {"model.init_from=" + folder, "model.hidden_size=64",
                                                "train.max_steps=1", "optimizer.lr=1e-30",
                                                "schedule.warmup_steps=0"});
  Trainer second(second_config);
  const TrainSummary resumed = second.run();
  const TrainConfig resolved = load_config(second_dir + "/config.yaml");
  EXPECT_EQ(resolved.model.hidden_size, 32);  // from the folder, not the --set
  ASSERT_TRUE(first.last_eval && resumed.last_eval);
  EXPECT_NEAR(resumed.last_eval->loss, first.last_eval->loss, 1e-6 * first.last_eval->loss);
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
  EXPECT_TRUE(core::path_exists(split_dir + "/config.yaml"));
  EXPECT_TRUE(core::path_exists(split_dir + "/loss_curve.svg"));
  EXPECT_TRUE(core::path_exists(split_dir + "/train.log"));
  EXPECT_NO_THROW(load_config(split_dir + "/config.yaml"));
  core::remove_tree(straight_dir);
  core::remove_tree(split_dir);
}

TEST(Trainer, TruncatedCheckpointIsSkippedForThePreviousOne) {
  const std::string straight_dir = fresh_dir("straight2");
  const auto expected = losses(Trainer(tiny(straight_dir)).run());

  const std::string dir = fresh_dir("truncated");
  Trainer(tiny(dir, {"train.stop_at_step=5"})).run();  // checkpoints at 2, 4, 5
  const std::string newest = checkpoint_path(dir + "/checkpoints", 5);
  ASSERT_TRUE(core::path_exists(newest));
  core::truncate_file(newest, core::file_size(newest) / 2);
  const TrainSummary resumed = Trainer(tiny(dir)).run();
  EXPECT_EQ(resumed.start_step, 4);
  EXPECT_EQ(resumed.resumed_from, checkpoint_path(dir + "/checkpoints", 4));
  for (const auto& [step, loss] : resumed.losses) EXPECT_EQ(loss, expected.at(step)) << step;
  EXPECT_EQ(resumed.final_step, 8);
  // The damaged file was moved aside, so it no longer takes a keep_last slot.
  EXPECT_TRUE(core::path_exists(newest + ".unreadable"));
  for (const auto& [step, path] : list_checkpoints(dir + "/checkpoints")) EXPECT_NE(step, 5);
  core::remove_tree(straight_dir);
  core::remove_tree(dir);
}

TEST(Trainer, ResumeRequiredWithoutCheckpointFails) {
  const std::string dir = fresh_dir("nothing");
  EXPECT_THROW(Trainer(tiny(dir), ResumeMode::required), std::runtime_error);
  core::remove_tree(dir);
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
  core::remove_tree(dir);
}

// NaN weights after step 5 make step 6's loss NaN; the run logs every 4 steps, so the
// stop comes at step 8 and must name step 6 (it named the step before).
TEST(Trainer, NonFiniteStopNamesTheStepThatProducedIt) {
  const std::string dir = fresh_dir("nan_step");
  Trainer trainer(tiny(dir, {"logging.interval=4", "checkpoint.interval=0", "eval.interval=0"}));
  trainer.on_step([&](int64_t step) {
    if (step != 5) return;
    const torch::NoGradGuard no_grad;
    trainer.model()->parameters().front().fill_(std::nan(""));
  });
  try {
    trainer.run();
    FAIL() << "expected a NonFiniteError";
  } catch (const NonFiniteError& e) {
    EXPECT_EQ(e.step(), 6);
    EXPECT_TRUE(has(e.what(), "non-finite loss at step 6 (")) << e.what();
  }
  core::remove_tree(dir);
}

// --no-resume over a longer run: the old run moves to previous-1/ whole (checkpoints,
// metrics), the new run's checkpoints survive keep_last, and the next plain start resumes
// the new run (it used to resume the old one at step 8, and metrics.jsonl mixed both).
TEST(Trainer, FreshStartMovesAnOlderLongerRunAside) {
  const std::string dir = fresh_dir("fresh_over_longer");
  Trainer(tiny(dir)).run();  // steps 1-8; checkpoints 4, 6, 8 kept
  const TrainSummary second =
      Trainer(tiny(dir, {"train.max_steps=6", "train.stop_at_step=3"}), ResumeMode::never).run();
  EXPECT_EQ(second.start_step, 0);
  EXPECT_EQ(checkpoint_steps(dir + "/checkpoints"), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(checkpoint_steps(dir + "/previous-1/checkpoints"), (std::vector<int64_t>{4, 6, 8}));
  EXPECT_EQ(train_lines(dir + "/previous-1/metrics.jsonl"), 8);
  EXPECT_EQ(load_config(dir + "/previous-1/config.yaml").train.max_steps, 8);
  EXPECT_EQ(train_lines(dir + "/metrics.jsonl"), 3);

  const TrainSummary third = Trainer(tiny(dir, {"train.max_steps=6"})).run();
  EXPECT_EQ(third.start_step, 3);
  EXPECT_EQ(third.resumed_from, checkpoint_path(dir + "/checkpoints", 3));
  EXPECT_EQ(third.final_step, 6);
  EXPECT_EQ(train_lines(dir + "/metrics.jsonl"), 6);  // the new run's story alone
  EXPECT_EQ(train_lines(dir + "/previous-1/metrics.jsonl"), 8);
  core::remove_tree(dir);
}

// A resume with another vocab_size used to load the old embedding silently; another
// hidden_size failed inside forward. Both now stop before any tensor is loaded.
TEST(Trainer, ResumeWithAnotherModelNamesTheKeyAndBothValues) {
  const std::string dir = fresh_dir("other_model");
  Trainer(tiny(dir, {"train.stop_at_step=4"})).run();
  const std::string newest = checkpoint_path(dir + "/checkpoints", 4);
  for (const auto& [set, expected] :
       std::vector<std::pair<std::string, std::string>>{
           {"model.vocab_size=64", "model.vocab_size is 48 there and 64 in the config"},
           {"model.hidden_size=64", "model.hidden_size is 32 there and 64 in the config"}}) {
    try {
      Trainer trainer(tiny(dir, {set}));
      ADD_FAILURE() << set << ": expected a CheckpointMismatch";
    } catch (const CheckpointMismatch& e) {
      EXPECT_TRUE(has(e.what(), newest + ": the checkpoint was made for another model: " + expected))
          << e.what();
      EXPECT_TRUE(has(e.what(), "--no-resume")) << e.what();
    }
  }
  // The run directory still describes its checkpoints, and the same model resumes.
  EXPECT_EQ(load_config(dir + "/config.yaml").model.vocab_size, 48);
  EXPECT_EQ(Trainer(tiny(dir)).run().start_step, 4);
  core::remove_tree(dir);
}

// A checkpoint without an architecture record (older files, or another program's save)
// is still checked tensor by tensor; the same shapes load the saved values.
TEST(Trainer, CheckpointTensorOfAnotherShapeIsNamedWithBothShapes) {
  const std::string dir = fresh_dir("other_shape");
  torch::manual_seed(0);
  nn::CombaForCausalLM saved(comba::testing::tiny_train_config(48));
  const auto saved_optimizer = make_optimizer(*saved, OptimizerOptions{});
  TrainState state;
  state.step = 1;
  save_checkpoint(dir, state, *saved, *saved_optimizer, /*keep_last=*/3);

  nn::CombaForCausalLM bigger(comba::testing::tiny_train_config(64));
  const auto bigger_optimizer = make_optimizer(*bigger, OptimizerOptions{});
  try {
    load_checkpoint(checkpoint_path(dir, 1), *bigger, *bigger_optimizer);
    ADD_FAILURE() << "expected a CheckpointMismatch";
  } catch (const CheckpointMismatch& e) {
    EXPECT_TRUE(has(e.what(), "tensor model.embeddings.weight has shape [48, 32] in the checkpoint "
                              "and [64, 32] in the model")) << e.what();
  }
  EXPECT_THROW(load_latest_checkpoint(dir, *bigger, *bigger_optimizer), CheckpointMismatch);

  torch::manual_seed(1);
  nn::CombaForCausalLM same(comba::testing::tiny_train_config(48));
  const auto same_optimizer = make_optimizer(*same, OptimizerOptions{});
  EXPECT_EQ(load_checkpoint(checkpoint_path(dir, 1), *same, *same_optimizer).state.step, 1);
  const auto a = saved->named_parameters();
  const auto b = same->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].value(), b[i].value())) << a[i].key();
  }
  core::remove_tree(dir);
}

// One writer per run directory: a second trainer is refused naming the folder and the pid
// of the holder; the first one runs on.
TEST(Trainer, SecondTrainerOnTheSameRunDirIsRefused) {
  const std::string dir = fresh_dir("locked");
  Trainer first(tiny(dir, {"train.max_steps=2"}));
  try {
    Trainer second(tiny(dir, {"train.max_steps=2"}));
    ADD_FAILURE() << "expected the second trainer to be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(has(e.what(), "logging.run_dir \"" + dir + "\" is in use by another training run (pid " +
                                  std::to_string(::getpid()) + ")")) << e.what();
  }
  EXPECT_EQ(first.run().final_step, 2);
  core::remove_tree(dir);
}

// An output folder that cannot be written stops the run before step 1, naming its key
// (it used to train until the first checkpoint or the export, then lose the work).
TEST(Trainer, UnwritableOutputFolderFailsBeforeTheFirstStep) {
  const std::string root = fresh_dir("unwritable");
  core::make_directories(root);
  const std::string file = root + "/file";
  std::ofstream(file) << "not a folder";
  for (const auto& [key, path] : std::vector<std::pair<std::string, std::string>>{
           {"checkpoint.dir", file},
           {"checkpoint.dir", file + "/sub"},
           {"checkpoint.export_dir", file + "/sub"},
           {"logging.run_dir", file + "/sub"}}) {
    int steps = 0;
    try {
      Trainer trainer(tiny(root + "/run", {key + "=" + path}));
      trainer.on_step([&](int64_t) { ++steps; });
      trainer.run();
      ADD_FAILURE() << key << "=" << path << ": expected an error";
    } catch (const std::runtime_error& e) {
      EXPECT_TRUE(has(e.what(), key + ": cannot use \"" + path + "\" as an output directory"))
          << e.what();
    }
    EXPECT_EQ(steps, 0) << key << "=" << path;
  }
  core::remove_tree(root);
}

// precision bf16: bf16 parameters (copies of fp32 masters made once per step), no
// autocast. The loss curve tracks the fp32 run's within 0.02 per step (the bound
// nn's Bf16WeightsAndBf16AutocastRunAndStayClose puts on a bf16 loss); the checkpoint
// holds the fp32 masters (an fp32 model reads them, some beyond bf16's precision) and the
// model's bf16 weights are those masters rounded.
TEST(Trainer, Bf16TracksTheFp32LossCurveWithFp32MasterWeights) {
  const std::string fp32_dir = fresh_dir("bf16_reference");
  const TrainSummary fp32 = Trainer(tiny(fp32_dir, {"train.max_steps=4", "checkpoint.interval=0"})).run();
  const std::string dir = fresh_dir("bf16");
  Trainer trainer(tiny(dir, {"precision=bf16", "train.max_steps=4", "checkpoint.interval=0"}));
  const TrainSummary s = trainer.run();
  ASSERT_EQ(s.losses.size(), 4u);
  const auto expected = losses(fp32);
  for (const auto& [step, loss] : s.losses) EXPECT_NEAR(loss, expected.at(step), 0.02) << "step " << step;

  TrainConfig config = tiny(dir);
  nn::CombaForCausalLM saved(config.model);
  auto optimizer = make_optimizer(*saved, config.optimizer);
  load_checkpoint(checkpoint_path(config.checkpoint_dir(), 4), *saved, *optimizer);
  const auto bf16_params = trainer.model()->named_parameters();
  bool beyond_bf16 = false;
  for (const auto& item : saved->named_parameters()) {
    const auto& master = item.value();
    ASSERT_EQ(master.scalar_type(), torch::kFloat) << item.key();
    ASSERT_EQ(bf16_params[item.key()].scalar_type(), torch::kBFloat16) << item.key();
    EXPECT_TRUE(torch::equal(bf16_params[item.key()], master.to(torch::kBFloat16))) << item.key();
    beyond_bf16 = beyond_bf16 || !torch::equal(master, master.to(torch::kBFloat16).to(torch::kFloat));
  }
  EXPECT_TRUE(beyond_bf16) << "every saved weight is a bf16 value: the masters were not saved";
  core::remove_tree(fp32_dir);
  core::remove_tree(dir);
}

// A bf16 run stopped and resumed continues bit for bit: the masters (not their bf16
// copies) and AdamW state come back exactly.
TEST(Trainer, Bf16ResumeAfterStopContinuesBitForBit) {
  const std::string straight_dir = fresh_dir("bf16_straight");
  const TrainSummary straight = Trainer(tiny(straight_dir, {"precision=bf16", "train.max_steps=4"})).run();
  const std::string split_dir = fresh_dir("bf16_split");
  const TrainSummary first =
      Trainer(tiny(split_dir, {"precision=bf16", "train.max_steps=4", "train.stop_at_step=2"})).run();
  ASSERT_EQ(first.final_step, 2);
  const TrainSummary second = Trainer(tiny(split_dir, {"precision=bf16", "train.max_steps=4"})).run();
  EXPECT_EQ(second.start_step, 2);
  auto all = losses(first);
  for (const auto& [step, loss] : second.losses) all[step] = loss;
  const auto expected = losses(straight);
  ASSERT_EQ(all.size(), expected.size());
  for (const auto& [step, loss] : expected) EXPECT_EQ(all.at(step), loss) << "step " << step;
  core::remove_tree(straight_dir);
  core::remove_tree(split_dir);
}

TEST(Trainer, PackedShardsAndBytesTrainEndToEnd) {
  const std::string dir = fresh_dir("kinds");
  core::make_directories(dir);
  std::vector<uint32_t> tokens;
  for (uint32_t i = 0; i < 3000; ++i) tokens.push_back(i % 11 == 10 ? 2 : 3 + (i * 7) % 40);
  write_token_shard(core::join_path(dir, "t_train.bin"), tokens, 2);
  write_token_shard(core::join_path(dir, "t_val.bin"), tokens, 4);
  const TrainSummary shards = Trainer(tiny(core::join_path(dir, "run_shards"),
                                           {"data.kind=shards", "data.pack_documents=true",
                                            "data.train_files=" + core::join_path(dir, "t_train.bin"),
                                            "data.val_files=" + core::join_path(dir, "t_val.bin"),
                                            "train.max_steps=3"})).run();
  ASSERT_EQ(shards.losses.size(), 3u);
  ASSERT_TRUE(shards.last_eval.has_value());
  EXPECT_TRUE(std::isfinite(shards.last_eval->loss));
  EXPECT_EQ(shards.last_eval->accuracy, -1);  // no accuracy for free text

  std::ofstream(core::join_path(dir, "a.txt")) << std::string(2000, 'x') + "hello world, hello comba";
  const TrainSummary bytes = Trainer(tiny(core::join_path(dir, "run_bytes"),
                                          {"data.kind=bytes", "model.vocab_size=259",
                                           "data.text_files=" + core::join_path(dir, "*.txt"),
                                           "train.max_steps=3"})).run();
  ASSERT_EQ(bytes.losses.size(), 3u);
  EXPECT_TRUE(std::isfinite(bytes.losses.back().second));
  core::remove_tree(dir);
}

TEST(Trainer, PackedDocumentsDoNotSeeEachOther) {
  // The model on a packed row with cu_seqlens gives each document the logits it gets alone.
  torch::manual_seed(4);
  nn::CombaForCausalLM model(comba::testing::tiny_train_config());
  model->to(torch::kDouble);
  const auto doc_a = torch::randint(3, 48, {1, 7}, torch::kLong);
  const auto doc_b = torch::randint(3, 48, {1, 9}, torch::kLong);
  const auto packed = torch::cat({doc_a, doc_b}, 1);
  const auto cu = torch::tensor({0, 7, 16}, torch::kLong);
  const torch::NoGradGuard no_grad;
  const auto together = model->forward(packed, nn::LMInputs().cu_seqlens(cu)).logits;
  const auto alone_a = model->forward(doc_a).logits;
  const auto alone_b = model->forward(doc_b).logits;
  EXPECT_TRUE(torch::allclose(together.slice(1, 0, 7), alone_a, 1e-6, 1e-8));
  EXPECT_TRUE(torch::allclose(together.slice(1, 7, 16), alone_b, 1e-6, 1e-8));
}

TEST(Trainer, DefaultConfigLearnsRecallWellAboveChance) {
  // configs/default.yaml shortened for the test suite: 4 pairs (chance 25%) and 120 steps
  // instead of 8 pairs and 300 steps (which reach ~98% in about 3 minutes).
  const std::string dir = fresh_dir("default");
  TrainConfig c = load_config(std::string(COMBA_SOURCE_DIR) + "/configs/default.yaml",
                              {"device=cpu", "logging.run_dir=" + dir, "train.max_steps=120",
                               "schedule.warmup_steps=30", "data.recall.num_pairs=4",
                               "data.recall.num_queries=12", "eval.interval=0",
                               "checkpoint.interval=0", "logging.interval=20", "train.threads=1"});
  const TrainSummary s = Trainer(c).run();
  ASSERT_TRUE(s.last_eval.has_value());
  const double chance = 1.0 / static_cast<double>(c.data.recall.num_pairs);
  EXPECT_GT(s.last_eval->accuracy, 2 * chance) << "accuracy " << s.last_eval->accuracy;
  // Better than a uniform guess among the values in context.
  EXPECT_LT(s.last_eval->loss, std::log(static_cast<double>(c.data.recall.num_pairs)));
  core::remove_tree(dir);
}

// train.recompute: chunk_states / chunk_workspace (the operator's backward recomputes its
// workspace but the states / all of it),
// mixer / block (activation checkpointing) run each block's mixer branch or the whole
// block again in backward: the same fp32 loss curve as keeping every activation (the
// recompute repeats the same CPU kernels on the same shapes; the bound allows a last-bit
// difference in a reduction).
TEST(Trainer, RecomputeGivesTheSameLossCurve) {
  const TrainSummary kept = Trainer(tiny(fresh_dir("recompute_none"), {"train.max_steps=4"})).run();
  ASSERT_EQ(kept.losses.size(), 4u);
  const auto expected = losses(kept);
  for (const std::string policy : {"chunk_states", "chunk_workspace", "mixer", "block"}) {
    const TrainSummary recomputed =
        Trainer(tiny(fresh_dir("recompute_" + policy), {"train.max_steps=4", "train.recompute=" + policy})).run();
    const auto got = losses(recomputed);
    ASSERT_EQ(got.size(), expected.size()) << policy;
    for (const auto& [step, loss] : expected) EXPECT_NEAR(got.at(step), loss, 1e-6 * loss) << policy << " step " << step;
  }
}

// train.split_length reaches every layer's operator options, and the operator's sequence
// split (exact: tests/ops/test_sequence_split.cpp) gives the same fp32 loss curve: rows of
// 160 random tokens (every position in the loss) in segments of 64; the bound allows
// reductions in another order over 3 steps.
TEST(Trainer, SplitLengthGivesTheSameLossCurve) {
  const std::vector<std::string> rows_of_160 = {"train.max_steps=3", "batch.seq_len=160", "data.kind=random"};
  const auto expected = losses(Trainer(tiny(fresh_dir("split_none"), rows_of_160)).run());
  auto split = rows_of_160;
  split.push_back("train.split_length=64");
  const std::string dir = fresh_dir("split_64");
  Trainer trainer(tiny(dir, split));
  for (const auto& block : *trainer.model()->model->layers) {
    EXPECT_EQ(block->as<nn::CombaBlockImpl>()->attn->split_length(), c10::optional<int64_t>(64));
  }
  const auto got = losses(trainer.run());
  ASSERT_EQ(got.size(), expected.size());
  for (const auto& [step, loss] : expected) EXPECT_NEAR(got.at(step), loss, 1e-5 * loss) << "step " << step;
  core::remove_tree(dir);
}

// chunk_states and chunk_workspace reach every layer's operator options (the operator
// test KeepWorkspace.* checks what the option does there); the other policies keep all.
TEST(Trainer, ChunkWorkspacePolicyReachesEveryLayer) {
  const auto kept_under = [](const std::string& policy) {
    return policy == "chunk_states"      ? KeptWorkspace::kStates
           : policy == "chunk_workspace" ? KeptWorkspace::kNone
                                         : KeptWorkspace::kAll;
  };
  for (const std::string policy : {"none", "chunk_states", "chunk_workspace", "mixer", "block"}) {
    const std::string dir = fresh_dir("recompute_layers_" + policy);
    Trainer trainer(tiny(dir, {"train.max_steps=1", "train.recompute=" + policy}));
    const auto model = trainer.model()->model;
    EXPECT_EQ(model->recompute(), nn::parse_recompute(policy));
    for (const auto& block : *model->layers) {
      EXPECT_EQ(block->as<nn::CombaBlockImpl>()->attn->kept_workspace(), kept_under(policy)) << policy;
    }
    core::remove_tree(dir);
  }
  EXPECT_EQ(nn::parse_recompute("block"), nn::CombaModelImpl::Recompute::kBlock);
  try {
    nn::parse_recompute("chunk", "train.recompute");
    ADD_FAILURE() << "an unknown policy was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(has(e.what(), "train.recompute: expected one of none, chunk_states, chunk_workspace, mixer, block, got \"chunk\""))
        << e.what();
  }
}

}  // namespace
}  // namespace comba::train
