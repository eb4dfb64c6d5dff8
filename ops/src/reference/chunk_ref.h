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
//   scan:    Uc = U - W S,  S <- gamma_last S + Kd^T Uc           (sequential over chunks)
//   output:  O = (scale Q * exp(G)) S + (scale Q K^T * exp(G_i - G_j), i >= j) Uc
#pragma once
#include <ATen/ATen.h>

#include "../layout.h"
#include "recurrent_ref.h"

namespace comba::detail {

struct ChunkDecay {
  at::Tensor G, G0;  // [..., C]
};
ChunkDecay chunk_decay_fwd(const at::Tensor& g);
at::Tensor chunk_decay_bwd(const at::Tensor& dG, const at::Tensor& dG0);  // -> dg

struct WYRepresentation {
  at::Tensor T;  // [..., C, C] unit lower-triangular
  at::Tensor W;  // [..., C, K]
  at::Tensor U;  // [..., C, V]
};
WYRepresentation wy_fwd(const at::Tensor& k, const at::Tensor& p, const at::Tensor& v,
                        const at::Tensor& beta, const ChunkDecay& decay);
struct WYGrads {
  at::Tensor k, p, v, beta, G, G0;
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
  at::Tensor k, G;
};
CarryGrads chunk_carry_bwd(const at::Tensor& k, const at::Tensor& G, const ChunkCarry& carry,
                           const at::Tensor& d_k_decayed, const at::Tensor& d_gamma_last);

struct ChunkStates {
  at::Tensor starts;       // [NC, N, HV, K, V] state entering each chunk
  at::Tensor u_corrected;  // [NC, N, HV, C, V] U - W S_start
  at::Tensor final_state;  // [N, HV, K, V]
};
ChunkStates state_scan_fwd(const WYRepresentation& wy, const ChunkCarry& carry,
                           const at::Tensor& initial_state);
struct ScanGrads {
  at::Tensor W, U, k_decayed, gamma_last, initial_state;
};
// d_u_direct / d_starts_direct: gradients reaching u_corrected / starts from the output.
ScanGrads state_scan_bwd(const WYRepresentation& wy, const ChunkCarry& carry,
                         const ChunkStates& states, const at::Tensor& d_u_direct,
                         const at::Tensor& d_starts_direct, const at::Tensor& d_final);

at::Tensor chunk_output_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                            const ChunkStates& states, double scale);
struct OutputGrads {
  at::Tensor q, k, G, starts, u_corrected;
};
OutputGrads chunk_output_bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                             const ChunkStates& states, double scale, const at::Tensor& d_o);

// The stages composed on the canonical layout (Tp a multiple of C).
RecurrentForward chunk_fwd_ref(const CanonicalInputs& in, double scale);
CanonicalGrads chunk_bwd_ref(const CanonicalInputs& in, double scale, const at::Tensor& grad_o,
                             const at::Tensor& grad_final);

}  // namespace comba::detail
