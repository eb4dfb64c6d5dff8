// Batch construction and transfer.
#include "comba/train/data/batch.h"

#include <torch/torch.h>

#include "comba/nn/labels.h"

namespace comba::train {

Batch Batch::to(const torch::Device& device) const {
  Batch out = *this;
  const bool async = input_ids.is_pinned();
  out.input_ids = input_ids.to(device, /*non_blocking=*/async);
  out.labels = labels.to(device, /*non_blocking=*/async);
  if (cu_seqlens.defined()) out.cu_seqlens = cu_seqlens.to(device, /*non_blocking=*/async);
  return out;
}

Batch Batch::pinned() const {
  Batch out = *this;
  out.input_ids = input_ids.pin_memory();
  out.labels = labels.pin_memory();
  if (cu_seqlens.defined()) out.cu_seqlens = cu_seqlens.pin_memory();
  return out;
}

Batch make_batch(const std::vector<int64_t>& input_ids, const std::vector<int64_t>& labels,
                 int64_t rows, int64_t cols, const std::vector<int64_t>& cu_seqlens) {
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  Batch batch;
  batch.input_ids = torch::tensor(input_ids, opts).view({rows, cols});
  batch.labels = torch::tensor(labels, opts).view({rows, cols});
  if (!cu_seqlens.empty()) batch.cu_seqlens = torch::tensor(cu_seqlens, opts);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 1; c < cols; ++c) batch.num_targets += labels[r * cols + c] != nn::kIgnoreIndex;
  }
  return batch;
}

}  // namespace comba::train
