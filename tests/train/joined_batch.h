// Micro-batches as one batch (rows stacked, target counts added): what gradient
// accumulation over them must equal.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "comba/train/data/batch.h"

namespace comba::train::testing {

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
