// The operator's canonical layout and the (differentiable by hand) maps into and out of
// it. Both reference cores and their backward passes work on the canonical form:
//   q, k, p [N, HV, Tp, K]; v [N, HV, Tp, V]; g, beta [N, HV, Tp]; state [N, HV, K, V],
// in the compute dtype (float32, float64 for float64 inputs), contiguous, with l2norm
// applied and q/k/p repeated over each GVA group. Varlen sequences are packed one per
// row and every row is zero-padded at the end to Tp (a multiple of `pad_multiple`):
// a padded step has g = 0 and beta = 0, so it leaves the state unchanged and the final
// state at Tp is the state after the sequence's last real token.
// Also here: the operator's inputs, forward result and input gradients as every backend
// (CUDA launchers, reference path) passes them.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "problem.h"

namespace comba::detail {

struct CombaInputs {  // as the caller gave them (p, beta, initial_state, cu may be undefined)
  at::Tensor q, k, v, p, g, beta, initial_state, cu_seqlens;
};

struct CanonicalInputs {
  at::Tensor q, k, p, v, g, beta, initial_state;
};

struct CanonicalGrads {  // same shapes as CanonicalInputs
  at::Tensor q, k, p, v, g, beta, initial_state;
};

struct InputGrads {  // shapes and dtypes of CombaInputs; undefined where no input was given
  at::Tensor q, k, v, p, g, beta, initial_state;
};

struct CombaForward {
  at::Tensor o;            // [B, T, HV, V] in the inputs' dtype
  at::Tensor final_state;  // [N, HV, K, V] in the state dtype
  // Work the backward may reuse instead of recomputing (kernel workspaces; empty on the
  // reference path). Only asked for when a backward will follow.
  std::vector<at::Tensor> saved;
};

at::ScalarType compute_dtype(const CombaProblem& pb);

// Token-axis map between the caller's [B, T, X, D] and canonical [N, X, Tp, D].
class TokenLayout {
 public:
  TokenLayout(const CombaProblem& pb, const at::Tensor& cu_seqlens, int64_t pad_multiple);

  at::Tensor pack(const at::Tensor& x) const;    // [B, T, X, D] -> [N, X, Tp, D]
  at::Tensor unpack(const at::Tensor& x) const;  // [N, X, Tp, D] -> [B, T, X, D]
  at::Tensor pack_gate(const at::Tensor& x) const { return pack(x.unsqueeze(-1)).squeeze(-1); }
  at::Tensor unpack_gate(const at::Tensor& x) const {
    return unpack(x.unsqueeze(-1)).squeeze(-1);
  }

 private:
  const CombaProblem& pb_;
  int64_t padded_len_ = 0;
  at::Tensor gather_;   // varlen: [N * Tp] rows of [T + 1] (row T is zeros)
  at::Tensor scatter_;  // varlen: [T] rows of [N * Tp]
};

// x / sqrt(sum(x^2) + kL2NormEps) over the last dim (ops/cuda/l2norm_eps.h), and its backward.
at::Tensor l2norm_fwd(const at::Tensor& x);
at::Tensor l2norm_bwd(const at::Tensor& x, const at::Tensor& grad_y);

// Backward of repeating each query / key head over its GVA group of `group` value heads:
// sums each group's gradients; `dim` is the head dim (HV there, HV / group after).
at::Tensor sum_head_groups(const at::Tensor& dx, int64_t dim, int64_t group);

// The last step of a q / k / p gradient: through the l2norm backward (computed in
// `compute`, against the input x as given) when `through_l2norm`, then in x's dtype.
at::Tensor qk_grad_to_input(const at::Tensor& x, const at::Tensor& dx, bool through_l2norm,
                            at::ScalarType compute);

CanonicalInputs to_canonical(const CombaProblem& pb, const CombaInputs& in,
                             const TokenLayout& layout, bool use_l2norm);

// Backward of to_canonical: canonical grads -> grads of the caller's inputs, each in its
// own dtype. `in` are the original inputs (needed by the l2norm backward).
InputGrads from_canonical(const CombaProblem& pb, const CombaInputs& in,
                          const CanonicalGrads& grads, const TokenLayout& layout,
                          bool use_l2norm);

}  // namespace comba::detail
