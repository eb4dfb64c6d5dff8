// The chunk form's stages on the CUDA kernels, with the contract of ../chunk_stages.h
// (same signatures as the ATen twins in namespace twin). Each fills the kernel parameters
// from the inputs and the workspace and launches on the current stream. Compiled only
// when the build has CUDA (COMBA_WITH_CUDA).
#pragma once
#include "../chunk_stages.h"
#include "kernel_inputs.h"  // kernel_ready: the stage list lays the inputs out once

namespace comba::detail::cuda {

// Whether the chunked kernels take this problem (CUDA, 16-bit inputs, K <= 256, K and V
// multiples of 8).
bool chunk_supported(const CombaProblem& pb, const CombaInputs& in);

// Numbers the chunks (a host read of cu_seqlens when packed) and runs the prep kernel.
ChunkWorkspace chunk_prep(const CombaProblem& pb, const CombaInputs& in);
// The same into a workspace whose chunks a forward over the same inputs numbered already
// (its chunk_offsets, num_chunks and scan walks): no host read of cu_seqlens.
ChunkWorkspace chunk_prep(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace numbered);
// o and the final state; also ws.states (keep kStates) and ws.v_new (kAll) for the backward.
CombaForward chunk_scan_fwd(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws,
                            KeptWorkspace keep);
// ws.v_new = Tu V - W S from the prep's Tu and W and the kept states, every chunk at once.
void chunk_v_new(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws);
// Reverse scan; reads the prep operands, states and V' (grad_final may be undefined).
ChunkStateGrads chunk_scan_bwd(const CombaProblem& pb, const CombaInputs& in,
                               const ChunkWorkspace& ws, const at::Tensor& grad_o,
                               const at::Tensor& grad_final);
// Per-chunk gradients; reads t_inv, states and V' only (call after release_scan_operands).
ChunkGrads chunk_grads(const CombaProblem& pb, const CombaInputs& in, const ChunkWorkspace& ws,
                       const ChunkStateGrads& sg, const at::Tensor& grad_o);

}  // namespace comba::detail::cuda
