#include "functions.h"

#include "launchers.h"

#include <vector>

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

namespace {
// [rows, last] contiguous view of t.
at::Tensor rows_of(const at::Tensor& t) {
  const int64_t last = t.size(-1);
  return t.contiguous().view({last > 0 ? t.numel() / last : 0, last});
}
}  // namespace

variable_list SwiGLUFunction::forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
  const auto a2 = rows_of(a), b2 = rows_of(b);
  ctx->save_for_backward({a2, b2});
  return {swiglu_fwd(a2, b2).view(a.sizes())};
}

variable_list SwiGLUFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& a2 = saved[0];
  const auto& b2 = saved[1];
  const auto& dy = grad_outputs[0];
  if (!dy.defined()) return {at::Tensor(), at::Tensor()};
  auto da = at::empty_like(a2), db = at::empty_like(b2);
  swiglu_bwd(a2, b2, rows_of(dy.to(a2.scalar_type())), da, db);
  return {da.view(dy.sizes()), db.view(dy.sizes())};
}

variable_list SwiGLUPackedFunction::forward(AutogradContext* ctx, const at::Tensor& gate_up) {
  const auto gu = rows_of(gate_up);
  const int64_t half = gu.size(1) / 2;
  ctx->save_for_backward({gu});
  auto sizes = gate_up.sizes().vec();
  sizes.back() = half;
  return {swiglu_fwd(gu.narrow(1, 0, half), gu.narrow(1, half, half)).view(sizes)};
}

variable_list SwiGLUPackedFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto gu = ctx->get_saved_variables()[0];
  const auto& dy = grad_outputs[0];
  if (!dy.defined()) return {at::Tensor()};
  const int64_t half = gu.size(1) / 2;
  auto d_gu = at::empty_like(gu);
  swiglu_bwd(gu.narrow(1, 0, half), gu.narrow(1, half, half), rows_of(dy.to(gu.scalar_type())),
             d_gu.narrow(1, 0, half), d_gu.narrow(1, half, half));
  auto sizes = dy.sizes().vec();
  sizes.back() = 2 * half;
  return {d_gu.view(sizes)};
}

namespace {
// out [..., n] for x [..., d]: x's sizes with the last replaced.
std::vector<int64_t> with_last(const at::Tensor& x, int64_t n) {
  auto sizes = x.sizes().vec();
  sizes.back() = n;
  return sizes;
}

// The weight gradient of y = input @ weight^T: dy^T input ([out, in]) in the weight's dtype,
// from dy [rows, out] and the input [rows, in] as the backward rewrote it.
at::Tensor linear_weight_grad(const at::Tensor& dy2, const at::Tensor& input2, const at::Tensor& weight) {
  return at::mm(dy2.t(), input2).to(weight.scalar_type());
}

enum NormLinearSaved { kNLX, kNLNormWeight, kNLGate, kNLRstd, kNLWeights };
}  // namespace

variable_list RMSNormLinearFunction::forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& norm_weight,
                                             const OptTensor& gate, at::TensorList weights, double eps) {
  const int64_t group = norm_weight.size(0), width = x.size(-1);
  const auto x2 = x.contiguous().view({-1, group});
  const auto g2 = gate.has_value() ? gate->contiguous().view({-1, group}) : at::Tensor();
  const auto out = rms_norm_fwd(x2, norm_weight.to(at::kFloat).contiguous(), g2, eps);
  const auto normed = out.y.view({-1, width});
  std::vector<at::Tensor> to_save = {x2, norm_weight, g2, out.rstd};
  variable_list ys;
  for (const auto& weight : weights) {
    ys.push_back(at::mm(normed, weight.to(x.scalar_type()).t()).view(with_last(x, weight.size(0))));
    to_save.push_back(weight);
  }
  ctx->save_for_backward(to_save);
  ctx->saved_data["width"] = width;
  ctx->saved_data["x_sizes"] = x.sizes().vec();
  return ys;
}

variable_list RMSNormLinearFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& x2 = saved[kNLX];
  const auto& norm_weight = saved[kNLNormWeight];
  const auto& g2 = saved[kNLGate];
  const size_t count = saved.size() - kNLWeights;
  // One entry per forward argument: x, norm_weight, gate, each weight, eps.
  variable_list grads_in(3 + count + 1);
  const int64_t width = ctx->saved_data["width"].toInt();
  const auto dtype = x2.scalar_type();
  // d norm(x) = sum_i dy_i @ weight_i, summed inside the GEMMs (beta = 1) rather than by
  // separate adds of [rows, D] tensors.
  std::vector<at::Tensor> dy2(count);
  at::Tensor d_normed;
  for (size_t i = 0; i < count; ++i) {
    if (!grad_outputs[i].defined()) continue;
    const auto& weight = saved[kNLWeights + i];
    dy2[i] = grad_outputs[i].to(dtype).reshape({-1, weight.size(0)});
    if (d_normed.defined()) {
      d_normed.addmm_(dy2[i], weight.to(dtype));
    } else {
      d_normed = at::mm(dy2[i], weight.to(dtype));
    }
  }
  if (!d_normed.defined()) return grads_in;
  // The norm's backward also rewrites norm(x) for the weights' grads.
  const auto grads = rms_norm_bwd(x2, norm_weight.to(at::kFloat).contiguous(), g2, saved[kNLRstd],
                                  d_normed.view(x2.sizes()), /*recompute_output=*/true);
  const auto x_sizes = ctx->saved_data["x_sizes"].toIntVector();
  grads_in[0] = grads.x.view(x_sizes);
  grads_in[1] = grads.weight.to(norm_weight.scalar_type());
  if (g2.defined()) grads_in[2] = grads.gate.view(x_sizes);
  const auto normed = grads.y.view({-1, width});
  for (size_t i = 0; i < count; ++i) {
    if (dy2[i].defined()) grads_in[3 + i] = linear_weight_grad(dy2[i], normed, saved[kNLWeights + i]);
  }
  return grads_in;
}

variable_list SwiGLULinearFunction::forward(AutogradContext* ctx, const at::Tensor& gate_up, const at::Tensor& weight) {
  const auto gu = rows_of(gate_up);
  const int64_t half = gu.size(1) / 2;
  const auto h = swiglu_fwd(gu.narrow(1, 0, half), gu.narrow(1, half, half));
  ctx->save_for_backward({gu, weight});
  return {at::mm(h, weight.to(gu.scalar_type()).t()).view(with_last(gate_up, weight.size(0)))};
}

variable_list SwiGLULinearFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& gu = saved[0];
  const auto& weight = saved[1];
  const auto& dy = grad_outputs[0];
  if (!dy.defined()) return {at::Tensor(), at::Tensor()};
  const int64_t half = gu.size(1) / 2;
  const auto dy2 = dy.to(gu.scalar_type()).reshape({-1, weight.size(0)});
  const auto dh = at::mm(dy2, weight.to(gu.scalar_type()));  // [rows, I] contiguous
  auto d_gu = at::empty_like(gu);
  const auto h = at::empty_like(dh);
  swiglu_bwd(gu.narrow(1, 0, half), gu.narrow(1, half, half), dh, d_gu.narrow(1, 0, half),
             d_gu.narrow(1, half, half), h);
  return {d_gu.view(with_last(dy, 2 * half)), linear_weight_grad(dy2, h, weight)};
}

namespace {
enum GatesSaved { kGatesA, kGatesB, kGatesALog, kGatesDtBias };

// The kernels' form of a per-head parameter: [HV] fp32 contiguous.
at::Tensor head_param(const at::Tensor& t) { return t.to(at::kFloat).contiguous(); }
}  // namespace

variable_list CombaGatesFunction::forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                                          const at::Tensor& A_log, const at::Tensor& dt_bias) {
  const auto a2 = rows_of(a), b2 = rows_of(b);
  const auto out = comba_gates_fwd(a2, b2, head_param(A_log), head_param(dt_bias));
  ctx->save_for_backward({a2, b2, A_log, dt_bias});
  return {out.g.view(a.sizes()), out.beta.view(a.sizes())};
}

variable_list CombaGatesFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& a2 = saved[kGatesA];
  const auto& A_log = saved[kGatesALog];
  const auto& dt_bias = saved[kGatesDtBias];
  const auto fp32_rows = [](const at::Tensor& t) { return t.defined() ? rows_of(t.to(at::kFloat)) : t; };
  const auto& dg = grad_outputs[0];
  const auto& dbeta = grad_outputs[1];
  if (!dg.defined() && !dbeta.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  const auto grads = comba_gates_bwd(a2, saved[kGatesB], head_param(A_log), head_param(dt_bias), fp32_rows(dg),
                                     fp32_rows(dbeta));
  const auto sizes = dg.defined() ? dg.sizes() : dbeta.sizes();
  return {grads.a.view(sizes), grads.b.view(sizes), grads.A_log.to(A_log.scalar_type()),
          grads.dt_bias.to(dt_bias.scalar_type())};
}

namespace {
// [rows, heads, dim] contiguous view of a [..., heads, dim] tensor.
at::Tensor head_rows(const at::Tensor& t) { return t.contiguous().view({-1, t.size(-2), t.size(-1)}); }
}  // namespace

variable_list DecayCorrectionFunction::forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                                               const at::Tensor& decay, const at::Tensor& D) {
  const auto k3 = head_rows(k);
  const auto out = decay_correction_fwd(head_rows(q), k3, head_param(decay), head_param(D));
  ctx->save_for_backward({k3, decay, D});
  return {out.q.view(k.sizes()), out.p.view(k.sizes())};
}

variable_list DecayCorrectionFunction::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& k3 = saved[0];
  const auto& decay = saved[1];
  const auto& D = saved[2];
  const auto& dq = grad_outputs[0];
  const auto& dp = grad_outputs[1];
  if (!dq.defined() && !dp.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  const auto rows = [&](const at::Tensor& t) { return t.defined() ? head_rows(t.to(k3.scalar_type())) : t; };
  const auto grads = decay_correction_bwd(k3, head_param(decay), head_param(D), rows(dq), rows(dp));
  const auto sizes = dq.defined() ? dq.sizes() : dp.sizes();
  // q' = q - D p passes its gradient straight to q.
  const auto d_q = dq.defined() ? dq.to(k3.scalar_type()) : at::zeros(sizes, k3.options());
  return {d_q, grads.k.view(sizes), grads.decay.to(decay.scalar_type()), grads.D.to(D.scalar_type())};
}

}  // namespace comba::nn::detail::cuda
