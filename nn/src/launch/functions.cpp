#include "functions.h"

#include "launchers.h"

namespace comba::nn::detail::cuda {

namespace {

// The kernels' forms of the conv arguments: weight [C, K] fp32, bias fp32, the carried
// inputs in x's dtype (as the ATen path rounds them), cu_seqlens on x's device.
struct ConvArgs {
  at::Tensor weight, bias, initial_state, cu_seqlens;
};

ConvArgs conv_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                   const at::Tensor& initial_state, const at::Tensor& cu_seqlens) {
  ConvArgs a;
  a.weight = weight.reshape({weight.size(0), weight.size(2)}).to(at::kFloat).contiguous();
  if (bias.defined()) a.bias = bias.to(at::kFloat).contiguous();
  if (initial_state.defined()) a.initial_state = initial_state.to(x.scalar_type()).contiguous();
  if (cu_seqlens.defined()) a.cu_seqlens = cu_seqlens.to(x.device()).contiguous();
  return a;
}

enum ConvSaved { kX, kWeight, kBias, kInitial, kCu };

}  // namespace

variable_list ShortConvFunction::forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                                         const OptTensor& bias, const OptTensor& initial_state,
                                         const OptTensor& cu_seqlens, bool silu) {
  const auto xc = x.contiguous();
  const auto b = bias.value_or(at::Tensor());
  const auto h0 = initial_state.value_or(at::Tensor());
  const auto cu = cu_seqlens.value_or(at::Tensor());
  const auto args = conv_args(xc, weight, b, h0, cu);
  auto out = short_conv_fwd(xc, args.weight, args.bias, args.initial_state, args.cu_seqlens, silu);
  ctx->save_for_backward({xc, weight, b, h0, args.cu_seqlens});
  ctx->saved_data["silu"] = silu;
  return {out.y, out.final_state};
}

variable_list ShortConvFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& x = saved[kX];
  const auto& weight = saved[kWeight];
  const auto& bias = saved[kBias];
  const auto& h0 = saved[kInitial];
  const auto args = conv_args(x, weight, bias, h0, saved[kCu]);
  const auto dy = grad_outputs[0].defined() ? grad_outputs[0].to(x.scalar_type()).contiguous() : at::zeros_like(x);
  const auto d_final = grad_outputs[1].defined() ? grad_outputs[1].to(x.scalar_type()).contiguous() : at::Tensor();
  const auto grads = short_conv_bwd(x, args.weight, args.bias, args.initial_state, args.cu_seqlens,
                                    ctx->saved_data["silu"].toBool(), dy, d_final,
                                    /*want_initial_state_grad=*/h0.defined());
  const auto d_weight = grads.weight.view(weight.sizes()).to(weight.scalar_type());
  const auto d_bias = bias.defined() ? grads.bias.to(bias.scalar_type()) : at::Tensor();
  const auto d_h0 = h0.defined() ? grads.initial_state.to(h0.scalar_type()) : at::Tensor();
  // One entry per forward argument; cu_seqlens and silu take none.
  return {grads.x, d_weight, d_bias, d_h0, at::Tensor(), at::Tensor()};
}

namespace {
enum NormSaved { kNormX, kNormWeight, kNormGate, kNormRstd };

// The kernels see [rows, dim] contiguous views and an fp32 weight.
at::Tensor as_rows(const at::Tensor& t) { return t.contiguous().view({-1, t.size(-1)}); }
}  // namespace

variable_list RMSNormFunction::forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                                       const OptTensor& gate, double eps) {
  const auto x2 = as_rows(x);
  const auto g2 = gate.has_value() ? as_rows(*gate) : at::Tensor();
  auto out = rms_norm_fwd(x2, weight.to(at::kFloat).contiguous(), g2, eps);
  ctx->save_for_backward({x2, weight, g2, out.rstd});
  return {out.y.view(x.sizes())};
}

variable_list RMSNormFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& x2 = saved[kNormX];
  const auto& weight = saved[kNormWeight];
  const auto& g2 = saved[kNormGate];
  const auto& dy = grad_outputs[0];
  if (!dy.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  const auto grads = rms_norm_bwd(x2, weight.to(at::kFloat).contiguous(), g2, saved[kNormRstd],
                                  as_rows(dy.to(x2.scalar_type())));
  const auto d_gate = g2.defined() ? grads.gate.view(dy.sizes()) : at::Tensor();
  return {grads.x.view(dy.sizes()), grads.weight.to(weight.scalar_type()), d_gate, at::Tensor()};
}

}  // namespace comba::nn::detail::cuda
