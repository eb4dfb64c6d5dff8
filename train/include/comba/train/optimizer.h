// AdamW (FusedAdamW: ATen's fused kernel on the GPU) with two parameter groups: group 0
// takes weight decay, group 1 does not (A_log,
// dt_bias, D, decay, norms, biases, and embeddings unless decay_embeddings). Every
// hyper-parameter is set per group (LibTorch's defaults and group options have interacted
// in surprising ways across versions); the schedule sets each group's lr every step.
#pragma once
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>
#include <torch/ordered_dict.h>

#include <memory>
#include <string>
#include <vector>

#include "comba/train/config/optimizer_options.h"

namespace comba::train {

struct ParameterSplit {
  std::vector<std::string> decay;     // names, in module order
  std::vector<std::string> no_decay;
};

// Embeddings: model.embeddings.* and lm_head.* (fla's names).
bool is_embedding_parameter(const std::string& name);
ParameterSplit split_parameters(const torch::nn::Module& model, bool decay_embeddings);

std::unique_ptr<torch::optim::AdamW> make_optimizer(const torch::nn::Module& model,
                                                    const OptimizerOptions& options);
// The same for tensors named like the model's parameters (e.g. MasterWeights::named_masters).
std::unique_ptr<torch::optim::AdamW> make_optimizer(const torch::OrderedDict<std::string, torch::Tensor>& named,
                                                    const OptimizerOptions& options);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace comba::train
