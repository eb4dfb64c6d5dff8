// AdamW whose step runs ATen's fused multi-tensor kernel (one launch per group instead of
// ~10 elementwise ops per parameter) for parameters on the GPU. The state is LibTorch's
// own (AdamWParamState: step, exp_avg, exp_avg_sq), so checkpoints and resumes are the
// same as with torch::optim::AdamW, and so is the update rule (decoupled weight decay,
// bias-corrected moments, eps after the square root). CPU parameters take AdamW's own
// step unless fuse_on_cpu is set (tests compare the two on the CPU).
#pragma once
#include <torch/optim/adamw.h>

#include <vector>

namespace comba::train {

class FusedAdamW : public torch::optim::AdamW {
 public:
  FusedAdamW(std::vector<torch::optim::OptimizerParamGroup> groups,
             torch::optim::AdamWOptions defaults, bool fuse_on_cpu = false)
      : torch::optim::AdamW(std::move(groups), std::move(defaults)), fuse_on_cpu_(fuse_on_cpu) {}

  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  bool fused_here(const torch::Tensor& p) const { return p.is_cuda() || fuse_on_cpu_; }
  bool fuse_on_cpu_ = false;
};

}  // namespace comba::train
