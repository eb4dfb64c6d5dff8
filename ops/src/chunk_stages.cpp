// The stage contract's one shared piece: the q / k / p gradient epilogue.
#include "chunk_stages.h"

namespace comba::detail {

InputGrads finish_chunk_grads(const CombaProblem& pb, const CombaInputs& in,
                              const ChunkGrads& grads) {
  const auto dt = compute_dtype(pb);
  InputGrads out;
  if (!grads.per_value_head && !grads.l2norm_pending) {  // final layout and dtype already
    out.q = grads.dq;
    if (in.p.defined()) {
      out.k = grads.dk;
      out.p = grads.dp;
    } else {  // p = k inside the operator: one vector, two uses
      out.k = (grads.dk.to(dt) + grads.dp.to(dt)).to(pb.dtype);
    }
  } else {
    // Per value head -> per query head; then through the l2norm where it is still to do.
    // The l2norm backward reads the inputs as the kernels read them (contiguous).
    auto per_head = [&](const at::Tensor& d) {
      return grads.per_value_head ? sum_head_groups(d, /*dim=*/2, pb.group()) : d;
    };
    auto finish = [&](const at::Tensor& x, const at::Tensor& d) {
      return qk_grad_to_input(grads.l2norm_pending ? x.contiguous() : x, d,
                              grads.l2norm_pending, dt);
    };
    out.q = finish(in.q, per_head(grads.dq));
    if (in.p.defined()) {
      out.k = finish(in.k, per_head(grads.dk));
      out.p = finish(in.p, per_head(grads.dp));
    } else {  // p = k inside the operator: one normalised vector, two uses
      out.k = finish(in.k, per_head(grads.dk) + per_head(grads.dp));
    }
  }
  out.v = grads.dv.to(in.v.scalar_type());
  out.g = grads.dg.to(in.g.scalar_type());
  if (in.beta.defined()) out.beta = grads.dbeta.to(in.beta.scalar_type());
  if (in.initial_state.defined()) {
    out.initial_state = grads.d_initial.to(in.initial_state.scalar_type());
  }
  return out;
}

}  // namespace comba::detail
