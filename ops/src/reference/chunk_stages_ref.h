// The ATen twins of the chunk form's CUDA stages (the contract in chunk_stages.h): the
// same five stages on any device, in the compute dtype (fp32, fp64 for fp64 inputs),
// writing every workspace field with the kernels' meaning and layout (rows past a short
// chunk's end hold what the kernels write there: zero in w, tu, mqk, states, v_new, the
// identity in t_inv, and the row factors of a zero row in qf, kf). GPU tests run each CUDA
// stage and its twin on the same inputs.
//
//   chunk_prep      the prep operands, every chunk at once (batched GEMMs, one
//                   triangular solve for T)
//   chunk_scan_fwd  V' = Tu V - W S, O = diag(qf) Q S + Mqk V', S <- gamma S + Kd^T V',
//                   one step per chunk position, all sequences of that position at once
//   chunk_v_new     V' = Tu V - W S from the kept states, every chunk at once
//   chunk_scan_bwd  dV' = Mqk^T dO + Kd dS, dS <- gamma dS + Q^T diag(qf) dO - W^T dV',
//                   chunks in reverse; d_states[c] is the gradient of chunk c's END state
//   chunk_grads     autograd over a differentiable per-chunk forward (inputs -> prep
//                   operands -> O and the end state, with the chunk start states and the
//                   end-state gradients as constants): independent of the hand-derived
//                   gradient kernel. It reads the inputs, states and d_states only (not
//                   t_inv, v_new, dv_new). Returns per_value_head = true with dq, dk, dp in
//                   the compute dtype and l2norm_pending = false (the l2norm backward is
//                   inside the autograd graph); dv in the input dtype, dg, dbeta in the
//                   compute dtype; dp is the gradient of p's role even when p = k.
#pragma once
#include "../chunk_stages.h"

namespace comba::detail::twin {

ChunkWorkspace chunk_prep(const CombaProblem& pb, const CombaInputs& in);
CombaForward chunk_scan_fwd(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws,
                            KeptWorkspace keep);
void chunk_v_new(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws);
ChunkStateGrads chunk_scan_bwd(const CombaProblem& pb, const CombaInputs& in,
                               const ChunkWorkspace& ws, const at::Tensor& grad_o,
                               const at::Tensor& grad_final);
ChunkGrads chunk_grads(const CombaProblem& pb, const CombaInputs& in, const ChunkWorkspace& ws,
                       const ChunkStateGrads& sg, const at::Tensor& grad_o);

}  // namespace comba::detail::twin
