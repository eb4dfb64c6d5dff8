// comba-eval end to end: the JSON line it prints parses and carries the loss of the shared
// full-pass function (train/src/evaluate.cpp) for a model folder over token shards (dense
// and packed) and for a run directory over its own held-out bytes (with bits per byte);
// --choices: accuracy and length-normalised accuracy equal those of log-likelihoods the
// test computes token by token (each token from its own prefix, in fp64).
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "comba/core/file_util.h"
#include "comba/io/pretrained.h"
#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/train/choice_scorer.h"
#include "comba/train/config/config.h"
#include "comba/train/data/data_source.h"
#include "comba/train/data/token_shard.h"
#include "comba/train/evaluate.h"
#include "support/scratch_dir.h"
#include "support/tiny_config.h"

namespace comba::io {
namespace {

// Runs comba-eval; returns its exit status and fills `out` with its stdout.
int run(const std::string& args, const std::string& dir, std::string* out) {
  const std::string log = core::join_path(dir, "eval.out");
  const std::string cmd = "\"" COMBA_EVAL_BIN "\" " + args + " > \"" + log + "\" 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  *out = std::string(std::istreambuf_iterator<char>(in), {});
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

train::EvalSums expected(nn::CombaForCausalLM& model, const train::ValidationSet& set, int64_t seq_len,
                         int64_t rows, bool packed, int64_t eos) {
  train::FullPassOptions o;
  o.seq_len = seq_len;
  o.rows = rows;
  o.packed = packed;
  o.eos_id = eos;
  return train::full_pass_sums(model, set, o, torch::kCPU);
}

TEST(CombaEval, ModelFolderOverShardsPrintsTheFullPassLoss) {
  testing::TempDir dir("comba_eval_model");
  torch::manual_seed(5);
  nn::CombaConfig config = testing::tiny_config();
  config.eos_token_id = 2;
  nn::CombaForCausalLM model(config);
  const std::string folder = dir.file("model");
  save_pretrained(model, folder);
  std::vector<uint32_t> tokens;
  for (uint32_t i = 0; i < 45; ++i) tokens.push_back(i % 7 == 6 ? 2 : (i * 5) % 64);
  train::write_token_shard(dir.file("val_0.bin"), tokens, 2);
  train::write_token_shard(dir.file("val_1.bin"), std::vector<uint32_t>(tokens.begin(), tokens.begin() + 13), 4);
  std::vector<train::TokenShard> shards;
  shards.emplace_back(dir.file("val_0.bin"));
  shards.emplace_back(dir.file("val_1.bin"));
  train::ValidationSet set;
  for (const auto& s : shards) set.spans.push_back(s.tokens());

  for (const bool packed : {false, true}) {
    std::string out;
    ASSERT_EQ(run("--model " + folder + " --data '" + dir.file("val_*.bin") + "' --seq-len 8 --batch 2 --device cpu" +
                      (packed ? " --packed" : ""),
                  dir.path(), &out),
              0)
        << out;
    const auto line = nlohmann::json::parse(out);
    auto loaded = load_pretrained(folder);
    const train::EvalSums sums = expected(loaded.model, set, 8, 2, packed, 2);
    EXPECT_EQ(line["tokens"].get<int64_t>(), sums.targets) << out;
    const double loss = sums.loss_sum / static_cast<double>(sums.targets);
    EXPECT_NEAR(line["loss"].get<double>(), loss, 1e-6 * loss) << out;
    EXPECT_NEAR(line["perplexity"].get<double>(), std::exp(line["loss"].get<double>()), 1e-9 * std::exp(loss));
    EXPECT_FALSE(line.contains("bits_per_byte")) << out;  // token shards: bytes unknown
    EXPECT_TRUE(line.contains("seconds")) << out;
  }
  // --max-tokens: the first 10 tokens (windows of 8 and 2: 7 + 1 targets).
  std::string out;
  ASSERT_EQ(run("--model " + folder + " --data " + dir.file("val_0.bin") + " --seq-len 8 --max-tokens 10 --device cpu",
                dir.path(), &out),
            0)
      << out;
  EXPECT_EQ(nlohmann::json::parse(out)["tokens"].get<int64_t>(), 8);
  // A glob that matches nothing is named with its flag.
  ASSERT_EQ(run("--model " + folder + " --data '" + dir.file("none_*.bin") + "'", dir.path(), &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("--data: no file matches"));
}

TEST(CombaEval, RunDirectoryOverItsHeldOutBytesReportsBitsPerByte) {
  testing::TempDir dir("comba_eval_run");
  std::ofstream(dir.file("a.txt")) << std::string(200, 'x') + "hello world, hello comba";
  const train::TrainConfig config = train::config_from_yaml(
      "", {"device=cpu", "model.vocab_size=260", "model.hidden_size=32", "model.num_heads=2", "model.head_dim=16",
           "model.num_hidden_layers=1", "data.kind=bytes", "data.val_fraction=0.25", "batch.seq_len=16",
           "data.text_files=" + dir.file("a.txt"), "logging.run_dir=" + dir.file("run")});
  torch::manual_seed(6);
  nn::CombaForCausalLM model(config.model);
  const std::string run_dir = dir.file("run");
  core::make_directories(run_dir + "/checkpoints");
  train::write_file_atomic(run_dir + "/config.yaml", train::to_yaml(config));
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-3));
  train::TrainState state;
  state.step = 1;
  train::save_checkpoint(run_dir + "/checkpoints", state, *model, optimizer, /*keep_last=*/1);

  std::string out;
  ASSERT_EQ(run("--run-dir " + run_dir + " --batch 3 --device cpu", dir.path(), &out), 0) << out;
  const auto line = nlohmann::json::parse(out);
  const auto source = train::make_data_source(config.data, config.batch, 0, config.model.vocab_size, -1);
  const train::ValidationSet set = source->validation_set();
  ASSERT_TRUE(set.bytes);
  const train::EvalSums sums = expected(model, set, 16, 3, false, -1);
  const double loss = sums.loss_sum / static_cast<double>(sums.targets);
  EXPECT_EQ(line["tokens"].get<int64_t>(), 56 - 4) << out;  // 56 held-out bytes, windows of 16
  EXPECT_EQ(line["tokens"].get<int64_t>(), sums.targets);
  EXPECT_NEAR(line["loss"].get<double>(), loss, 1e-6 * loss) << out;
  EXPECT_NEAR(line["bits_per_byte"].get<double>(), line["loss"].get<double>() / std::log(2.0), 1e-9) << out;
}

// log p(choice | context) summed token by token, each token predicted from a forward of
// its own prefix alone.
double choice_ll(nn::CombaForCausalLM& model, std::vector<int64_t> ids, const std::vector<int64_t>& choice) {
  const torch::NoGradGuard no_grad;
  model->eval();
  double sum = 0;
  for (const int64_t t : choice) {
    const auto logits = model->forward(torch::tensor(ids).unsqueeze(0)).logits[0][-1].to(torch::kDouble);
    sum += torch::log_softmax(logits, -1)[t].item<double>();
    ids.push_back(t);
  }
  return sum;
}

TEST(CombaEval, ChoicesScoredByTheLogLikelihoodOfEachChoice) {
  testing::TempDir dir("comba_eval_choices");
  torch::manual_seed(7);
  nn::CombaForCausalLM model(testing::tiny_config());
  const std::string folder = dir.file("model");
  save_pretrained(model, folder);
  auto loaded = load_pretrained(folder);
  // Items of 2-4 choices of 1-3 tokens; labels alternate between the raw and the
  // length-normalised best (and a wrong one) so that the two accuracies differ.
  std::ofstream file(dir.file("choices.jsonl"));
  int right = 0, right_norm = 0, items = 0;
  for (int i = 0; i < 6; ++i) {
    const std::vector<int64_t> context = {1 + i, 7, 3 + 2 * i};
    std::vector<std::vector<int64_t>> choices;
    for (int c = 0; c < 2 + i % 3; ++c) {
      std::vector<int64_t> choice;
      for (int t = 0; t <= (c + i) % 3; ++t) choice.push_back((11 * i + 5 * c + 3 * t) % 64);
      choices.push_back(choice);
    }
    std::vector<double> ll, norm;
    for (const auto& c : choices) {
      ll.push_back(choice_ll(loaded.model, context, c));
      norm.push_back(ll.back() / static_cast<double>(c.size()));
    }
    const auto best = std::max_element(ll.begin(), ll.end()) - ll.begin();
    const auto best_norm = std::max_element(norm.begin(), norm.end()) - norm.begin();
    const int64_t label = i % 3 == 0 ? best : i % 3 == 1 ? best_norm : (best + 1) % static_cast<int64_t>(choices.size());
    right += label == best;
    right_norm += label == best_norm;
    ++items;
    file << nlohmann::json({{"context", context}, {"choices", choices}, {"label", label}}).dump() << "\n";
  }
  file.close();
  std::string out;
  ASSERT_EQ(run("--model " + folder + " --choices " + dir.file("choices.jsonl") + " --device cpu", dir.path(), &out), 0)
      << out;
  const auto line = nlohmann::json::parse(out);
  EXPECT_EQ(line["items"].get<int64_t>(), items);
  EXPECT_DOUBLE_EQ(line["accuracy"].get<double>(), static_cast<double>(right) / items) << out;
  EXPECT_DOUBLE_EQ(line["accuracy_norm"].get<double>(), static_cast<double>(right_norm) / items) << out;

  // The scorer's own log-likelihoods against the token-by-token ones.
  train::ChoiceItem item;
  item.context = {4, 9};
  item.choices = {{5}, {6, 7, 8}};
  const auto ll = train::choice_log_likelihoods(loaded.model, item, torch::kCPU);
  ASSERT_EQ(ll.size(), 2u);
  EXPECT_NEAR(ll[0], choice_ll(loaded.model, item.context, item.choices[0]), 1e-5);
  EXPECT_NEAR(ll[1], choice_ll(loaded.model, item.context, item.choices[1]), 1e-5);

  // Bad lines are named with the flag, the file and the line.
  std::ofstream(dir.file("bad.jsonl")) << R"({"context": [1], "choices": [[2], [3]], "label": 0})" "\n"
                                       << R"({"context": [1], "choices": [[2], [3]], "label": 2})" "\n";
  ASSERT_EQ(run("--model " + folder + " --choices " + dir.file("bad.jsonl"), dir.path(), &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("--choices: " + dir.file("bad.jsonl") + " line 2: label: expected an index in [0, 2), got 2"));
  std::ofstream(dir.file("text.jsonl")) << R"({"context": "a cat", "choices": ["sat", "ran"], "label": 0})" "\n";
  ASSERT_EQ(run("--model " + folder + " --choices " + dir.file("text.jsonl"), dir.path(), &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("line 1: context is text, which needs a tokenizer"));
  std::ofstream(dir.file("vocab.jsonl")) << R"({"context": [1], "choices": [[64]], "label": 0})" "\n";
  ASSERT_EQ(run("--model " + folder + " --choices " + dir.file("vocab.jsonl"), dir.path(), &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("choices[0]: expected token ids (integers in [0, 64)"));
}

}  // namespace
}  // namespace comba::io
