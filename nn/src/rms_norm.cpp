// RMSNorm / gated RMSNorm: fp32 math, output in the input's dtype. The checked entry
// point dispatches to the fused CUDA kernels (nn/cuda/rms_norm) or the ATen composition.
#include "comba/nn/rms_norm.h"

#include "comba/core/checks.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#ifdef COMBA_WITH_CUDA
#include "launch/functions.h"
#include "launch/launchers.h"
#endif

namespace comba::nn {

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps,
                       const torch::Tensor& gate) {
  const core::ArgChecker check("rms_norm");
  check.defined(x, "x").floating(x, "x");
  check.rank(weight, "weight", 1, "[dim]").floating(weight, "weight");
  check.require(x.dim() >= 1 && x.size(-1) == weight.size(0), "argument `x` expected last dim ",
                weight.size(0), " [..., dim], got shape ", x.sizes());
  check.device(weight, "weight", x.device(), "x");
  if (gate.defined()) {
    check.shape(gate, "gate", x.sizes(), "like x [..., dim]");
    check.floating(gate, "gate").device(gate, "gate", x.device(), "x");
  }
#ifdef COMBA_WITH_CUDA
  if (detail::cuda::rms_norm_supported(x, gate)) {
    const auto opt_gate = gate.defined() ? detail::cuda::OptTensor(gate) : detail::cuda::OptTensor();
    return detail::cuda::RMSNormFunction::apply(x, weight, opt_gate, eps)[0];
  }
#endif
  return rms_norm_aten(x, weight, eps, gate);
}

std::vector<torch::Tensor> rms_norm_linears(const torch::Tensor& x, const torch::Tensor& norm_weight, double eps,
                                            const torch::Tensor& gate, const std::vector<torch::Tensor>& weights) {
  const core::ArgChecker check("rms_norm_linear");
  check.defined(x, "x").floating(x, "x");
  check.rank(norm_weight, "norm_weight", 1, "[group]").floating(norm_weight, "norm_weight");
  check.require(!weights.empty(), "argument `weights` expected at least one weight, got none");
  for (const auto& weight : weights) {
    check.rank(weight, "weight", 2, "[out, D]").floating(weight, "weight");
    check.require(weight.size(1) == x.size(-1), "argument `weight` expected [out, ", x.size(-1),
                  "] (x's last dim), got shape ", weight.sizes());
    check.device(weight, "weight", x.device(), "x");
  }
  const int64_t group = norm_weight.size(0);
  check.require(x.dim() >= 1 && group > 0 && x.size(-1) % group == 0, "argument `x` expected a last dim that is a ",
                "multiple of norm_weight's size ", group, " [..., D], got shape ", x.sizes());
  check.device(norm_weight, "norm_weight", x.device(), "x");
  if (gate.defined()) {
    check.shape(gate, "gate", x.sizes(), "like x [..., D]");
    check.floating(gate, "gate").device(gate, "gate", x.device(), "x");
  }
#ifdef COMBA_WITH_CUDA
  if (!at::autocast::is_autocast_enabled(x.device().type()) && detail::cuda::rms_norm_supported(x, gate)) {
    const auto opt_gate = gate.defined() ? detail::cuda::OptTensor(gate) : detail::cuda::OptTensor();
    return detail::cuda::RMSNormLinearFunction::apply(x, norm_weight, opt_gate, at::TensorList(weights), eps);
  }
#endif
  auto grouped = x.sizes().vec();
  grouped.back() = x.size(-1) / group;
  grouped.push_back(group);
  const auto normed =
      rms_norm(x.view(grouped), norm_weight, eps, gate.defined() ? gate.view(grouped) : gate).view(x.sizes());
  std::vector<torch::Tensor> ys;
  for (const auto& weight : weights) ys.push_back(torch::nn::functional::linear(normed, weight));
  return ys;
}

torch::Tensor rms_norm_linear(const torch::Tensor& x, const torch::Tensor& norm_weight, double eps,
                              const torch::Tensor& gate, const torch::Tensor& weight) {
  return rms_norm_linears(x, norm_weight, eps, gate, {weight})[0];
}

torch::Tensor rms_norm_aten(const torch::Tensor& x, const torch::Tensor& weight, double eps,
                            const torch::Tensor& gate) {
  // fp32 for low-precision inputs; fp64 stays fp64.
  const auto compute = torch::promote_types(x.scalar_type(), torch::kFloat);
  const auto xf = x.to(compute);
  auto y = xf * torch::rsqrt(xf.square().mean(-1, /*keepdim=*/true) + eps) * weight.to(compute);
  if (gate.defined()) y = y * torch::sigmoid(gate.to(compute));
  return y.to(x.scalar_type());
}

RMSNormImpl::RMSNormImpl(const RMSNormOptions& options_) : options(options_) { reset(); }

void RMSNormImpl::reset() {
  TORCH_CHECK(options.dim() > 0, "RMSNorm: option `dim` expected > 0, got ", options.dim());
  weight = register_parameter("weight", torch::ones({options.dim()}));
}

void RMSNormImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  weight.fill_(1.0);
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return rms_norm(x, weight, options.eps()); }

GatedRMSNormImpl::GatedRMSNormImpl(const RMSNormOptions& options_) : options(options_) { reset(); }

void GatedRMSNormImpl::reset() {
  TORCH_CHECK(options.dim() > 0, "GatedRMSNorm: option `dim` expected > 0, got ", options.dim());
  weight = register_parameter("weight", torch::ones({options.dim()}));
}

void GatedRMSNormImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  weight.fill_(1.0);
}

torch::Tensor GatedRMSNormImpl::forward(const torch::Tensor& x, const torch::Tensor& gate) {
  return rms_norm(x, weight, options.eps(), gate);
}

}  // namespace comba::nn
