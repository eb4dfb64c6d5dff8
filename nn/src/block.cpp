// CombaBlock: pre-norm residual wiring of the mixer (Comba or attention) and the MLP.
#include "comba/nn/block.h"

#include "comba/nn/activation_checkpoint.h"

#include <torch/torch.h>

namespace comba::nn {

CombaBlockImpl::CombaBlockImpl(const CombaConfig& config, int64_t layer_idx) {
  attn_norm = register_module("attn_norm", RMSNorm(RMSNormOptions(config.hidden_size).eps(config.norm_eps)));
  if (const AttentionSpec* spec = config.attention_for_layer(layer_idx)) {
    attention = register_module("attn", Attention(AttentionOptions::from_spec(config, *spec).layer_idx(layer_idx)));
  } else {
    attn = register_module("attn", CombaLayer(CombaLayerOptions::from_config(config).layer_idx(layer_idx)));
  }
  mlp_norm = register_module("mlp_norm", RMSNorm(RMSNormOptions(config.hidden_size).eps(config.norm_eps)));
  mlp = register_module("mlp", CombaMLP(CombaMLPOptions(config.hidden_size, config.mlp_intermediate_size())));
}

torch::Tensor CombaBlockImpl::mix(const torch::Tensor& x, const CombaLayerInputs& inputs) {
  return attention ? attention->forward(x, inputs) : attn->forward(x, inputs);
}

torch::Tensor CombaBlockImpl::mix_normalized(const torch::Tensor& hidden, const CombaLayerInputs& inputs) {
  return attention ? attention->forward(attn_norm(hidden), inputs) : attn->forward_normalized(hidden, *attn_norm, inputs);
}

torch::Tensor CombaBlockImpl::forward(const torch::Tensor& hidden, const CombaLayerInputs& inputs) {
  auto h = hidden + mix_normalized(hidden, inputs);
  return h + mlp->forward_normalized(h, *mlp_norm);
}

torch::Tensor CombaBlockImpl::forward_recomputing_mixer(const torch::Tensor& hidden, const CombaLayerInputs& inputs) {
  // The block is captured by shared pointer: the backward runs the branch after this frame
  // is gone.
  const auto self = std::static_pointer_cast<CombaBlockImpl>(shared_from_this());
  const auto mixer = [self, inputs](const torch::Tensor& x) { return self->mix_normalized(x, inputs); };
  auto h = hidden + activation_checkpoint(mixer, hidden);
  return h + mlp->forward_normalized(h, *mlp_norm);
}

}  // namespace comba::nn
