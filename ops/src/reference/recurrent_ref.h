// ATen reference of the token-by-token recurrence on the canonical layout (layout.h):
// a loop over time of batched [N, HV] matrix products. Runs on any device and dtype.
#pragma once
#include <ATen/ATen.h>

#include "../layout.h"

namespace comba::detail {

struct RecurrentForward {
  at::Tensor o;            // [N, HV, Tp, V]
  at::Tensor final_state;  // [N, HV, K, V]
};

RecurrentForward recurrent_fwd_ref(const CanonicalInputs& in, double scale);

// Gradients of sum(<o, grad_o>) + <final_state, grad_final> (grad_final may be undefined).
// Recomputes the states forward, then runs the reverse scan.
CanonicalGrads recurrent_bwd_ref(const CanonicalInputs& in, double scale,
                                 const at::Tensor& grad_o, const at::Tensor& grad_final);

}  // namespace comba::detail
