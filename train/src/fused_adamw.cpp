// FusedAdamW (see fused_adamw.h).
#include "comba/train/fused_adamw.h"

#include <ATen/ops/_fused_adamw.h>
#include <torch/torch.h>

#include <map>

namespace comba::train {

torch::Tensor FusedAdamW::step(LossClosure closure) {
  bool all_fused = true;
  for (const auto& group : param_groups()) {
    for (const auto& p : group.params()) all_fused = all_fused && fused_here(p);
  }
  if (!all_fused) return torch::optim::AdamW::step(std::move(closure));

  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    TORCH_CHECK(!options.amsgrad(), "FusedAdamW: amsgrad is not supported");
    // Parameters that share a step count (all of them, unless some missed a gradient)
    // share one step tensor; the fused kernel reads it for the bias corrections.
    struct Lists {
      std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    };
    std::map<std::pair<int64_t, std::string>, Lists> by_step;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*slot);
      state.step(state.step() + 1);
      Lists& lists = by_step[{state.step(), p.device().str()}];
      lists.params.push_back(p);
      lists.grads.push_back(p.grad());
      lists.exp_avgs.push_back(state.exp_avg());
      lists.exp_avg_sqs.push_back(state.exp_avg_sq());
    }
    const auto [beta1, beta2] = options.betas();
    for (auto& [key, lists] : by_step) {
      const auto step = torch::full({}, static_cast<double>(key.first),
                                    torch::TensorOptions().dtype(torch::kFloat).device(lists.params.front().device()));
      const std::vector<torch::Tensor> steps(lists.params.size(), step);
      at::_fused_adamw_(lists.params, lists.grads, lists.exp_avgs, lists.exp_avg_sqs, {}, steps,
                        options.lr(), beta1, beta2, options.weight_decay(), options.eps(),
                        /*amsgrad=*/false, /*maximize=*/false);
    }
  }
  return loss;
}

}  // namespace comba::train
