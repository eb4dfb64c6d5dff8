// The model, data and config that the data-parallel tests run in several processes
// (ddp_worker) and in one (test_distributed.cpp): small and fp64, so that one process on
// the combined batch and several on their shares agree to rounding.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "comba/nn/causal_lm.h"
#include "comba/train/data/data_source.h"
#include "support/tiny_config.h"

namespace comba::train::testing {

inline nn::CombaForCausalLM ddp_model() {
  torch::manual_seed(0);
  nn::CombaForCausalLM model(comba::testing::tiny_train_config());
  model->to(torch::kDouble);
  return model;
}

inline DataOptions ddp_data_options() {
  DataOptions d;
  d.recall.num_pairs = 4;
  d.recall.num_queries = 4;
  d.recall.key_vocab = 16;
  d.recall.value_vocab = 16;
  return d;
}

inline std::unique_ptr<DataSource> ddp_data_source() {
  BatchOptions b;
  b.micro_batch_size = 3;
  b.seq_len = 24;
  return make_data_source(ddp_data_options(), b, /*seed=*/0, /*vocab_size=*/48, /*eos_id=*/2);
}

// A tiny fp64 recall run on the CPU: 4 steps of 4 micro-batches of 3, a log line every
// step, the whole eval at the end, a checkpoint at the end.
inline std::vector<std::string> ddp_sets(const std::string& run_dir,
                                         const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = {
      "device=cpu", "precision=fp64", "model.vocab_size=48", "model.hidden_size=32",
      "model.num_heads=2", "model.head_dim=16", "data.recall.num_pairs=4",
      "data.recall.num_queries=4", "data.recall.key_vocab=16", "data.recall.value_vocab=16",
      "batch.micro_batch_size=3", "batch.seq_len=24", "batch.grad_accum_steps=4",
      "train.max_steps=4", "schedule.warmup_steps=1", "optimizer.lr=0.01", "logging.interval=1",
      "eval.interval=0", "eval.batches=3", "checkpoint.interval=0", "logging.progress_bar=false",
      "train.threads=1", "distributed.timeout_s=60", "logging.run_dir=" + run_dir};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return sets;
}

}  // namespace comba::train::testing
