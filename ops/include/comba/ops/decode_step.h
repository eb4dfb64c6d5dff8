// One decode step of the Comba recurrence (SPEC section 1) into caller-owned buffers: the
// state is read and updated IN PLACE and the output written into `out`. On CUDA the step is
// one kernel launch and nothing else: no allocation, no copy, no host synchronisation (the
// checks read only sizes, dtypes, devices and strides), so it can be captured in a CUDA
// graph and replayed with the same buffers. fused_recurrent_comba with T = 1 computes the
// same numbers but returns new tensors.
//
// Shapes (fla's, T = 1): q, k, p [B, 1, H, K]; v [B, 1, HV, V]; g, beta [B, 1, HV];
// state [B, HV, K, V]; out [B, 1, HV, V] in q's dtype. q, k, v, p share one float dtype;
// g and beta are that dtype or float32. Every tensor must be contiguous and on q's device.
// state: float32, or bfloat16 (half the memory traffic; the math stays fp32 and each step
// rounds the stored state to bf16: tests/ops/test_decode_step.cpp measures the error this
// adds); float64 for float64 inputs (CPU).
// Runs the CUDA kernel for CUDA tensors in fp32 / fp16 / bf16 with K <= 256 and B <= 65535; else
// (the CPU, fp64) takes an ATen composition that allocates temporaries (for tests and
// CPU inference; still in place for the caller).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <torch/arg.h>

namespace comba {

struct DecodeStepOptions {
  // Multiplies q; defaults to K^-0.5.
  TORCH_ARG(c10::optional<double>, scale) = c10::nullopt;
  // L2-normalise q, k and p per head inside the step.
  TORCH_ARG(bool, use_qk_l2norm_in_kernel) = false;
};

// `p` defaults to k, `beta` to ones. Not differentiable (an inference step): an error when
// grad mode is on and an input requires grad.
void comba_decode_step_(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const c10::optional<at::Tensor>& p, const at::Tensor& g,
                        const c10::optional<at::Tensor>& beta, const at::Tensor& state,
                        const at::Tensor& out, const DecodeStepOptions& options = {});

}  // namespace comba
