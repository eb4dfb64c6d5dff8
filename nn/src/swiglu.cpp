// SwiGLU: the checked entry points dispatch to the fused CUDA kernels (nn/cuda/swiglu) or
// the ATen composition.
#include "comba/nn/swiglu.h"

#include "comba/core/checks.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#ifdef COMBA_WITH_CUDA
#include "launch/functions.h"
#include "launch/launchers.h"
#endif

namespace comba::nn {

torch::Tensor swiglu(const torch::Tensor& a, const torch::Tensor& b) {
  const core::ArgChecker check("swiglu");
  check.defined(a, "a").floating(a, "a");
  check.defined(b, "b").floating(b, "b");
  check.require(b.sizes() == a.sizes(), "argument `b` expected the shape of `a` ", a.sizes(), ", got ", b.sizes());
  check.device(b, "b", a.device(), "a");
#ifdef COMBA_WITH_CUDA
  if (detail::cuda::swiglu_supported(a, b)) return detail::cuda::SwiGLUFunction::apply(a, b)[0];
#endif
  return swiglu_aten(a, b);
}

torch::Tensor swiglu_packed(const torch::Tensor& gate_up) {
  const core::ArgChecker check("swiglu_packed");
  check.defined(gate_up, "gate_up").floating(gate_up, "gate_up");
  check.require(gate_up.dim() >= 1 && gate_up.size(-1) % 2 == 0,
                "argument `gate_up` expected an even last dim [..., 2 * intermediate], got shape ", gate_up.sizes());
#ifdef COMBA_WITH_CUDA
  if (detail::cuda::swiglu_supported(gate_up, gate_up) && gate_up.size(-1) >= 2) {
    return detail::cuda::SwiGLUPackedFunction::apply(gate_up)[0];
  }
#endif
  const auto halves = gate_up.chunk(2, -1);
  return swiglu_aten(halves[0], halves[1]);
}

torch::Tensor swiglu_linear(const torch::Tensor& gate_up, const torch::Tensor& weight) {
  const core::ArgChecker check("swiglu_linear");
  check.defined(gate_up, "gate_up").floating(gate_up, "gate_up");
  check.require(gate_up.dim() >= 1 && gate_up.size(-1) % 2 == 0,
                "argument `gate_up` expected an even last dim [..., 2 * intermediate], got shape ", gate_up.sizes());
  check.rank(weight, "weight", 2, "[out, intermediate]").floating(weight, "weight");
  check.require(weight.size(1) * 2 == gate_up.size(-1), "argument `weight` expected [out, ", gate_up.size(-1) / 2,
                "] (half of gate_up's last dim), got shape ", weight.sizes());
  check.device(weight, "weight", gate_up.device(), "gate_up");
#ifdef COMBA_WITH_CUDA
  if (!at::autocast::is_autocast_enabled(gate_up.device().type()) &&
      detail::cuda::swiglu_supported(gate_up, gate_up) && gate_up.size(-1) >= 2) {
    return detail::cuda::SwiGLULinearFunction::apply(gate_up, weight)[0];
  }
#endif
  return torch::nn::functional::linear(swiglu_packed(gate_up), weight);
}

torch::Tensor swiglu_aten(const torch::Tensor& a, const torch::Tensor& b) {
  // fp32 for low-precision inputs, rounded once at the end like the kernel; fp64 stays fp64.
  const auto out = torch::result_type(a, b);
  const auto compute = torch::promote_types(out, torch::kFloat);
  return (torch::silu(a.to(compute)) * b.to(compute)).to(out);
}

}  // namespace comba::nn
