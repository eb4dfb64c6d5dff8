// Decode cache: per Comba layer the short-convolution states (the last conv_size - 1 inputs
// of each of q/k/v conv, [N, C, conv_size - 1]) and the recurrent state [N, HV, K, V] fp32;
// per attention layer its key/value cache.
// Undefined tensors mean "start from zeros"; a layer given a LayerState reads it and
// writes the state after its last token back into it.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace comba::nn {

struct LayerState {
  at::Tensor conv_q;     // [N, key_dim, conv_size - 1]
  at::Tensor conv_k;     // [N, key_dim, conv_size - 1]
  at::Tensor conv_v;     // [N, value_dim, conv_size - 1]
  at::Tensor recurrent;  // [N, HV, K, V] float32

  // Attention layers (attention.h): keys (after RoPE) and values [N, HKV, L, D], right
  // aligned (a row's cached tokens are its last columns; key_valid [N, L] bool marks them),
  // and positions [N] int64, the RoPE position of each row's next token.
  at::Tensor key;
  at::Tensor value;
  at::Tensor key_valid;
  at::Tensor positions;

  bool empty() const { return !recurrent.defined() && !key.defined(); }
};

class CombaCache {
 public:
  explicit CombaCache(int64_t num_layers) : layers_(static_cast<size_t>(num_layers)) {}

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  LayerState& layer(int64_t index);
  const LayerState& layer(int64_t index) const;

  // Tokens fed so far (per sequence, counting padding positions), as in HF's cache.
  int64_t seen_tokens() const { return seen_tokens_; }
  void add_seen_tokens(int64_t count) { seen_tokens_ += count; }

  // Keeps only the sequences `index` (int64 [M]) of every state, in that order (beam
  // search / dropping finished sequences).
  void select(const at::Tensor& index);
  void reset();

 private:
  std::vector<LayerState> layers_;
  int64_t seen_tokens_ = 0;
};

// Pointer aliases for TORCH_ARG fields (the macro spells `const T&`, which a raw `X*`
// would turn into a pointer to const). Non-owning; nullptr = no cache.
using LayerStatePtr = LayerState*;
using CombaCachePtr = CombaCache*;

}  // namespace comba::nn
