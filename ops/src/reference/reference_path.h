// The ATen reference path around a canonical-layout core: caller layout -> canonical
// (l2norm, GVA, packing, padding) -> core -> caller layout, and the same in reverse for
// the backward. Shared by the chunked and the recurrent forms.
#pragma once
#include "../layout.h"

namespace comba::detail {

// core(const CanonicalInputs&, double scale) -> {o [N, HV, Tp, V], final_state}
template <typename Core>
CombaForward reference_forward(const CombaProblem& pb, const CombaInputs& in,
                               int64_t pad_multiple, Core&& core) {
  const TokenLayout layout(pb, in.cu_seqlens, pad_multiple);
  const auto canonical = to_canonical(pb, in, layout, pb.use_l2norm);
  auto result = core(canonical, pb.scale);
  return {layout.unpack(result.o).to(pb.dtype), result.final_state.to(pb.state_dtype)};
}

// core(const CanonicalInputs&, double scale, grad_o, grad_final) -> CanonicalGrads
template <typename Core>
InputGrads reference_backward(const CombaProblem& pb, const CombaInputs& in,
                              int64_t pad_multiple, const at::Tensor& grad_o,
                              const at::Tensor& grad_final, Core&& core) {
  const TokenLayout layout(pb, in.cu_seqlens, pad_multiple);
  const auto canonical = to_canonical(pb, in, layout, pb.use_l2norm);
  const auto dt = compute_dtype(pb);
  const auto grads = core(canonical, pb.scale, layout.pack(grad_o.to(dt)),
                          grad_final.defined() ? grad_final.to(dt) : at::Tensor());
  return from_canonical(pb, in, grads, layout, pb.use_l2norm);
}

}  // namespace comba::detail
