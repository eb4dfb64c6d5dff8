// ATen reference of the chunked algorithm (SPEC section 2) on the canonical layout, as
// separately testable stages, each with its hand-written backward. Chunked tensors are
// chunk-major, leading dims [NC, N, HV] ("..." below), so that the sequential scan reads
// and writes contiguous slices; C = kChunkSize. Masks are applied before every exp so
// that no overflowing term is ever formed.
//
//   decay:   G = cumsum(g) within the chunk, G0 = G - g (exclusive)
//   wy:      A = strict_lower(diag(beta) P K^T * exp(G0_i - G_j)),  T = (I + A)^-1,
//            W = T diag(beta exp(G0)) P,  U = T diag(beta) V
//   carry:   Kd = K * exp(G_last - G),  gamma_last = exp(G_last)
//   step:    S_end = gamma_last S + Kd^T (U - W S) = M S + B, with the chunk's transition
//            M = gamma_last I - Kd^T W [K, K] and B = Kd^T U [K, V] (batched over chunks)
//   scan:    S <- M S + B, one batched GEMM per chunk                (sequential)
//   output:  Uc = U - W S,  O = (scale Q * exp(G)) S + (scale Q K^T * exp(G_i - G_j), i >= j) Uc
#pragma once
#include <ATen/ATen.h>

#include "../layout.h"
#include "recurrent_ref.h"

namespace comba::detail {

struct ChunkDecay {
  at::Tensor G, G0;  // [..., C]
};
ChunkDecay chunk_decay_fwd(const at::Tensor& g);
// The gradient of g arrives as "range weights" R [..., C, C]: R[hi][lo] is the total
// weight w of terms w * exp(g_lo + ... + g_hi), so dg_t = sum over lo <= t <= hi of R.
// Every decay factor of the chunk form is such a range sum; collecting the weights per
// range (instead of dG per position and a reverse cumsum) never forms the large, exactly
// cancelling pairs that otherwise swamp a tiny dg under strong decay.
at::Tensor chunk_decay_bwd(const at::Tensor& range_weights);  // -> dg [..., C]

struct WYRepresentation {
  at::Tensor T;  // [..., C, C] unit lower-triangular
  at::Tensor W;  // [..., C, K]
  at::Tensor U;  // [..., C, V]
};
WYRepresentation wy_fwd(const at::Tensor& k, const at::Tensor& p, const at::Tensor& v,
                        const at::Tensor& beta, const ChunkDecay& decay);
struct WYGrads {
  at::Tensor k, p, v, beta, decay_ranges;
};
WYGrads wy_bwd(const at::Tensor& k, const at::Tensor& p, const at::Tensor& v,
               const at::Tensor& beta, const ChunkDecay& decay, const WYRepresentation& wy,
               const at::Tensor& dW, const at::Tensor& dU);

struct ChunkCarry {
  at::Tensor k_decayed;   // [..., C, K]
  at::Tensor gamma_last;  // [...]
};
ChunkCarry chunk_carry_fwd(const at::Tensor& k, const at::Tensor& G);
struct CarryGrads {
  at::Tensor k, decay_ranges;
};
CarryGrads chunk_carry_bwd(const at::Tensor& k, const at::Tensor& G, const ChunkCarry& carry,
                           const at::Tensor& d_k_decayed, const at::Tensor& d_gamma_last);

struct ChunkTransition {
  at::Tensor M;  // [..., K, K]
  at::Tensor B;  // [..., K, V]
};
ChunkTransition chunk_transition_fwd(const WYRepresentation& wy, const ChunkCarry& carry);
struct TransitionGrads {
  at::Tensor W, U, k_decayed, gamma_last;
};
TransitionGrads chunk_transition_bwd(const WYRepresentation& wy, const ChunkCarry& carry,
                                     const at::Tensor& dM, const at::Tensor& dB);

struct ChunkStates {
  at::Tensor starts;       // [NC, N, HV, K, V] state entering each chunk
  at::Tensor final_state;  // [N, HV, K, V]
};
ChunkStates state_scan_fwd(const ChunkTransition& step, const at::Tensor& initial_state);
struct ScanGrads {
  at::Tensor M, B, initial_state;
};
// d_starts_direct: gradient reaching each chunk's start state from that chunk's output.
ScanGrads state_scan_bwd(const ChunkTransition& step, const ChunkStates& states,
                         const at::Tensor& d_starts_direct, const at::Tensor& d_final);

at::Tensor chunk_output_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                            const WYRepresentation& wy, const ChunkStates& states,
                            double scale);
struct OutputGrads {
  at::Tensor q, k, decay_ranges, W, U, starts;
};
OutputGrads chunk_output_bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                             const WYRepresentation& wy, const ChunkStates& states,
                             double scale, const at::Tensor& d_o);

// The stages composed on the canonical layout (Tp a multiple of C).
RecurrentForward chunk_fwd_ref(const CanonicalInputs& in, double scale);
CanonicalGrads chunk_bwd_ref(const CanonicalInputs& in, double scale, const at::Tensor& grad_o,
                             const at::Tensor& grad_final);

}  // namespace comba::detail
