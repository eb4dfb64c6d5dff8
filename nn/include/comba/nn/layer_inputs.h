// CombaLayerInputs: what a token mixer (a CombaLayer or an Attention layer) receives
// besides the hidden states: padding, packing and the decode state.
#pragma once
#include "comba/nn/cache.h"

#include <torch/arg.h>
#include <torch/types.h>

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

}  // namespace comba::nn
