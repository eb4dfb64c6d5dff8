// The chunk form's stage contract: the stages of SPEC section 2 in the kernels'
// decomposition, and the one workspace they pass along. Each stage has two
// implementations with this same contract:
//   the CUDA kernels     namespace comba::detail::cuda   (ops/src/launch/chunk_stages_cuda.h)
//   the ATen twins       namespace comba::detail::twin   (ops/src/reference/chunk_stages_ref.cpp)
// GPU tests run each CUDA stage and its twin on the same inputs. The operator runs the
// CUDA stages where the kernels take the problem (chunk_comba.cpp, the stage list), else
// the recurrent kernels or the reference path (backend.h chooses, once).
//
//   forward:  chunk_prep -> chunk_scan_fwd              o, final state (+ states, V' to keep)
//   backward: [chunk_prep -> chunk_v_new, when the forward kept only the states]
//             chunk_scan_bwd -> ws.release_scan_operands() -> chunk_grads
//             -> finish_chunk_grads (the q/k/p epilogue, shared by every implementation)
//
// Shapes: C = kChunkSize rows per chunk. Chunks are numbered globally, sequence by
// sequence (NC in all); a sequence's last chunk may be short: its missing rows are zero in
// w, tu, mqk, states' chunk rows, v_new and the gradients; qf and kf there hold the row
// factors of zero rows (harmless: they scale zero tiles) and t_inv is the identity. KP = the key dim rounded up to 64, 128 or 256. "OT" is the
// workspace dtype: the inputs' 16-bit dtype in the kernels, the compute dtype (fp32, fp64
// for fp64 inputs) in the twins. Hats are l2-normalised vectors when use_l2norm (r_x: the
// l2norm's row factor 1 / |x|), G the inclusive in-chunk cumsum of g, G0 = G - g.
#pragma once
#include <ATen/ATen.h>

#include "layout.h"

namespace comba::detail {

struct ChunkWorkspace {
  // Numbering.
  at::Tensor chunk_offsets;    // [N + 1] int32 on the device: first chunk of each packed
                               // sequence; undefined when dense
  int64_t num_chunks = 0;      // NC
  int64_t padded_key_dim = 0;  // KP
  // Packed sequences of very different lengths (CUDA scans only): the scans' walks
  // (ChunkTraits::plan_scans) on the device, [N] sequence ids then [W + 1] walk offsets,
  // and how many walks (the short sequences') the first of the two launches takes.
  // Undefined / 0: one launch, one CTA per sequence in order.
  at::Tensor scan_plan;        // [N + W + 1] int32 on the device
  int64_t scan_short_walks = 0;

  // Written by chunk_prep (every chunk independent). The CUDA stages pad the rows of W,
  // Tu and Mqk (kernels' workspace_ld): these are views of the padded tensors.
  at::Tensor w;      // [NC, HV, C, KP] OT   T diag(beta e^G0) P^
  at::Tensor tu;     // [NC, HV, C, C]  OT   T diag(beta)  (U = Tu V is formed by the scan)
  at::Tensor mqk;    // [NC, HV, C, C]  OT   scale (Q^ K^T)_ij e^(G_i - G_j) for j <= i, else 0
  at::Tensor qf;     // [NC, HV, C]     fp32 scale r_q e^G      (Qs = diag(qf) Q)
  at::Tensor kf;     // [NC, HV, C]     fp32 r_k e^(G_last - G) (Kd = diag(kf) K)
  at::Tensor gamma;  // [NC, HV]        fp32 e^G_last
  at::Tensor t_inv;  // [NC, HV, C, C]  OT   T = (I + A)^-1, unit lower triangular

  // Written by chunk_scan_fwd when the backward will follow (keep kStates: states; kAll:
  // both), or V' by chunk_v_new from the states, Tu and W:
  at::Tensor states;  // [NC, HV, KP, V] OT  state entering each chunk (rows >= K zero)
  at::Tensor v_new;   // [NC, HV, C, V]  OT  V' = U - W S

  // After chunk_scan_bwd nothing reads W, Mqk, the row factors and the decays again:
  // dropping them lets the gradients' outputs reuse their memory.
  void release_scan_operands() {
    for (auto* t : {&w, &tu, &mqk, &qf, &kf, &gamma}) t->reset();
  }
};

// Written by chunk_scan_bwd.
struct ChunkStateGrads {
  at::Tensor d_states;   // [NC, HV, KP, V] OT  gradient of the state at each chunk's end
  at::Tensor dv_new;     // [NC, HV, C, V]  OT  gradient of V'
  at::Tensor d_initial;  // [N, HV, K, V] fp32 (fp64 in fp64 twins): gradient of the initial state
};

// Written by chunk_grads; reads the inputs, t_inv, states, v_new and the state grads.
// dq, dk, dp are either final-layout gradients [B, T, H, K] in the input dtype (both flags
// false), or per value head [B, T, HV, K] in fp32 (per_value_head: the GVA group sum is
// still to do) and, when l2norm_pending, with respect to the normalised vectors (the
// l2norm backward is still to do). finish_chunk_grads does what is left, once, for every
// implementation.
struct ChunkGrads {
  at::Tensor dq, dk, dp;
  bool per_value_head = false;
  bool l2norm_pending = false;
  at::Tensor dv;     // [B, T, HV, V] input dtype
  at::Tensor dg;     // [B, T, HV] fp32
  at::Tensor dbeta;  // [B, T, HV] fp32
  at::Tensor d_initial;
};

// Each implementation (namespace cuda, namespace twin) provides these five, same
// signatures (declared in its own header):
//   ChunkWorkspace chunk_prep(const CombaProblem& pb, const CombaInputs& in);
//   CombaForward chunk_scan_fwd(const CombaProblem& pb, const CombaInputs& in,
//                               ChunkWorkspace& ws, KeptWorkspace keep);
//   void chunk_v_new(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws);
//       // ws.v_new = Tu V - W S from ws.tu, ws.w and ws.states, every chunk at once
//   ChunkStateGrads chunk_scan_bwd(const CombaProblem& pb, const CombaInputs& in,
//                                  const ChunkWorkspace& ws, const at::Tensor& grad_o,
//                                  const at::Tensor& grad_final);  // grad_final may be undefined
//   ChunkGrads chunk_grads(const CombaProblem& pb, const CombaInputs& in,
//                          const ChunkWorkspace& ws, const ChunkStateGrads& sg,
//                          const at::Tensor& grad_o);
// `in` is as the caller gave it (caller layout [B, T, H, K], p / beta / initial_state /
// cu_seqlens possibly undefined).

// What chunk_grads leaves, done once for every implementation (and for the fused recurrent
// kernels' gradients): the GVA group sum, the l2norm backward, the p = k merge when p was
// not given, each gradient in its input's dtype. Defined in chunk_stages.cpp.
InputGrads finish_chunk_grads(const CombaProblem& pb, const CombaInputs& in,
                              const ChunkGrads& grads);

}  // namespace comba::detail
