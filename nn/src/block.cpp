// CombaBlock: pre-norm residual wiring of the mixer and the MLP.
#include "comba/nn/block.h"

#include "comba/nn/activation_checkpoint.h"

#include <torch/torch.h>

namespace comba::nn {

CombaBlockImpl::CombaBlockImpl(const CombaConfig& config, int64_t layer_idx) {
  attn_norm = register_module("attn_norm", RMSNorm(RMSNormOptions(config.hidden_size).eps(config.norm_eps)));
  attn = register_module("attn", CombaLayer(CombaLayerOptions::from_config(config).layer_idx(layer_idx)));
  mlp_norm = register_module("mlp_norm", RMSNorm(RMSNormOptions(config.hidden_size).eps(config.norm_eps)));
  mlp = register_module("mlp", CombaMLP(CombaMLPOptions(config.hidden_size, config.mlp_intermediate_size())));
}

torch::Tensor CombaBlockImpl::forward(const torch::Tensor& hidden, const CombaLayerInputs& inputs) {
  auto h = hidden + attn->forward(attn_norm(hidden), inputs);
  return h + mlp(mlp_norm(h));
}

torch::Tensor CombaBlockImpl::forward_recomputing_mixer(const torch::Tensor& hidden, const CombaLayerInputs& inputs) {
  // Holders captured by value: the backward runs the branch after this frame is gone.
  const auto mixer = [norm = attn_norm.ptr(), layer = attn.ptr(), inputs](const torch::Tensor& x) {
    return layer->forward(norm->forward(x), inputs);
  };
  auto h = hidden + activation_checkpoint(mixer, hidden);
  return h + mlp(mlp_norm(h));
}

}  // namespace comba::nn
