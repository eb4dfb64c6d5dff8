#include "reference/recurrent_ref.h"
#include "stages.h"

namespace comba::detail {

CombaForward fused_recurrent_comba_fwd(const CombaProblem& pb, const CombaInputs& in) {
  return reference_forward(pb, in, /*pad_multiple=*/1, recurrent_fwd_ref);
}

InputGrads fused_recurrent_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                                     const at::Tensor& grad_o, const at::Tensor& grad_final) {
  return reference_backward(pb, in, /*pad_multiple=*/1, grad_o, grad_final, recurrent_bwd_ref);
}

}  // namespace comba::detail
