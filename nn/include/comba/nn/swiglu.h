// SwiGLU, the MLP's activation: y = silu(a) * b, computed in fp32 (fp64 for fp64 inputs),
// output in the inputs' dtype. On CUDA (a and b of one dtype among float32/float16/
// bfloat16) one fused kernel does the forward and one the backward (nn/cuda/swiglu), which
// recomputes silu from the saved inputs; elsewhere the ATen composition (swiglu_aten).
#pragma once
#include <torch/types.h>

namespace comba::nn {

// a, b of one shape on one device. Checks the arguments (errors name them), then takes the
// fused kernels where they apply, else swiglu_aten. Differentiable in a and b.
torch::Tensor swiglu(const torch::Tensor& a, const torch::Tensor& b);

// The same on the two halves of one [..., 2I] tensor (the output of one GEMM by the
// concatenated gate and up weights): silu(gate_up[..., :I]) * gate_up[..., I:] -> [..., I].
// The fused backward writes the gradient as one [..., 2I] tensor.
torch::Tensor swiglu_packed(const torch::Tensor& gate_up);

// swiglu_packed followed by a bias-free linear layer (the MLP's down projection), the
// SwiGLU output not kept for the backward: y = swiglu_packed(gate_up) @ weight^T, weight
// [out, I] -> y [..., out]. On CUDA the fused SwiGLU backward rewrites the output beside
// its gradients for weight's gradient; elsewhere (and under autocast) the composition.
torch::Tensor swiglu_linear(const torch::Tensor& gate_up, const torch::Tensor& weight);

// The same computation composed of ATen ops: the CPU path, and the twin the CUDA kernels
// are checked against. Expects arguments that swiglu accepts.
torch::Tensor swiglu_aten(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace comba::nn
