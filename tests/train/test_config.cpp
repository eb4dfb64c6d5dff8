// Config loading: every class of error reported with its key path (unknown key, wrong
// type, out of range, bad choice, cross-section), all at once; --set overrides; the
// resolved config round-trips; the shipped configs load.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "comba/core/file_util.h"
#include "comba/train/config/config.h"
#include "support/config_variants.h"
#include "support/scratch_dir.h"
#include "train/config_problems.h"

namespace comba::train {
namespace {

using testing::contains;
using testing::problems_of;

TEST(Config, DefaultsAreValid) {
  EXPECT_TRUE(problems_of("").empty());
  EXPECT_TRUE(check_config(TrainConfig{}).empty());
}

TEST(Config, WrongTypeNamesPathExpectationAndValue) {
  const auto p = problems_of("optimizer:\n  lr: abc\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0], "optimizer.lr: expected a positive number, got \"abc\"");
}

TEST(Config, EveryProblemReportedAtOnce) {
  const auto p = problems_of(
      "optimizer:\n  lr: -1\n  lrr: 3\n"
      "batch:\n  seq_len: 1.5\n"
      "model:\n  hidden_size: [1, 2]\n  tie_word_embeddings: maybe\n"
      "schedule:\n  kind: exponential\n"
      "bogus_section:\n  x: 1\n"
      "data: 3\n");
  EXPECT_EQ(p.size(), 8u);
  EXPECT_TRUE(contains(p, "optimizer.lr: expected a positive number, got -1"));
  EXPECT_TRUE(contains(p, "optimizer.lrr: unknown key (known keys in optimizer: lr,"));
  EXPECT_TRUE(contains(p, "batch.seq_len: expected an integer >= 2, got 1.5"));
  EXPECT_TRUE(contains(p, "model.hidden_size: expected an integer >= 1, got a list"));
  EXPECT_TRUE(contains(p, "model.tie_word_embeddings: expected true or false, got \"maybe\""));
  EXPECT_TRUE(contains(p, "schedule.kind: expected one of cosine, linear, wsd, constant, got \"exponential\""));
  EXPECT_TRUE(contains(p, "bogus_section: unknown key"));
  EXPECT_TRUE(contains(p, "data: expected a mapping of data.* keys, got 3"));
}

TEST(Config, RangesAndChoices) {
  EXPECT_TRUE(contains(problems_of("optimizer: {beta2: 1.0}"),
                       "optimizer.beta2: expected a number in [0, 1), got 1.0"));
  EXPECT_TRUE(contains(problems_of("train: {max_steps: 0}"),
                       "train.max_steps: expected an integer >= 1, got 0"));
  EXPECT_TRUE(contains(problems_of("precision: fp16"),
                       "precision: expected one of fp32, bf16, fp64, got \"fp16\""));
  EXPECT_TRUE(contains(problems_of("optimizer: {weight_decay: .nan}"),
                       "optimizer.weight_decay: expected a non-negative number"));
  EXPECT_TRUE(contains(problems_of("data: {format: nanogpt}"),
                       "data.format: expected one of llm.c, raw_uint16, got \"nanogpt\""));
  EXPECT_TRUE(contains(problems_of("data: {format: raw_uint16}"),
                       "data.format: only data.kind shards reads files of a format, got data.format "
                       "\"raw_uint16\" with data.kind \"recall\""));
}

TEST(Config, CrossSectionChecksNameTheKey) {
  EXPECT_TRUE(contains(problems_of("batch: {seq_len: 16}"),
                       "batch.seq_len: the recall task needs at least 2 * (num_pairs + num_queries) = 32, got 16"));
  EXPECT_TRUE(contains(problems_of("model: {vocab_size: 50}"), "model.vocab_size: the recall task needs at least"));
  EXPECT_TRUE(contains(problems_of("data: {kind: shards}"), "data.train_files: expected a glob pattern"));
  EXPECT_TRUE(contains(problems_of("data: {pack_documents: true}"),
                       "data.pack_documents: only data.kind shards or random packs documents"));
  EXPECT_TRUE(contains(problems_of("data: {kind: random, pack_documents: true}"),
                       "data.random_doc_len: data.kind random with pack_documents needs a document length > 0"));
  EXPECT_TRUE(problems_of("data: {kind: random, pack_documents: true, random_doc_len: 8}").empty());
  EXPECT_TRUE(contains(problems_of("device: tpu"), "device: expected auto, cpu, cuda or cuda:N, got \"tpu\""));
  EXPECT_TRUE(contains(problems_of("train: {split_length: 100}"),
                       "train.split_length: expected 0 or a multiple of 64 (the chunk length), got 100"));
  EXPECT_TRUE(problems_of("train: {split_length: 4096}").empty());
}

// Case 8: end-of-sequence ids outside the vocabulary are refused before the run starts.
TEST(Config, EosIdsOutsideTheVocabularyNameTheKey) {
  EXPECT_TRUE(contains(problems_of("model: {eos_token_id: 128}"),
                       "model.eos_token_id: expected -1 (none) or an id in [0, model.vocab_size = 128), got 128"));
  EXPECT_TRUE(problems_of("model: {eos_token_id: 127}").empty());
  EXPECT_TRUE(problems_of("model: {eos_token_id: -1}").empty());
  EXPECT_TRUE(contains(problems_of("data: {eos_id: 500}"),
                       "data.eos_id: expected an id in [0, model.vocab_size = 128), got 500"));
  EXPECT_TRUE(contains(problems_of("data: {kind: shards, train_files: a, val_files: b}\n"
                                   "model: {eos_token_id: -1}"),
                       "data.eos_id: data.kind shards needs a separator id in [0, model.vocab_size = 128)"));
  EXPECT_TRUE(problems_of("data: {kind: shards, train_files: a, val_files: b, eos_id: 0}\n"
                          "model: {eos_token_id: -1}").empty());
}

// Absurd sizes whose products overflow int64 are config errors naming the keys, not
// wrapped numbers or a failed allocation later (issue 15, case 6).
TEST(Config, OverflowingSizesAreConfigErrors) {
  EXPECT_TRUE(contains(problems_of("batch: {micro_batch_size: 10000000000, seq_len: 1000000000}"),
                       "batch: micro_batch_size x seq_len x grad_accum_steps = 10000000000 x 1000000000 x 1 "
                       "overflows int64"));
  EXPECT_TRUE(contains(problems_of("model: {hidden_size: 1000000000}"),
                       "model: CombaConfig: the parameter count overflows: num_hidden_layers x the parameters of "
                       "one layer"));
}

TEST(Config, OverridesApplyAfterTheFileAndAreChecked) {
  const TrainConfig c = config_from_yaml("optimizer: {lr: 0.01}\n",
                                         {"optimizer.lr=0.003", "train.max_steps=20",
                                          "model.num_hidden_layers=3", "data.eos_id=null",
                                          "logging.run_dir=/tmp/x y"});
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.003);
  EXPECT_EQ(c.train.max_steps, 20);
  EXPECT_EQ(c.model.num_hidden_layers, 3);
  EXPECT_FALSE(c.data.eos_id.has_value());
  EXPECT_EQ(c.logging.run_dir, "/tmp/x y");
  const auto p = problems_of("", {"optimizer.lr=abc", "nope.key=1", "missing_equals"});
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0], "optimizer.lr: expected a positive number, got \"abc\" (from --set optimizer.lr=abc)");
  EXPECT_TRUE(contains(p, "nope.key: unknown key"));
  EXPECT_TRUE(contains(p, "--set missing_equals: expected key.path=value"));
}

TEST(Config, ResolvedConfigRoundTrips) {
  const TrainConfig c = config_from_yaml(
      "model: {hidden_size: 96, expand_v: 1.5, attn_mode: fused_recurrent}\n"
      "optimizer: {lr: 0.000123456789, decay_embeddings: true}\n"
      "data: {eos_id: 7}\n"
      "logging: {run_dir: \"runs/with: colon\"}\n");
  const std::string once = to_yaml(c);
  const TrainConfig back = config_from_yaml(once);
  EXPECT_EQ(to_yaml(back), once);
  EXPECT_EQ(back.model.hidden_size, 96);
  EXPECT_DOUBLE_EQ(back.model.expand_v, 1.5);
  EXPECT_EQ(back.model.attn_mode, "fused_recurrent");
  EXPECT_EQ(back.optimizer.lr, 0.000123456789);
  EXPECT_TRUE(back.optimizer.decay_embeddings);
  EXPECT_EQ(back.data.eos_id, 7);
  EXPECT_EQ(back.logging.run_dir, "runs/with: colon");
}

// A key written twice is refused with both lines (yaml-cpp keeps both pairs; the last
// used to win silently), at any depth and in flow style too.
TEST(Config, DuplicateKeysAreRefusedWithBothLines) {
  auto p = problems_of("optimizer:\n  lr: 0.1\n  weight_decay: 0\n  lr: 0.2\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0], "optimizer.lr: duplicate key (lines 2 and 4); keep one");
  p = problems_of("model:\n  hidden_size: 64\ntrain:\n  max_steps: 3\nmodel:\n  vocab_size: 256\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0], "model: duplicate key (lines 1 and 5); keep one");
  p = problems_of("train: {max_steps: 3, max_steps: 4}\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0], "train.max_steps: duplicate key (line 1, columns 9 and 23); keep one");
  // The file's path leads the message when it comes from load_config.
  const std::string dir = comba::testing::fresh_dir("config_duplicate");
  const std::string path = dir + "/config.yaml";
  std::ofstream(path) << "seed: 1\nseed: 2\n";
  try {
    load_config(path);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.problems(), path + ": seed: duplicate key (lines 1 and 2)")) << e.what();
  }
  core::remove_tree(dir);
}

// A directory opens as an empty stream: it used to train the defaults.
TEST(Config, DirectoryAsConfigFileIsRefused) {
  const std::string dir = comba::testing::fresh_dir("config_is_a_dir");
  try {
    load_config(dir);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "invalid config (1 problem):\n  " + dir +
                                         ": is a directory, expected a YAML file");
  }
  core::remove_tree(dir);
}

// What a checkpoint records: the model keys that decide the weights, not init-only ones.
TEST(Config, ModelArchitectureListsTheWeightDecidingKeys) {
  const TrainConfig c = config_from_yaml("model: {hidden_size: 96, attn_mode: fused_recurrent}\n");
  const auto arch = model_architecture(c);
  const auto value_of = [&](const std::string& key) -> std::string {
    for (const auto& [k, v] : arch) {
      if (k == key) return v;
    }
    return "<absent>";
  };
  EXPECT_EQ(value_of("model.hidden_size"), "96");
  EXPECT_EQ(value_of("model.vocab_size"), "128");
  EXPECT_EQ(value_of("model.expand_v"), "1.0");
  EXPECT_EQ(value_of("model.tie_word_embeddings"), "true");
  EXPECT_EQ(value_of("model.attn_mode"), "<absent>");
  EXPECT_EQ(value_of("model.initializer_range"), "<absent>");
  EXPECT_EQ(value_of("model.init_from"), "<absent>");
  EXPECT_EQ(value_of("optimizer.lr"), "<absent>");
}

// Every field of CombaConfig's list (nn/config.h) is a model.* key: a config with that
// field changed goes through YAML and back, and a checkpoint records it unless it is
// free to change between runs (role kFree).
TEST(Config, EveryModelFieldIsAKeyAndInTheArchitecture) {
  const TrainConfig base;
  const auto base_arch = model_architecture(base);
  const auto changed = comba::testing::changed_fields(base.model);
  ASSERT_EQ(changed.size(), comba::testing::config_field_count());
  for (const auto& field : changed) {
    SCOPED_TRACE(field.name);
    TrainConfig c = base;
    c.model = field.config;
    const TrainConfig back = config_from_yaml(to_yaml(c));
    EXPECT_TRUE(back.model == field.config);
    EXPECT_FALSE(back.model == base.model);
    // --set reaches the field too.
    const std::string path = "model." + field.name;
    const TrainConfig set = config_from_yaml("", {path + "=" + make_schema(c).value(path)});
    EXPECT_TRUE(set.model == field.config);

    const auto arch = model_architecture(c);
    const auto recorded = std::find_if(arch.begin(), arch.end(), [&](const auto& kv) { return kv.first == path; });
    if (field.role == nn::FieldRole::kFree) {
      EXPECT_EQ(recorded, arch.end());
      EXPECT_EQ(arch, base_arch);
    } else {
      ASSERT_NE(recorded, arch.end());
      EXPECT_NE(arch, base_arch);
    }
  }
}

TEST(Config, ShippedConfigsLoad) {
  for (const char* name : {"default.yaml", "comba-340m.yaml", "comba-1.3b.yaml"}) {
    const std::string path = std::string(COMBA_SOURCE_DIR) + "/configs/" + name;
    EXPECT_NO_THROW(load_config(path)) << path;
  }
  const TrainConfig c = load_config(std::string(COMBA_SOURCE_DIR) + "/configs/comba-340m.yaml");
  EXPECT_EQ(c.model.hidden_size, 1024);
  EXPECT_EQ(c.model.num_hidden_layers, 24);
  EXPECT_EQ(c.model.num_heads, 6);
  EXPECT_EQ(c.model.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.model.expand_v, 2.0);
  EXPECT_EQ(c.model.vocab_size, 32000);
  EXPECT_TRUE(c.model.tie_word_embeddings);
  EXPECT_EQ(c.batch.seq_len, 2048);
}

}  // namespace
}  // namespace comba::train
