// CombaBlock: pre-norm residual block, h += attn(attn_norm(h)); h += mlp(mlp_norm(h)).
#pragma once
#include "comba/nn/comba_layer.h"
#include "comba/nn/config.h"
#include "comba/nn/mlp.h"
#include "comba/nn/rms_norm.h"

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace comba::nn {

class CombaBlockImpl : public torch::nn::Module {
 public:
  CombaBlockImpl(const CombaConfig& config, int64_t layer_idx);
  torch::Tensor forward(const torch::Tensor& hidden, const CombaLayerInputs& inputs = {});

  RMSNorm attn_norm{nullptr};
  CombaLayer attn{nullptr};
  RMSNorm mlp_norm{nullptr};
  CombaMLP mlp{nullptr};
};
TORCH_MODULE(CombaBlock);

}  // namespace comba::nn
