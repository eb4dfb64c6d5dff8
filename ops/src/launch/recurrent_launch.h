// Host side of the fused recurrent kernels: torch tensors in, kernel parameters filled in
// one place, launch on the current stream. Compiled only when the build has CUDA
// (COMBA_WITH_CUDA). The chunked kernels' host side: chunk_stages_cuda.h.
#pragma once
#include "../layout.h"

namespace comba::detail::cuda {

// Whether the fused recurrent kernels take this problem (CUDA, fp32/bf16/fp16, K <= 256).
bool recurrent_supported(const CombaProblem& pb, const CombaInputs& in);
// for_backward: CombaForward::saved keeps a state checkpoint every kRecurrentSegment
// tokens for recurrent_bwd (which, given none, runs this forward first).
CombaForward recurrent_fwd(const CombaProblem& pb, const CombaInputs& in, bool for_backward);
// One decode step in place (comba_decode_step_, validated: contiguous tensors on one
// device, T = 1, state fp32 or bf16): a single kernel launch on the current stream,
// nothing allocated, nothing copied, no host synchronisation.
void recurrent_decode_step(const CombaProblem& pb, const CombaInputs& in, const at::Tensor& state,
                           const at::Tensor& out);
InputGrads recurrent_bwd(const CombaProblem& pb, const CombaInputs& in, const at::Tensor& grad_o,
                         const at::Tensor& grad_final, std::vector<at::Tensor> saved);

}  // namespace comba::detail::cuda
