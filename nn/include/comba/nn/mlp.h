// CombaMLP: SwiGLU feed-forward, down(silu(gate(x)) * up(x)), no biases (fla's GatedMLP).
// The forward runs gate and up as one GEMM by the concatenated weights, then the fused
// SwiGLU (comba/nn/swiglu.h) on the two halves of its output.
#pragma once
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "comba/nn/rms_norm.h"

namespace comba::nn {

struct CombaMLPOptions {
  CombaMLPOptions(int64_t hidden_size, int64_t intermediate_size)
      : hidden_size_(hidden_size), intermediate_size_(intermediate_size) {}
  TORCH_ARG(int64_t, hidden_size);
  TORCH_ARG(int64_t, intermediate_size);
};

class CombaMLPImpl : public torch::nn::Module {
 public:
  explicit CombaMLPImpl(const CombaMLPOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x);
  // forward(norm(x)), with the normalised input and the SwiGLU output recomputed in the
  // backward instead of kept (rms_norm_linear, swiglu_linear): the block's MLP branch.
  torch::Tensor forward_normalized(const torch::Tensor& x, const RMSNormImpl& norm);

  CombaMLPOptions options;
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  // [W_gate; W_up]: the gate and up projections as one GEMM's weight.
  torch::Tensor gate_up_weight() const;
};
TORCH_MODULE(CombaMLP);

}  // namespace comba::nn
