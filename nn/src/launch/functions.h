// Autograd Functions of the fused nn kernels: save what the backward needs, call the
// launchers (launchers.h), cast grads back to each input's dtype. Inputs arrive checked;
// optional tensors travel as c10::optional (autograd::Function rejects undefined ones).
#pragma once
#include <torch/autograd.h>

namespace comba::nn::detail::cuda {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = c10::optional<at::Tensor>;

// Outputs {y [B, T, C], final_state [N, C, K - 1]}; weight [C, 1, K].
class ShortConvFunction : public torch::autograd::Function<ShortConvFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const OptTensor& bias, const OptTensor& initial_state,
                               const OptTensor& cu_seqlens, bool silu);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

// Output {y} like x; weight [dim]; gate like x or none.
class RMSNormFunction : public torch::autograd::Function<RMSNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const OptTensor& gate, double eps);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

// Output {y} like a = silu(a) * b; saves a and b, recomputes in the backward.
class SwiGLUFunction : public torch::autograd::Function<SwiGLUFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

// Output {y [..., I]} = silu(gate_up[..., :I]) * gate_up[..., I:] from one [..., 2I] GEMM
// output; its gradient is written as one [..., 2I] tensor (no split, no concatenation).
class SwiGLUPackedFunction : public torch::autograd::Function<SwiGLUPackedFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& gate_up);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

// Outputs {y_i [..., out_i]} = rms_norm(x in groups of norm_weight's size, gate) @ weights[i]^T,
// one GEMM each on the same normalised rows; saves x, the gate, rstd and the weights, and
// the backward's norm kernel rewrites the normalised rows for the weights' gradients
// (nothing of the norm's output is kept). Pass the weights as an at::TensorList so that
// autograd sees each as an input.
class RMSNormLinearFunction : public torch::autograd::Function<RMSNormLinearFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& norm_weight,
                               const OptTensor& gate, at::TensorList weights, double eps);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

// Output {y [..., out]} = swiglu_packed(gate_up) @ weight^T; saves gate_up and the weight,
// and the backward's SwiGLU kernel rewrites the activation for weight's gradient.
class SwiGLULinearFunction : public torch::autograd::Function<SwiGLULinearFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& gate_up, const at::Tensor& weight);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

// Outputs {g, beta} fp32 like a [..., HV]; A_log, dt_bias [HV].
class CombaGatesFunction : public torch::autograd::Function<CombaGatesFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                               const at::Tensor& A_log, const at::Tensor& dt_bias);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

// Outputs {q', p} like k [..., H, K]: p = k sigmoid(decay), q' = q - D p; decay, D [H].
// Saves k and the two parameters.
class DecayCorrectionFunction : public torch::autograd::Function<DecayCorrectionFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& decay, const at::Tensor& D);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

}  // namespace comba::nn::detail::cuda
