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
  // The same numbers, with the mixer branch (attn_norm -> attn, about two thirds of the
  // block's activation memory) run again in backward instead of kept
  // (activation_checkpoint.h); the MLP keeps its activations.
  torch::Tensor forward_recomputing_mixer(const torch::Tensor& hidden, const CombaLayerInputs& inputs = {});

  RMSNorm attn_norm{nullptr};
  CombaLayer attn{nullptr};
  RMSNorm mlp_norm{nullptr};
  CombaMLP mlp{nullptr};
};
TORCH_MODULE(CombaBlock);

}  // namespace comba::nn
