// fp32 master weights beside bf16 parameters (see master_weights.h).
#include "comba/train/master_weights.h"

#include <ATen/ops/_foreach_copy.h>
#include <torch/torch.h>

#include <unordered_map>

namespace comba::train {

void fold_gradient(const torch::Tensor& param, const torch::Tensor& master) {
  torch::Tensor& grad = param.mutable_grad();
  if (!grad.defined()) return;
  const torch::NoGradGuard no_grad;
  torch::Tensor& sum = master.mutable_grad();
  if (sum.defined()) {
    sum.add_(grad);  // widened to the master's dtype element by element
  } else {
    sum = grad.to(master.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  }
  grad.reset();  // the next micro-batch's backward starts from none (no zeroing pass)
}

MasterWeights::MasterWeights(const torch::OrderedDict<std::string, torch::Tensor>& named_parameters,
                             torch::Dtype compute_dtype) {
  const torch::NoGradGuard no_grad;
  std::unordered_map<const void*, torch::Tensor> master_of;
  for (const auto& item : named_parameters) {
    const torch::Tensor& p = item.value();
    auto found = master_of.find(p.unsafeGetTensorImpl());
    if (found == master_of.end()) {
      auto master = p.detach().clone().requires_grad_(p.requires_grad());
      found = master_of.emplace(p.unsafeGetTensorImpl(), master).first;
      params_.push_back(p);
      masters_.push_back(master);
    }
    named_masters_.insert(item.key(), found->second);
  }
  // Converted only once every master is taken (a tied tensor is met twice above).
  for (auto& p : params_) p.set_data(p.detach().to(compute_dtype));
}

void MasterWeights::accumulate_gradients() const {
  for (size_t i = 0; i < params_.size(); ++i) fold_gradient(params_[i], masters_[i]);
}

void MasterWeights::copy_to_model() const {
  const torch::NoGradGuard no_grad;
  at::_foreach_copy_(params_, masters_);  // one multi-tensor launch where the device has one
}

MasterWeights::Exposed::Exposed(const MasterWeights& weights) : weights_(weights) {
  for (size_t i = 0; i < weights_.params_.size(); ++i) {
    torch::Tensor p = weights_.params_[i];
    compute_.push_back(p.variable_data());  // keeps the compute storage for the way back
    p.set_data(weights_.masters_[i]);
  }
}

MasterWeights::Exposed::~Exposed() {
  const torch::NoGradGuard no_grad;
  for (size_t i = 0; i < compute_.size(); ++i) {
    compute_[i].copy_(weights_.masters_[i]);
    torch::Tensor p = weights_.params_[i];
    p.set_data(compute_[i]);
  }
}

}  // namespace comba::train
