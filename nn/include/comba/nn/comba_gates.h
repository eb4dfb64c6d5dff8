// The Comba layer's gates from its projections (SPEC section 3), in fp32 (fp64 for fp64
// inputs) whatever the projections' dtype:
//   g = -exp(A_log[h]) * softplus(a + dt_bias[h]),  beta = sigmoid(b)
// with torch's softplus (beta 1, threshold 20). On CUDA (a and b of one dtype among
// float32/float16/bfloat16, at most 256 heads) one fused kernel computes both in the forward
// and one gives da, db, dA_log and ddt_bias in the backward (the sums over tokens in a fixed
// order, fp32: the same bits every run); elsewhere the ATen composition (comba_gates_aten).
#pragma once
#include <torch/types.h>

namespace comba::nn {

struct CombaGates {
  torch::Tensor g;     // like a, fp32 (fp64 for fp64 a)
  torch::Tensor beta;  // like b, fp32 (fp64 for fp64 b)
};

// a, b [..., HV] (the a_proj / b_proj outputs), A_log and dt_bias [HV], one device. Checks
// the arguments (errors name them). Differentiable in all four.
CombaGates comba_gates(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& A_log,
                       const torch::Tensor& dt_bias);

// The same computation composed of ATen ops: the CPU path, and the twin the CUDA kernels
// are checked against. Expects arguments that comba_gates accepts.
CombaGates comba_gates_aten(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& A_log,
                            const torch::Tensor& dt_bias);

}  // namespace comba::nn
