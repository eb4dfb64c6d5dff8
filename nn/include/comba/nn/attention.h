// Attention: causal softmax attention for the hybrid layers of fla's `attn` config
// (fla's layers/attn.py, parameter names q_proj, k_proj, v_proj, o_proj; RoPE on the two
// halves of each head, GPT-NeoX style, no parameters). Grouped-query heads, optional qkv
// bias, optional sliding window, padding (attention_mask) and packing (cu_seqlens).
// CUDA runs ATen's fused attention (flash attention for packed batches); the CPU the math
// path; the backward is ATen's.
#pragma once
#include "comba/nn/config.h"
#include "comba/nn/layer_inputs.h"

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace comba::nn {

struct AttentionOptions {
  AttentionOptions(int64_t hidden_size, int64_t num_heads) : hidden_size_(hidden_size), num_heads_(num_heads) {}
  // The options of a model config's spec (hidden size from the config).
  static AttentionOptions from_spec(const CombaConfig& config, const AttentionSpec& spec);

  TORCH_ARG(int64_t, hidden_size);
  TORCH_ARG(int64_t, num_heads);          // head_dim = hidden_size / num_heads
  TORCH_ARG(int64_t, num_kv_heads) = 0;   // 0 = num_heads
  TORCH_ARG(bool, qkv_bias) = false;
  TORCH_ARG(int64_t, window_size) = 0;    // 0 = full causal; w: keys i-w+1 .. i
  TORCH_ARG(double, rope_theta) = 10000.0;
  TORCH_ARG(int64_t, layer_idx) = 0;
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionOptions& options);
  void reset();

  // x [B, T, hidden] -> [B, T, hidden]. RoPE positions count each sequence's tokens from
  // its first real one (after left padding, at each cu_seqlens start), continuing from the
  // state's position when a decode state is given; the state then holds the keys and
  // values (after RoPE) the next call attends to, only the last window_size of them when
  // there is a window. Padding positions give zeros.
  torch::Tensor forward(const torch::Tensor& x, const CombaLayerInputs& inputs = {});

  int64_t head_dim() const { return head_dim_; }
  int64_t kv_heads() const { return num_kv_heads_; }

  AttentionOptions options;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  // x [B, T, hidden] without padding (dense, or packed with cu_seqlens and B = 1).
  torch::Tensor attend(const torch::Tensor& x, const torch::Tensor& cu_seqlens, LayerState* state);

  int64_t head_dim_ = 0, num_kv_heads_ = 0;
};
TORCH_MODULE(Attention);

}  // namespace comba::nn
