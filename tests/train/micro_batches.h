// Micro-batches for the gradient-accumulation tests: a few small ones of the built-in
// recall task, and several joined into one batch (what accumulating them must equal).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "comba/train/data/batch.h"
#include "comba/train/data/data_source.h"

namespace comba::train::testing {

// `count` micro-batches of 2 x 24 tokens of the recall task (vocabulary 48).
inline std::vector<Batch> recall_micro_batches(int64_t count) {
  DataOptions data;
  data.recall.num_pairs = 4;
  data.recall.num_queries = 6;
  data.recall.key_vocab = 16;
  data.recall.value_vocab = 16;
  BatchOptions shape;
  shape.micro_batch_size = 2;
  shape.seq_len = 24;
  const auto source = make_data_source(data, shape, 5, 48, 2);
  std::vector<Batch> micro;
  for (int64_t i = 0; i < count; ++i) micro.push_back(source->train_batch(i));
  return micro;
}

inline Batch joined_batch(const std::vector<Batch>& parts) {
  std::vector<torch::Tensor> ids, labels;
  Batch out;
  for (const auto& b : parts) {
    ids.push_back(b.input_ids);
    labels.push_back(b.labels);
    out.num_targets += b.num_targets;
  }
  out.input_ids = torch::cat(ids);
  out.labels = torch::cat(labels);
  return out;
}

}  // namespace comba::train::testing
