// Gradient all-reduce overlapped with the backward pass, for data-parallel training.
//
// Parameters are grouped into buckets of about `bucket_bytes`, in reverse registration
// order (roughly the order backward produces their gradients). A hook on each parameter's
// gradient accumulator (AccumulateGrad post hook) copies the accumulated gradient into its
// bucket's flat buffer; when a bucket's last gradient arrives, its all-reduce (SUM) is
// launched asynchronously while backward goes on. Buckets are launched in index order on
// every rank, which NCCL needs. wait() then waits for every bucket and writes the sums
// back into .grad.
//
// The hooks act only after arm(): with gradient accumulation the trainer arms before the
// last micro-batch's backward, so earlier micro-batches accumulate locally and each step
// communicates once. Losses are scaled so that the SUM over ranks is the gradient of the
// whole step (see accumulate_gradients_with), hence no division here. A parameter that no
// rank's backward reached ends with a zero gradient (as in torch DDP), not an undefined one.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace comba::train {

class GradientReducer {
 public:
  // `parameters` may repeat a tensor (tied weights): each is reduced once. `masters`:
  // empty, or one per parameter (MasterWeights, bf16 training): then the gradient reduced
  // and written back is the master's (fp32), into which each hook first folds the
  // parameter's own (fold_gradient); buckets take the masters' dtype.
  GradientReducer(const std::vector<torch::Tensor>& parameters,
                  c10::intrusive_ptr<c10d::Backend> backend, int64_t bucket_bytes,
                  const std::vector<torch::Tensor>& masters = {});
  ~GradientReducer();  // removes the hooks
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // The next backward pass's accumulated gradients are all-reduced as they arrive.
  void arm();
  // After that backward: launches buckets whose gradients never came (zeros), waits for
  // all of them (for NCCL: the current stream waits) and writes the sums into .grad.
  void wait();

  int64_t num_buckets() const;
  // Buckets of the last step launched by the hooks, i.e. during backward (the others were
  // launched by wait(): their gradients came late or never).
  int64_t launched_during_backward() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace comba::train
