// Linear + cross entropy over the vocabulary without the [tokens, vocab] logits.
//
// A language model's last GEMM and its loss are the largest tensors of a training step
// (8 x 2048 tokens x 32000 vocab: 2 GiB of fp32 logits, and as much again for their
// gradient). This computes sum_i CE(hidden_i W^T, target_i) in slices of tokens: each
// slice's logits live only while it is processed, and since the loss is a scalar the
// slice's gradients (d hidden, d W) are taken in the same pass and kept, so the backward
// only scales them (three GEMMs in all, as the unfused composition). Numerics follow that
// composition: logits in the inputs' dtype with fp32 accumulation, the softmax in fp32. On
// CUDA one kernel per slice reads its logits once and overwrites them with their gradient
// (no fp32 copy of the slice).
#pragma once
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>

namespace comba::nn {

struct LinearCrossEntropyOptions {
  // Targets equal to this contribute nothing (loss or gradient).
  TORCH_ARG(int64_t, ignore_index) = -100;
  // Tokens per slice; 0 = as many as keep one fp32 slice of logits near 256 MiB.
  TORCH_ARG(int64_t, tokens_per_slice) = 0;
};

// hidden: [N, H] float; weight: [V, H] (the output projection, e.g. lm_head or the tied
// embedding) of hidden's dtype, or fp32 beside 16-bit hidden (cast once, differentiably);
// targets: int64 [N], each in [0, V) or ignore_index. Under autocast the inputs are cast
// to the autocast dtype first. Returns the fp32 (fp64 for fp64 inputs) sum of the per-token cross entropies of
// the counted targets (0 when none); differentiable in hidden and weight (no double
// backward). Out-of-range targets: an error naming one when targets are on the CPU; on a
// GPU they make the loss NaN rather than cost a host sync every call.
torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets,
                                   const LinearCrossEntropyOptions& options = {});

}  // namespace comba::nn
