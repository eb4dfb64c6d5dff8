// RMSNorm / gated RMSNorm: fp32 math, output in the input's dtype.
#include "comba/nn/rms_norm.h"

#include "comba/core/checks.h"

#include <torch/torch.h>

namespace comba::nn {

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps,
                       const torch::Tensor& gate) {
  const core::ArgChecker check("rms_norm");
  check.defined(x, "x").floating(x, "x");
  check.require(x.dim() >= 1 && x.size(-1) == weight.size(0), "argument `x` expected last dim ",
                weight.size(0), " [..., dim], got shape ", x.sizes());
  if (gate.defined()) check.shape(gate, "gate", x.sizes(), "like x [..., dim]");
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
