// CombaBlock: pre-norm residual block, h += mixer(attn_norm(h)); h += mlp(mlp_norm(h)).
// The mixer is a CombaLayer, or, for a layer of the config's `attn` specs (a hybrid
// model), a softmax Attention layer; either is registered as "attn" (fla's name, so that
// parameters read model.layers.{i}.attn.q_proj.weight in both kinds of layer).
#pragma once
#include "comba/nn/attention.h"
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
  // The same numbers, with the mixer branch (attn_norm -> mixer, about two thirds of the
  // block's activation memory) run again in backward instead of kept
  // (activation_checkpoint.h); the MLP keeps its activations.
  torch::Tensor forward_recomputing_mixer(const torch::Tensor& hidden, const CombaLayerInputs& inputs = {});

  bool is_attention() const { return static_cast<bool>(attention); }
  // mixer(x) with whichever mixer this block holds.
  torch::Tensor mix(const torch::Tensor& x, const CombaLayerInputs& inputs);
  // mixer(attn_norm(hidden)); a Comba mixer fuses the norm into its input projections.
  torch::Tensor mix_normalized(const torch::Tensor& hidden, const CombaLayerInputs& inputs);

  RMSNorm attn_norm{nullptr};
  // Exactly one is set: `attn` in a Comba layer, `attention` in an attention layer. Two
  // typed holders (not one type-erased module) keep `block->attn->...` working for the
  // Comba-specific callers (set_keep_workspace, benchmarks, tests).
  CombaLayer attn{nullptr};
  Attention attention{nullptr};
  RMSNorm mlp_norm{nullptr};
  CombaMLP mlp{nullptr};
};
TORCH_MODULE(CombaBlock);

}  // namespace comba::nn
