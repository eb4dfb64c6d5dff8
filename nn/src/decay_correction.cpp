// The inner decay and output correction: the checked entry point dispatches to the fused
// CUDA kernels (nn/cuda/decay_correction) or the ATen composition.
#include "comba/nn/decay_correction.h"

#include "comba/core/checks.h"

#include <torch/torch.h>

#ifdef COMBA_WITH_CUDA
#include "launch/functions.h"
#include "launch/launchers.h"
#endif

namespace comba::nn {

DecayCorrection decay_correction(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& decay,
                                 const torch::Tensor& D) {
  const core::ArgChecker check("decay_correction");
  check.defined(q, "q").floating(q, "q");
  check.require(q.dim() >= 2, "argument `q` expected [..., H, K], got shape ", q.sizes());
  check.defined(k, "k").floating(k, "k");
  check.shape(k, "k", q.sizes(), "like q [..., H, K]").device(k, "k", q.device(), "q");
  check.require(k.scalar_type() == q.scalar_type(), "argument `k` expected q's dtype ", q.scalar_type(), ", got ",
                k.scalar_type());
  const int64_t heads = q.size(-2);
  for (const auto& [t, name] : {std::pair{&decay, "decay"}, std::pair{&D, "D"}}) {
    if (!t->defined()) continue;
    check.shape(*t, name, {heads}, "[H]").floating(*t, name).device(*t, name, q.device(), "q");
  }
#ifdef COMBA_WITH_CUDA
  if (decay.defined() && D.defined() && detail::cuda::decay_correction_supported(q, k)) {
    const auto out = detail::cuda::DecayCorrectionFunction::apply(q, k, decay, D);
    return {out[0], out[1]};
  }
#endif
  return decay_correction_aten(q, k, decay, D);
}

DecayCorrection decay_correction_aten(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& decay,
                                      const torch::Tensor& D) {
  // decay and D in fp32 (fp64 for fp64 inputs): bf16 parameters would otherwise round these
  // products and sum their gradients over every token in bf16.
  const auto dtype = q.scalar_type();
  const auto compute = torch::promote_types(dtype, torch::kFloat);
  const int64_t heads = q.size(-2);
  DecayCorrection out{q, k};
  if (decay.defined()) out.p = (k * torch::sigmoid(decay.to(compute)).view({heads, 1})).to(dtype);
  if (D.defined()) out.q = (q - D.to(compute).view({heads, 1}) * out.p).to(dtype);
  return out;
}

}  // namespace comba::nn
