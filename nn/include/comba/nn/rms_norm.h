// RMSNorm and gated RMSNorm, computed in fp32 whatever the input dtype, output in the
// input's dtype: y = x / sqrt(mean(x^2) + eps) * weight, and for the gated form
// y = rmsnorm(x) * sigmoid(gate) (SPEC section 3: o_norm with the output gate).
// On CUDA (float32/float16/bfloat16 x, dim <= 8192) one fused kernel does the forward and
// one the backward (nn/cuda/rms_norm); elsewhere the ATen composition (rms_norm_aten).
#pragma once
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace comba::nn {

struct RMSNormOptions {
  RMSNormOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(double, eps) = 1e-6;
};

class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(const RMSNormOptions& options);
  void reset();
  void reset_parameters();
  // x [..., dim] -> same shape and dtype.
  torch::Tensor forward(const torch::Tensor& x);

  RMSNormOptions options;
  torch::Tensor weight;  // [dim], init ones
};
TORCH_MODULE(RMSNorm);

class GatedRMSNormImpl : public torch::nn::Module {
 public:
  explicit GatedRMSNormImpl(const RMSNormOptions& options);
  void reset();
  void reset_parameters();
  // x, gate [..., dim] -> rmsnorm(x) * sigmoid(gate), in x's dtype; an undefined gate
  // gives the plain RMSNorm (fla's o_norm without the output gate has the same weight).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& gate = {});

  RMSNormOptions options;
  torch::Tensor weight;  // [dim], init ones
};
TORCH_MODULE(GatedRMSNorm);

// The computation shared by both modules: x [..., dim], weight [dim], gate like x or
// undefined (plain RMSNorm); fp32 math (fp64 for fp64 x), output in x's dtype. Checks the
// arguments (errors name them), then dispatches to the fused CUDA kernels where they apply,
// else rms_norm_aten. Differentiable in x, weight and gate.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps,
                       const torch::Tensor& gate = {});

// The same computation composed of ATen ops: the CPU path, and the twin the CUDA kernels
// are checked and timed against. Expects arguments that rms_norm accepts.
torch::Tensor rms_norm_aten(const torch::Tensor& x, const torch::Tensor& weight, double eps,
                            const torch::Tensor& gate = {});

// A (gated) RMSNorm followed by a bias-free linear layer, the norm's output not kept for
// the backward: y = norm(x) @ weight^T, where norm is rms_norm over each consecutive group
// of norm_weight.size(0) channels of x's last dim (one group per head, or one for the
// whole dim). x [..., D] with D a multiple of the group size, gate like x or undefined,
// weight [out, D] -> y [..., out] in x's dtype. On CUDA the backward's fused norm kernel
// rewrites norm(x) beside its gradients for weight's gradient, so the pair keeps only x
// (and the gate) where norm + Linear would also keep norm(x): the same values, one
// activation fewer. Elsewhere (and under autocast) the plain composition.
torch::Tensor rms_norm_linear(const torch::Tensor& x, const torch::Tensor& norm_weight, double eps,
                              const torch::Tensor& gate, const torch::Tensor& weight);

// The same with several weights on one normalised x: y_i = norm(x) @ weights[i]^T (a
// layer's input projections). On CUDA the backward sums x's gradient over the outputs
// inside the GEMMs (no [..., D] adds) and rewrites norm(x) once for all weight grads.
// Outputs whose gradient is undefined are skipped.
std::vector<torch::Tensor> rms_norm_linears(const torch::Tensor& x, const torch::Tensor& norm_weight, double eps,
                                            const torch::Tensor& gate, const std::vector<torch::Tensor>& weights);

}  // namespace comba::nn
