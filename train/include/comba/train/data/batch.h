// One micro-batch as the model takes it. Built on the host by the data sources; the loop
// moves it to the device (non-blocking from pinned memory).
#pragma once
#include <torch/types.h>

#include <cstdint>

namespace comba::train {

struct Batch {
  torch::Tensor input_ids;   // int64 [B, T]
  torch::Tensor labels;      // int64 [B, T], HF-style: position t is scored on labels[t + 1]
  torch::Tensor cu_seqlens;  // int64 [N + 1] when documents are packed (B == 1), else undefined
  // Scored positions (labels[:, 1:] != ignore), counted on the host when the batch is made
  // so that loss weighting over accumulated micro-batches needs no device sync.
  int64_t num_targets = 0;

  int64_t tokens() const { return input_ids.numel(); }
  Batch to(const torch::Device& device) const;
  Batch pinned() const;
};

// Builds a batch from host vectors (row-major [rows, cols]).
Batch make_batch(const std::vector<int64_t>& input_ids, const std::vector<int64_t>& labels,
                 int64_t rows, int64_t cols, const std::vector<int64_t>& cu_seqlens = {});

}  // namespace comba::train
