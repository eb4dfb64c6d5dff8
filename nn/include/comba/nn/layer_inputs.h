// CombaLayerInputs: what a token mixer (a CombaLayer or an Attention layer) receives
// besides the hidden states: padding, packing and the decode state.
#pragma once
#include "comba/nn/cache.h"

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>

namespace comba::nn {

struct CombaLayerInputs {
  // [B, T_mask] with T_mask >= T (its last T columns are used, like fla/HF during
  // decoding): nonzero = token, 0 = padding; left or right padding.
  TORCH_ARG(torch::Tensor, attention_mask);
  // int64 [N + 1] boundaries of packed sequences (B must be 1).
  TORCH_ARG(torch::Tensor, cu_seqlens);
  // Decode state to read (if defined) and overwrite with the state after the last token.
  TORCH_ARG(LayerStatePtr, state) = nullptr;
};

// A mixer on unpadded tokens: x [B', T', hidden], cu_seqlens (undefined: dense), state.
using UnpaddedMixer = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, LayerState*)>;

// The mixers' shared front (CombaLayer, Attention): checks x [B, T, hidden], then runs
// `mix` on x as it is, or, given an attention_mask with padding, on its tokens packed with
// cu_seqlens, putting zeros back at the padding positions. `fn` starts every message.
torch::Tensor mix_without_padding(const char* fn, const torch::Tensor& x, int64_t hidden_size,
                                  const CombaLayerInputs& inputs, const UnpaddedMixer& mix);
}  // namespace comba::nn
