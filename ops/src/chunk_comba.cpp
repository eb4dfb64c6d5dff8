#include "reference/chunk_ref.h"
#include "stages.h"

namespace comba::detail {

CombaForward chunk_comba_fwd(const CombaProblem& pb, const CombaInputs& in) {
  return reference_forward(pb, in, kChunkSize, chunk_fwd_ref);
}

InputGrads chunk_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                           const at::Tensor& grad_o, const at::Tensor& grad_final) {
  return reference_backward(pb, in, kChunkSize, grad_o, grad_final, chunk_bwd_ref);
}

}  // namespace comba::detail
