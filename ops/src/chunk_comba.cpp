#include "reference/chunk_ref.h"
#include "stages.h"
#ifdef COMBA_WITH_CUDA
#include "launch/launchers.h"
#endif

namespace comba::detail {

// On CUDA: the chunk kernels (tensor cores; 16-bit inputs, K <= 256), else the fused
// recurrent kernels, the same recurrence token by token in fp32 (fp32 inputs, K <= 256).
CombaForward chunk_comba_fwd(const CombaProblem& pb, const CombaInputs& in, bool for_backward) {
#ifdef COMBA_WITH_CUDA
  if (!pb.reference_path) {
    if (cuda::chunk_supported(pb, in)) return cuda::chunk_fwd(pb, in, for_backward);
    if (cuda::recurrent_supported(pb, in)) return cuda::recurrent_fwd(pb, in, for_backward);
  }
#endif
  return reference_forward(pb, in, kChunkSize, chunk_fwd_ref);
}

InputGrads chunk_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                           const at::Tensor& grad_o, const at::Tensor& grad_final,
                           std::vector<at::Tensor> saved) {
#ifdef COMBA_WITH_CUDA
  if (!pb.reference_path) {
    if (cuda::chunk_supported(pb, in)) return cuda::chunk_bwd(pb, in, grad_o, grad_final, std::move(saved));
    if (cuda::recurrent_supported(pb, in)) {
      return cuda::recurrent_bwd(pb, in, grad_o, grad_final, std::move(saved));
    }
  }
#endif
  return reference_backward(pb, in, kChunkSize, grad_o, grad_final, chunk_bwd_ref);
}

}  // namespace comba::detail
