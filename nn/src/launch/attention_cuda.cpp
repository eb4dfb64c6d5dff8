#include "attention_cuda.h"

#include <ATen/ops/_flash_attention_backward.h>
#include <ATen/ops/_flash_attention_forward.h>

namespace comba::nn::detail::cuda {

namespace {
enum Saved { kQ, kK, kV, kOut, kLse, kCu, kSeed, kOffset };

// nullopt = no window (the kernels' -1); the right side is 0 (causal).
std::optional<int64_t> left_window(int64_t window_left) {
  return window_left >= 0 ? std::optional<int64_t>(window_left) : std::nullopt;
}
}  // namespace

bool flash_varlen_supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const auto dtype = q.scalar_type();
  const int64_t head_dim = q.size(-1);
  return q.is_cuda() && (dtype == at::kHalf || dtype == at::kBFloat16) && k.scalar_type() == dtype &&
         v.scalar_type() == dtype && head_dim % 8 == 0 && head_dim <= 256;
}

torch::autograd::variable_list FlashVarlenFunction::forward(torch::autograd::AutogradContext* ctx,
                                                            const at::Tensor& q, const at::Tensor& k,
                                                            const at::Tensor& v, const at::Tensor& cu_seqlens,
                                                            int64_t max_seqlen, double scale, int64_t window_left) {
  const auto qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const auto cu = cu_seqlens.to(q.device(), at::kInt).contiguous();  // the kernels read int32
  auto [out, lse, seed, offset, debug] =
      at::_flash_attention_forward(qc, kc, vc, cu, cu, max_seqlen, max_seqlen, /*dropout_p=*/0.0,
                                   /*is_causal=*/true, /*return_debug_mask=*/false, scale,
                                   left_window(window_left), /*window_size_right=*/0);
  (void)debug;
  ctx->save_for_backward({qc, kc, vc, out, lse, cu, seed, offset});
  ctx->saved_data["max_seqlen"] = max_seqlen;
  ctx->saved_data["scale"] = scale;
  ctx->saved_data["window_left"] = window_left;
  return {out};
}

torch::autograd::variable_list FlashVarlenFunction::backward(torch::autograd::AutogradContext* ctx,
                                                             torch::autograd::variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const int64_t max_seqlen = ctx->saved_data["max_seqlen"].toInt();
  const auto& out = saved[kOut];
  const auto grad = grad_outputs[0].defined() ? grad_outputs[0].to(out.scalar_type()).contiguous()
                                              : at::zeros_like(out);
  auto [dq, dk, dv] = at::_flash_attention_backward(
      grad, saved[kQ], saved[kK], saved[kV], out, saved[kLse], saved[kCu], saved[kCu], max_seqlen, max_seqlen,
      /*dropout_p=*/0.0, /*is_causal=*/true, saved[kSeed], saved[kOffset], ctx->saved_data["scale"].toDouble(),
      left_window(ctx->saved_data["window_left"].toInt()), /*window_size_right=*/0);
  // One entry per forward argument; cu_seqlens, max_seqlen, scale and window take none.
  return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
}

}  // namespace comba::nn::detail::cuda
