#include "reference/recurrent_ref.h"
#include "stages.h"
#ifdef COMBA_WITH_CUDA
#include "cuda/launchers.h"
#endif

namespace comba::detail {

CombaForward fused_recurrent_comba_fwd(const CombaProblem& pb, const CombaInputs& in) {
#ifdef COMBA_WITH_CUDA
  if (cuda::recurrent_fwd_supported(pb, in)) return cuda::recurrent_fwd(pb, in);
#endif
  return reference_forward(pb, in, /*pad_multiple=*/1, recurrent_fwd_ref);
}

// The backward runs the reference path on every device for now (the chunked form is the
// training path; this one serves decoding).
InputGrads fused_recurrent_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                                     const at::Tensor& grad_o, const at::Tensor& grad_final) {
  return reference_backward(pb, in, /*pad_multiple=*/1, grad_o, grad_final, recurrent_bwd_ref);
}

}  // namespace comba::detail
