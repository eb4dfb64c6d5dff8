// ATen's flash attention (FlashAttention-2) on packed sequences, for the Attention layer:
// q [total, H, D], k and v [total, HKV, D] (H a multiple of HKV: grouped-query heads),
// cu_seqlens int32 [N + 1] on the device; causal, optional sliding window. Compiled only
// with CUDA (COMBA_WITH_CUDA). The backward is ATen's flash backward.
#pragma once
#include <torch/autograd.h>

namespace comba::nn::detail::cuda {

// Whether the flash kernels take these inputs: CUDA fp16/bf16, one dtype, head dim a
// multiple of 8 and at most 256.
bool flash_varlen_supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// Output {o [total, H, D]} in q's dtype. window_left < 0: full causal; w - 1 for a window
// of w keys (the query's own included).
class FlashVarlenFunction : public torch::autograd::Function<FlashVarlenFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& cu_seqlens, int64_t max_seqlen, double scale,
                                                int64_t window_left);
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

}  // namespace comba::nn::detail::cuda
