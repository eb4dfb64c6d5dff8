// AdamW parameter groups (see optimizer.h).
#include "comba/train/optimizer.h"

#include <torch/torch.h>

#include "comba/nn/causal_lm.h"
#include "comba/train/fused_adamw.h"

namespace comba::train {

bool is_embedding_parameter(const std::string& name) {
  return name.rfind("model.embeddings.", 0) == 0 || name.rfind("lm_head.", 0) == 0;
}

namespace {

ParameterSplit split_names(const torch::OrderedDict<std::string, torch::Tensor>& named, bool decay_embeddings) {
  ParameterSplit split;
  for (const auto& item : named) {
    const std::string& name = item.key();
    const bool decays = nn::takes_weight_decay(name) &&
                        (decay_embeddings || !is_embedding_parameter(name));
    (decays ? split.decay : split.no_decay).push_back(name);
  }
  return split;
}

}  // namespace

ParameterSplit split_parameters(const torch::nn::Module& model, bool decay_embeddings) {
  return split_names(model.named_parameters(/*recurse=*/true), decay_embeddings);
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(const torch::nn::Module& model,
                                                    const OptimizerOptions& options) {
  return make_optimizer(model.named_parameters(/*recurse=*/true), options);
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(const torch::OrderedDict<std::string, torch::Tensor>& params,
                                                    const OptimizerOptions& options) {
  const ParameterSplit split = split_names(params, options.decay_embeddings);
  const auto group_options = [&](double weight_decay) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(options.lr)
            .betas(std::make_tuple(options.beta1, options.beta2))
            .eps(options.eps)
            .weight_decay(weight_decay)
            .amsgrad(false));
  };
  std::vector<torch::Tensor> decay;
  std::vector<torch::Tensor> no_decay;
  for (const auto& name : split.decay) decay.push_back(params[name]);
  for (const auto& name : split.no_decay) no_decay.push_back(params[name]);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::move(decay), group_options(options.weight_decay));
  groups.emplace_back(std::move(no_decay), group_options(0.0));
  return std::make_unique<FusedAdamW>(std::move(groups), *group_options(options.weight_decay));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace comba::train
