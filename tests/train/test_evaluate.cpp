// Full-pass evaluation (evaluate.h) on the CPU:
// - the loss over every validation token equals an independent fp64 sum of cross entropies
//   over consecutive windows run one at a time (several shards, a partial last window,
//   batched rows with padding, max_tokens, a rank split), and perplexity = exp(loss);
// - packed, each document runs alone: the sum over documents run separately;
// - the trainer's eval.full_pass reports that loss for its final model (exported and
//   reloaded), with perplexity in metrics.jsonl, and bits per byte for byte data.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "comba/core/file_util.h"
#include "comba/io/pretrained.h"
#include "comba/train/config/config.h"
#include "comba/train/data/token_shard.h"
#include "comba/train/evaluate.h"
#include "comba/train/trainer.h"
#include "support/scratch_dir.h"
#include "support/tiny_config.h"

namespace comba::train {
namespace {

// Sum of -log p(next token) over [begin, end) of `tokens` run as one sequence, in fp64.
double sequence_loss(nn::CombaForCausalLM& model, const std::vector<int64_t>& tokens, int64_t begin,
                     int64_t end, int64_t* targets) {
  if (end - begin < 2) return 0;
  const auto ids = torch::tensor(std::vector<int64_t>(tokens.begin() + begin, tokens.begin() + end)).unsqueeze(0);
  const auto logp = torch::log_softmax(model->forward(ids).logits.to(torch::kDouble)[0], -1);
  double sum = 0;
  for (int64_t t = 0; t + 1 < end - begin; ++t) sum -= logp[t][tokens[begin + t + 1]].item<double>();
  *targets += end - begin - 1;
  return sum;
}

// Consecutive windows of `window` tokens; packed: each window split after every EOS.
double reference_sum(nn::CombaForCausalLM& model, const std::vector<std::vector<int64_t>>& shards,
                     int64_t window, int64_t* targets, int64_t eos = -1) {
  const torch::NoGradGuard no_grad;
  model->eval();
  double sum = 0;
  for (const auto& tokens : shards) {
    const auto n = static_cast<int64_t>(tokens.size());
    for (int64_t start = 0; start < n; start += window) {
      const int64_t end = std::min(n, start + window);
      int64_t doc = start;
      for (int64_t i = start; i < end; ++i) {
        if (eos >= 0 && tokens[i] == eos) {
          sum += sequence_loss(model, tokens, doc, i + 1, targets);
          doc = i + 1;
        }
      }
      sum += sequence_loss(model, tokens, doc, end, targets);
    }
  }
  return sum;
}

std::vector<int64_t> read_all(const TokenShard& shard) {
  std::vector<int64_t> out(shard.tokens().size);
  shard.tokens().copy(0, shard.tokens().size, out.data());
  return out;
}

struct Shards {
  std::vector<TokenShard> files;
  ValidationSet set;
  std::vector<std::vector<int64_t>> tokens;
};

Shards write_shards(const std::string& dir, const std::vector<int64_t>& sizes, int64_t vocab, int64_t eos) {
  Shards s;
  core::make_directories(dir);
  for (size_t f = 0; f < sizes.size(); ++f) {
    std::vector<uint32_t> t;
    for (int64_t i = 0; i < sizes[f]; ++i) t.push_back(i % 9 == 8 ? eos : static_cast<uint32_t>((i * 7 + f * 3) % vocab));
    const std::string path = core::join_path(dir, "val_" + std::to_string(f) + ".bin");
    write_token_shard(path, t, 2);
    s.files.emplace_back(path);
  }
  for (const auto& f : s.files) {
    s.set.spans.push_back(f.tokens());
    s.set.names.push_back(f.path());
    s.tokens.push_back(read_all(f));
  }
  return s;
}

TEST(FullPass, EqualsTheMeanTokenLossOverConsecutiveWindows) {
  torch::manual_seed(3);
  nn::CombaForCausalLM model(testing::tiny_config());
  const Shards s = write_shards(testing::fresh_dir("full_pass_dense"), {37, 21}, 64, 2);
  int64_t ref_targets = 0;
  const double ref = reference_sum(model, s.tokens, 8, &ref_targets);
  EXPECT_EQ(ref_targets, (7 * 4 + 4) + (7 * 2 + 4));  // 37 = 8+8+8+8+5, 21 = 8+8+5

  FullPassOptions o;
  o.seq_len = 8;
  o.rows = 3;  // batches of three windows, the short ones padded
  o.vocab_size = 64;
  const EvalSums sums = full_pass_sums(model, s.set, o, torch::kCPU);
  EXPECT_EQ(sums.targets, ref_targets);
  EXPECT_NEAR(sums.loss_sum, ref, 1e-5 * ref);
  const FullPassResult r = full_pass_result(sums, /*bytes=*/false);
  EXPECT_NEAR(r.loss, ref / static_cast<double>(ref_targets), 1e-5 * r.loss);
  EXPECT_DOUBLE_EQ(r.perplexity, std::exp(r.loss));
  EXPECT_EQ(r.bits_per_byte, -1);
  EXPECT_DOUBLE_EQ(full_pass_result(sums, true).bits_per_byte, r.loss / std::log(2.0));

  // Two ranks' sums add up to one process's.
  FullPassOptions r0 = o, r1 = o;
  r0.world = r1.world = 2;
  r1.rank = 1;
  const EvalSums a = full_pass_sums(model, s.set, r0, torch::kCPU);
  const EvalSums b = full_pass_sums(model, s.set, r1, torch::kCPU);
  EXPECT_GT(a.targets, 0);
  EXPECT_GT(b.targets, 0);
  EXPECT_EQ(a.targets + b.targets, ref_targets);
  EXPECT_NEAR(a.loss_sum + b.loss_sum, ref, 1e-5 * ref);

  // max_tokens: the first 20 tokens only (windows 8, 8, 4 of the first shard).
  FullPassOptions m = o;
  m.max_tokens = 20;
  int64_t head_targets = 0;
  const double head = reference_sum(model, {std::vector<int64_t>(s.tokens[0].begin(), s.tokens[0].begin() + 20)}, 8,
                                    &head_targets);
  const EvalSums hs = full_pass_sums(model, s.set, m, torch::kCPU);
  EXPECT_EQ(hs.targets, 7 + 7 + 3);
  EXPECT_NEAR(hs.loss_sum, head, 1e-5 * head);
}

// Shards whose headers record their text's bytes (comba-tokenize writes them): bits per
// byte = the summed loss / (ln 2 * bytes), in closed form; a partial pass counts each span's
// bytes in proportion to the tokens it read; one span without a count makes it unknown.
TEST(FullPass, BitsPerByteForShardsThatRecordTheirBytes) {
  torch::manual_seed(5);
  nn::CombaForCausalLM model(testing::tiny_config());
  const std::string dir = testing::fresh_dir("full_pass_text_bytes");
  const Shards plain = write_shards(dir, {37, 21}, 64, 2);
  std::vector<TokenShard> files;
  const std::vector<int64_t> bytes = {100, 61};
  for (size_t f = 0; f < 2; ++f) {
    std::vector<uint32_t> t(plain.tokens[f].begin(), plain.tokens[f].end());
    const std::string path = core::join_path(dir, "counted_" + std::to_string(f) + ".bin");
    write_token_shard(path, t, 2, bytes[f]);
    files.emplace_back(path);
  }
  ValidationSet set;
  for (const auto& f : files) {
    set.spans.push_back(f.tokens());
    set.names.push_back(f.path());
    set.text_bytes.push_back(f.text_bytes());
  }
  int64_t ref_targets = 0;
  const double ref = reference_sum(model, plain.tokens, 8, &ref_targets);
  FullPassOptions o;
  o.seq_len = 8;
  o.rows = 2;
  const EvalSums sums = full_pass_sums(model, set, o, torch::kCPU);
  EXPECT_NEAR(sums.text_bytes, 161.0, 1e-9);
  const FullPassResult r = full_pass_result(sums, /*bytes=*/false);
  EXPECT_NEAR(r.bits_per_byte, ref / (std::log(2.0) * 161.0), 1e-5 * r.bits_per_byte);

  // Two ranks: their byte shares add up to the whole.
  FullPassOptions r0 = o, r1 = o;
  r0.world = r1.world = 2;
  r1.rank = 1;
  EXPECT_NEAR(full_pass_sums(model, set, r0, torch::kCPU).text_bytes +
                  full_pass_sums(model, set, r1, torch::kCPU).text_bytes,
              161.0, 1e-9);

  // The first 20 of the first shard's 37 tokens: 20/37 of its 100 bytes.
  FullPassOptions m = o;
  m.max_tokens = 20;
  int64_t head_targets = 0;
  const double head = reference_sum(model, {std::vector<int64_t>(plain.tokens[0].begin(), plain.tokens[0].begin() + 20)},
                                    8, &head_targets);
  const FullPassResult hr = full_pass_result(full_pass_sums(model, set, m, torch::kCPU), false);
  EXPECT_NEAR(hr.bits_per_byte, head / (std::log(2.0) * 100.0 * 20.0 / 37.0), 1e-5 * hr.bits_per_byte);

  // One shard without a count (llm.c's own): unknown.
  set.text_bytes[1] = -1;
  EXPECT_EQ(full_pass_result(full_pass_sums(model, set, o, torch::kCPU), false).bits_per_byte, -1);
  core::remove_tree(dir);
}

TEST(FullPass, PackedRunsEachDocumentAlone) {
  torch::manual_seed(4);
  nn::CombaForCausalLM model(testing::tiny_config());
  const Shards s = write_shards(testing::fresh_dir("full_pass_packed"), {45}, 64, 2);
  FullPassOptions o;
  o.seq_len = 8;
  o.rows = 2;  // packed rows of 16 tokens
  o.packed = true;
  o.eos_id = 2;
  int64_t ref_targets = 0;
  const double ref = reference_sum(model, s.tokens, 16, &ref_targets, 2);
  const EvalSums sums = full_pass_sums(model, s.set, o, torch::kCPU);
  EXPECT_EQ(sums.targets, ref_targets);
  EXPECT_NEAR(sums.loss_sum, ref, 1e-5 * ref);
}

TEST(FullPass, IdsPastTheVocabularyNamedWithTheirFile) {
  nn::CombaForCausalLM model(testing::tiny_config());
  const Shards s = write_shards(testing::fresh_dir("full_pass_vocab"), {20}, 64, 2);
  FullPassOptions o;
  o.seq_len = 8;
  o.vocab_size = 10;
  o.key = "--data";
  try {
    (void)full_pass_sums(model, s.set, o, torch::kCPU);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("--data: " + s.set.names[0]), std::string::npos) << e.what();
  }
}

nlohmann::json last_eval_line(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  nlohmann::json last;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("type", "") == "eval") last = j;
  }
  return last;
}

std::vector<std::string> tiny_run(const std::string& run_dir, const std::string& folder) {
  return {"device=cpu", "model.vocab_size=48", "model.hidden_size=32", "model.num_heads=2",
          "model.head_dim=16", "batch.micro_batch_size=2", "batch.seq_len=16", "train.max_steps=2",
          "optimizer.lr=0.01", "eval.interval=0", "eval.full_pass=true", "checkpoint.interval=0",
          "logging.progress_bar=false", "logging.run_dir=" + run_dir, "checkpoint.export_dir=" + folder};
}

TEST(FullPass, TrainerReportsTheFullPassOfItsFinalModel) {
  const std::string dir = testing::fresh_dir("full_pass_trainer");
  const Shards s = write_shards(core::join_path(dir, "data"), {50, 23}, 40, 2);
  const std::string run_dir = core::join_path(dir, "run");
  const std::string folder = core::join_path(dir, "model");
  auto sets = tiny_run(run_dir, folder);
  sets.insert(sets.end(), {"data.kind=shards", "model.eos_token_id=2",
                           "data.train_files=" + s.set.names[0],
                           "data.val_files=" + core::join_path(dir, "data/val_*.bin")});
  const TrainSummary summary = Trainer(config_from_yaml("", sets)).run();
  ASSERT_TRUE(summary.last_eval.has_value());
  auto loaded = io::load_pretrained(folder);
  int64_t targets = 0;
  const double ref = reference_sum(loaded.model, s.tokens, 16, &targets) / static_cast<double>(targets);
  EXPECT_EQ(summary.last_eval->targets, targets);
  EXPECT_NEAR(summary.last_eval->loss, ref, 1e-5 * ref);
  const auto line = last_eval_line(core::join_path(run_dir, "metrics.jsonl"));
  ASSERT_TRUE(line.contains("perplexity")) << line.dump();
  EXPECT_NEAR(line["perplexity"].get<double>(), std::exp(line["loss"].get<double>()), 1e-9 * line["perplexity"].get<double>());
  EXPECT_EQ(line["tokens"].get<int64_t>(), targets);
  EXPECT_FALSE(line.contains("bits_per_byte"));  // token shards: the byte count is unknown
}

TEST(FullPass, TrainerReportsBitsPerByteForBytes) {
  const std::string dir = testing::fresh_dir("full_pass_bytes");
  core::make_directories(dir);
  std::ofstream(core::join_path(dir, "a.txt")) << std::string(300, 'x') + "hello world, hello comba";
  const std::string run_dir = core::join_path(dir, "run");
  auto sets = tiny_run(run_dir, core::join_path(dir, "model"));
  sets.insert(sets.end(), {"data.kind=bytes", "model.vocab_size=260", "data.val_fraction=0.2",
                           "data.text_files=" + core::join_path(dir, "a.txt")});
  const TrainSummary summary = Trainer(config_from_yaml("", sets)).run();
  ASSERT_TRUE(summary.last_eval.has_value());
  EXPECT_EQ(summary.last_eval->targets, 64 - 4);  // 64 held-out bytes in windows of 16
  const auto line = last_eval_line(core::join_path(run_dir, "metrics.jsonl"));
  ASSERT_TRUE(line.contains("bits_per_byte")) << line.dump();
  EXPECT_NEAR(line["bits_per_byte"].get<double>(), line["loss"].get<double>() / std::log(2.0), 1e-9);
}

TEST(FullPass, GeneratedTasksHaveNoValidationFilesToPass) {
  auto sets = tiny_run(testing::fresh_dir("full_pass_recall"), testing::fresh_dir("full_pass_recall_model"));
  sets.insert(sets.end(), {"data.recall.num_pairs=4", "data.recall.num_queries=4", "data.recall.key_vocab=16",
                           "data.recall.value_vocab=16"});
  try {
    Trainer(config_from_yaml("", sets)).run();
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("eval.full_pass"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace comba::train
