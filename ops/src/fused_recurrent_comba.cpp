// The fused recurrent form below autograd: the fused recurrent kernels where they take the
// problem, else the ATen reference path (backend.h).
#include "backend.h"
#include "functions.h"
#include "reference/recurrent_ref.h"
#include "reference/reference_path.h"

namespace comba::detail {

CombaForward fused_recurrent_comba_fwd(const CombaProblem& pb, const CombaInputs& in,
                                       KeptWorkspace keep) {
#ifdef COMBA_WITH_CUDA
  if (select_backend(pb, in, /*chunk_form=*/false) == Backend::kRecurrentKernels) {
    return cuda::recurrent_fwd(pb, in, /*for_backward=*/keep != KeptWorkspace::kNone);
  }
#endif
  (void)keep;  // the reference path keeps nothing
  return reference_forward(pb, in, /*pad_multiple=*/1, recurrent_fwd_ref);
}

InputGrads fused_recurrent_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                                     const at::Tensor& grad_o, const at::Tensor& grad_final,
                                     std::vector<at::Tensor> saved) {
#ifdef COMBA_WITH_CUDA
  if (select_backend(pb, in, /*chunk_form=*/false) == Backend::kRecurrentKernels) {
    return cuda::recurrent_bwd(pb, in, grad_o, grad_final, std::move(saved));
  }
#endif
  return reference_backward(pb, in, /*pad_multiple=*/1, grad_o, grad_final, recurrent_bwd_ref);
}

}  // namespace comba::detail
