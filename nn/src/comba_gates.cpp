// The Comba gates: the checked entry point dispatches to the fused CUDA kernels
// (nn/cuda/comba_gates) or the ATen composition.
#include "comba/nn/comba_gates.h"

#include "comba/core/checks.h"

#include <torch/torch.h>

#ifdef COMBA_WITH_CUDA
#include "launch/functions.h"
#include "launch/launchers.h"
#endif

namespace comba::nn {

CombaGates comba_gates(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& A_log,
                       const torch::Tensor& dt_bias) {
  const core::ArgChecker check("comba_gates");
  check.defined(a, "a").floating(a, "a");
  check.require(a.dim() >= 1, "argument `a` expected [..., HV], got a 0-D tensor");
  check.defined(b, "b").floating(b, "b");
  check.require(b.sizes() == a.sizes(), "argument `b` expected the shape of `a` ", a.sizes(), ", got ", b.sizes());
  const int64_t heads = a.size(-1);
  check.shape(A_log, "A_log", {heads}, "[HV]").floating(A_log, "A_log");
  check.shape(dt_bias, "dt_bias", {heads}, "[HV]").floating(dt_bias, "dt_bias");
  check.device(b, "b", a.device(), "a");
  check.device(A_log, "A_log", a.device(), "a");
  check.device(dt_bias, "dt_bias", a.device(), "a");
#ifdef COMBA_WITH_CUDA
  if (detail::cuda::comba_gates_supported(a, b)) {
    const auto out = detail::cuda::CombaGatesFunction::apply(a, b, A_log, dt_bias);
    return {out[0], out[1]};
  }
#endif
  return comba_gates_aten(a, b, A_log, dt_bias);
}

CombaGates comba_gates_aten(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& A_log,
                            const torch::Tensor& dt_bias) {
  // fp32 for low-precision projections; fp64 stays fp64.
  const auto compute = torch::promote_types(a.scalar_type(), torch::kFloat);
  CombaGates out;
  out.g = -torch::exp(A_log.to(compute)) * torch::softplus(a.to(compute) + dt_bias.to(compute));
  out.beta = torch::sigmoid(b.to(torch::promote_types(b.scalar_type(), torch::kFloat)));
  return out;
}

}  // namespace comba::nn
