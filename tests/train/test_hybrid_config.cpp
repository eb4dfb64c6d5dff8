// Hybrid models in the trainer (issue 20): model.attn in the YAML as one mapping or a list
// of mappings with fla's keys and defaults; problems named by key path
// (model.attn[0].window_size); --set refused for it with a reason; the resolved config
// (config.yaml) reads back the same attn; a checkpoint's architecture records it, so a
// resumed run with other attention layers is refused naming model.attn; the shipped
// configs/comba-hybrid-340m.yaml loads; a tiny hybrid trains on the CPU, resumes bit for
// bit and exports a folder that loads with its attention layers.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "comba/core/file_util.h"
#include "comba/io/pretrained.h"
#include "comba/nn/model_size.h"
#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/config/config.h"
#include "comba/train/trainer.h"
#include "support/scratch_dir.h"
#include "train/config_problems.h"

namespace comba::train {
namespace {

using testing::contains;
using testing::problems_of;

std::string joined(const std::vector<std::string>& problems) {
  std::string out;
  for (const auto& p : problems) out += p + "\n";
  return out;
}

// The built-in model (hidden 64, 2 layers) with 4 layers and `attn`.
std::string model_with_attn(const std::string& attn) {
  return "model:\n  num_hidden_layers: 4\n  attn: " + attn + "\n";
}

TEST(HybridConfig, OneMappingTakesFlaDefaults) {
  const TrainConfig c = config_from_yaml("model:\n  num_hidden_layers: 4\n  attn:\n    layers: [1, 3]\n    num_heads: 4\n");
  ASSERT_EQ(c.model.attn.size(), 1u);
  EXPECT_FALSE(c.model.attn_is_list);
  const auto& spec = c.model.attn[0];
  EXPECT_EQ(spec.layers, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(spec.num_heads, 4);
  EXPECT_EQ(spec.kv_heads(), 4);
  EXPECT_FALSE(spec.qkv_bias);
  EXPECT_EQ(spec.window_size, 0);
  EXPECT_EQ(spec.rope_theta, 10000.0);
  EXPECT_FALSE(config_from_yaml("").model.is_hybrid());
  EXPECT_FALSE(config_from_yaml(model_with_attn("null")).model.is_hybrid());
}

TEST(HybridConfig, ListOfMappingsRoundTripsThroughTheResolvedYaml) {
  const TrainConfig c = config_from_yaml(model_with_attn(
      "\n    - {layers: [1], num_heads: 4, num_kv_heads: 2, qkv_bias: true}"
      "\n    - {layers: [3], num_heads: 2, num_kv_heads: null, window_size: 5, rope_theta: 500}"));
  ASSERT_EQ(c.model.attn.size(), 2u);
  EXPECT_TRUE(c.model.attn_is_list);
  EXPECT_EQ(c.model.attn[0].kv_heads(), 2);
  EXPECT_TRUE(c.model.attn[0].qkv_bias);
  EXPECT_EQ(c.model.attn[1].window_size, 5);
  EXPECT_EQ(c.model.attn[1].rope_theta, 500.0);
  const std::string yaml = to_yaml(c);
  EXPECT_NE(yaml.find("attn: [{layers: [1], num_heads: 4, num_kv_heads: 2, qkv_bias: true, window_size: null"),
            std::string::npos)
      << yaml;
  const TrainConfig back = config_from_yaml(yaml);
  EXPECT_EQ(back.model, c.model);
  EXPECT_TRUE(back.model.attn_is_list);
  // One mapping stays one mapping.
  const TrainConfig one = config_from_yaml(model_with_attn("{layers: [2], num_heads: 2, window_size: 8}"));
  const TrainConfig one_back = config_from_yaml(to_yaml(one));
  EXPECT_EQ(one_back.model, one.model);
  EXPECT_FALSE(one_back.model.attn_is_list);
}

TEST(HybridConfig, ProblemsNameTheKeyPath) {
  const auto p = problems_of(model_with_attn(
      "\n    - {layers: [1], num_heads: 4, window_size: -3, qkv_bias: maybe, foo: 1}"
      "\n    - {layers: [x], num_heads: 0, rope_theta: .inf}"
      "\n    - {num_heads: 2}"
      "\n    - 5"));
  EXPECT_TRUE(contains(p, "model.attn[0].window_size: expected a positive integer or null (no window), got \"-3\""))
      << joined(p);
  EXPECT_TRUE(contains(p, "model.attn[0].qkv_bias: expected true or false, got \"maybe\"")) << joined(p);
  EXPECT_TRUE(contains(p, "model.attn[0].foo: unknown key (known keys in model.attn[0]: layers, num_heads,"))
      << joined(p);
  EXPECT_TRUE(contains(p, "model.attn[1].layers[0]: expected an integer, got \"x\"")) << joined(p);
  EXPECT_TRUE(contains(p, "model.attn[1].num_heads: expected a positive integer, got \"0\"")) << joined(p);
  EXPECT_TRUE(contains(p, "model.attn[1].rope_theta: expected a positive finite number")) << joined(p);
  EXPECT_TRUE(contains(p, "model.attn[2].layers: required")) << joined(p);
  EXPECT_TRUE(contains(p, "model.attn[3]: expected a mapping")) << joined(p);
  EXPECT_EQ(p.size(), 8u) << joined(p);

  EXPECT_TRUE(contains(problems_of(model_with_attn("3")), "model.attn: expected null, a mapping or a list"));
  EXPECT_TRUE(contains(problems_of(model_with_attn("{layers: [1], num_heads: 4, num_heads: 2}")),
                       "model.attn.num_heads: duplicate key"));
  // Checks across keys (CombaConfig::validate) keep the path.
  EXPECT_TRUE(contains(problems_of(model_with_attn("[{layers: [1], num_heads: 4}, {layers: [5], num_heads: 2}]")),
                       "model.attn[1].layers: layer 5 out of range [0, 4)"));
  EXPECT_TRUE(contains(problems_of(model_with_attn("[{layers: [1], num_heads: 4}, {layers: [1], num_heads: 2}]")),
                       "model.attn[1].layers: layer 1 is already assigned by attn[0]"));
  EXPECT_TRUE(contains(problems_of(model_with_attn("{layers: [1], num_heads: 4, num_kv_heads: 3}")),
                       "model.attn.num_kv_heads: expected a divisor of num_heads = 4, got 3"));
  EXPECT_TRUE(contains(problems_of(model_with_attn("{layers: [1], num_heads: 3}")),
                       "model.attn.num_heads: expected a divisor of hidden_size = 64, got 3"));
  // --set cannot give a structured value, and says so.
  EXPECT_TRUE(contains(problems_of("", {"model.attn={layers: [1], num_heads: 4}"}),
                       "model.attn: expected null, a mapping or a list of mappings, which --set cannot give"));
}

TEST(HybridConfig, ArchitectureRecordsAttn) {
  const auto value_of = [](const TrainConfig& c) {
    for (const auto& [k, v] : model_architecture(c)) {
      if (k == "model.attn") return v;
    }
    return std::string("<absent>");
  };
  const TrainConfig pure = config_from_yaml("model:\n  num_hidden_layers: 4\n");
  const TrainConfig hybrid = config_from_yaml(model_with_attn("{layers: [1], num_heads: 4}"));
  const TrainConfig windowed = config_from_yaml(model_with_attn("{layers: [1], num_heads: 4, window_size: 16}"));
  EXPECT_EQ(value_of(pure), "null");
  EXPECT_NE(value_of(hybrid), value_of(pure));
  EXPECT_NE(value_of(hybrid), value_of(windowed));
}

TEST(HybridConfig, ShippedHybridConfigLoads) {
  const TrainConfig c = load_config(std::string(COMBA_SOURCE_DIR) + "/configs/comba-hybrid-340m.yaml");
  EXPECT_EQ(c.model.hidden_size, 1024);
  EXPECT_EQ(c.model.num_hidden_layers, 24);
  ASSERT_EQ(c.model.attn.size(), 1u);
  EXPECT_EQ(c.model.attn[0].layers, (std::vector<int64_t>{3, 7, 11, 15, 19, 23}));
  EXPECT_EQ(c.model.hidden_size / c.model.attn[0].num_heads, 128);
  EXPECT_EQ(c.model.attn[0].window_size, 2048);
  const nn::ParameterCount count = nn::count_parameters(c.model);
  EXPECT_EQ(count.attention_layers, 6);
  EXPECT_EQ(count.comba_layers, 18);
}

// A tiny recall run (hidden 32, 4 layers, attention in layers 1 and 3).
constexpr const char* kTinyAttn =
    "[{layers: [1], num_heads: 4, num_kv_heads: 2, qkv_bias: true}, {layers: [3], num_heads: 2, window_size: 6}]";

TrainConfig tiny_hybrid(const std::string& run_dir, std::vector<std::string> extra = {},
                        const std::string& attn = kTinyAttn) {
  std::vector<std::string> sets = {
      "device=cpu", "model.vocab_size=48", "model.hidden_size=32", "model.num_heads=2", "model.head_dim=16",
      "model.num_hidden_layers=4", "data.recall.num_pairs=4", "data.recall.num_queries=4",
      "data.recall.key_vocab=16", "data.recall.value_vocab=16", "batch.micro_batch_size=4", "batch.seq_len=24",
      "train.max_steps=6", "schedule.warmup_steps=2", "optimizer.lr=0.01", "logging.interval=1",
      "eval.interval=0", "eval.batches=2", "checkpoint.interval=2", "checkpoint.keep_last=3",
      "logging.progress_bar=false", "logging.run_dir=" + run_dir};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return config_from_yaml("model:\n  attn: " + attn + "\n", sets);
}

TEST(HybridTrainer, TrainsResumesAndExports) {
  const std::string straight_dir = comba::testing::scratch_path("hybrid_straight");
  const std::string folder = comba::testing::scratch_path("hybrid_export");
  const TrainSummary straight = Trainer(tiny_hybrid(straight_dir, {"checkpoint.export_dir=" + folder})).run();
  ASSERT_EQ(straight.losses.size(), 6u);
  for (const auto& [step, loss] : straight.losses) EXPECT_TRUE(std::isfinite(loss)) << step;

  // Stopped and resumed: the same losses, bit for bit (fp32 on the CPU).
  const std::string split_dir = comba::testing::scratch_path("hybrid_split");
  Trainer(tiny_hybrid(split_dir, {"train.stop_at_step=4"})).run();
  const TrainSummary second = Trainer(tiny_hybrid(split_dir)).run();
  EXPECT_EQ(second.start_step, 4);
  ASSERT_EQ(second.losses.size(), 2u);
  EXPECT_EQ(second.losses[0].second, straight.losses[4].second);
  EXPECT_EQ(second.losses[1].second, straight.losses[5].second);
  EXPECT_EQ(load_config(split_dir + "/config.yaml").model, tiny_hybrid(split_dir).model);

  // Another attn is another model: the resume is refused naming model.attn.
  try {
    Trainer trainer(tiny_hybrid(split_dir, {}, "{layers: [1], num_heads: 4}"));
    ADD_FAILURE() << "expected a CheckpointMismatch";
  } catch (const CheckpointMismatch& e) {
    EXPECT_NE(std::string(e.what()).find("model.attn is "), std::string::npos) << e.what();
  }

  // The exported folder is a hybrid fla folder.
  const auto loaded = io::load_pretrained(folder);
  EXPECT_EQ(loaded.config.model, tiny_hybrid(straight_dir).model);
  EXPECT_NE(loaded.model->named_parameters().find("model.layers.1.attn.k_proj.bias"), nullptr);
  core::remove_tree(straight_dir);
  core::remove_tree(split_dir);
  core::remove_tree(folder);
}

}  // namespace
}  // namespace comba::train
