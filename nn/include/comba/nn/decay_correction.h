// The Comba layer's inner decay and output correction (SPEC section 3), per key head h:
//   p = k * sigmoid(decay[h])      (use_inner_decay)
//   q' = q - D[h] * p              (use_output_correction)
// computed in fp32 (fp64 for fp64 inputs) with decay and D in fp32 whatever the parameters'
// dtype, p rounded to the inputs' dtype before it enters q' (the operator sees that p), both
// outputs in the inputs' dtype. On CUDA (q and k of one dtype among float32/float16/
// bfloat16) one fused kernel computes both in the forward and one gives dk, dD and ddecay in
// the backward (sums over tokens in a fixed order, fp32: the same bits every run); elsewhere
// the ATen composition (decay_correction_aten).
#pragma once
#include <torch/types.h>

namespace comba::nn {

struct DecayCorrection {
  torch::Tensor q;  // q' like q
  torch::Tensor p;  // like k
};

// q, k [..., H, K] of one shape, dtype and device; decay and D [H], either undefined (that
// step skipped: p = k without decay, q' = q without D). Checks the arguments (errors name
// them). Differentiable in all four.
DecayCorrection decay_correction(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& decay,
                                 const torch::Tensor& D);

// The same computation composed of ATen ops: the CPU path, and the twin the CUDA kernels
// are checked against. Expects arguments that decay_correction accepts.
DecayCorrection decay_correction_aten(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& decay,
                                      const torch::Tensor& D);

}  // namespace comba::nn
