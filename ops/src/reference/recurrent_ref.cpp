// S_t = a_t S_{t-1} + b_t k_t u_t^T with u_t = v_t - S_{t-1}^T p_t, o_t = scale S_t^T q_t.
// Backward, with dS the gradient flowing into S_t:
//   dS += scale q_t do_t^T;  dq_t = scale S_t do_t
//   da_t = <dS, S_{t-1}>;  db_t = k_t^T dS u_t;  dk_t = b_t dS u_t;  du_t = b_t dS^T k_t
//   dv_t = du_t;  dp_t = -S_{t-1} du_t;  dS_{t-1} = a_t dS - p_t du_t^T
#include "recurrent_ref.h"

#include <vector>

namespace comba::detail {

namespace {
// Row t of a [N, HV, T, D] tensor as [N, HV, D, 1] (column) or [N, HV, 1, D] (row).
at::Tensor col(const at::Tensor& x, int64_t t) { return x.select(2, t).unsqueeze(-1); }
at::Tensor row(const at::Tensor& x, int64_t t) { return x.select(2, t).unsqueeze(-2); }
at::Tensor gate(const at::Tensor& x, int64_t t) {
  return x.select(2, t).unsqueeze(-1).unsqueeze(-1);
}

// All states S_{-1} .. S_{T-1}: [Tp + 1] x [N, HV, K, V].
std::vector<at::Tensor> run_states(const CanonicalInputs& in, at::Tensor* o, double scale) {
  const int64_t steps = in.q.size(2);
  std::vector<at::Tensor> states;
  states.reserve(steps + 1);
  states.push_back(in.initial_state);
  const auto alpha = in.g.exp();
  for (int64_t t = 0; t < steps; ++t) {
    const auto& s = states.back();
    const auto u = row(in.v, t) - at::matmul(row(in.p, t), s);  // [N, HV, 1, V]
    auto next = gate(alpha, t) * s + gate(in.beta, t) * at::matmul(col(in.k, t), u);
    if (o != nullptr) o->select(2, t).copy_(at::matmul(row(in.q, t), next).squeeze(-2) * scale);
    states.push_back(std::move(next));
  }
  return states;
}
}  // namespace

RecurrentForward recurrent_fwd_ref(const CanonicalInputs& in, double scale) {
  auto o = at::empty({in.v.size(0), in.v.size(1), in.v.size(2), in.v.size(3)}, in.v.options());
  auto states = run_states(in, &o, scale);
  return {o, states.back()};
}

CanonicalGrads recurrent_bwd_ref(const CanonicalInputs& in, double scale,
                                 const at::Tensor& grad_o, const at::Tensor& grad_final) {
  const auto states = run_states(in, nullptr, scale);
  const int64_t steps = in.q.size(2);
  CanonicalGrads d;
  d.q = at::empty_like(in.q);
  d.k = at::empty_like(in.k);
  d.p = at::empty_like(in.p);
  d.v = at::empty_like(in.v);
  d.g = at::empty_like(in.g);
  d.beta = at::empty_like(in.beta);
  auto ds = grad_final.defined() ? grad_final.to(in.q.scalar_type()).clone()
                                 : at::zeros_like(in.initial_state);
  const auto alpha = in.g.exp();
  for (int64_t t = steps - 1; t >= 0; --t) {
    const auto& prev = states[t];
    const auto& cur = states[t + 1];
    const auto dot = row(grad_o, t);                       // [N, HV, 1, V]
    ds = ds + scale * at::matmul(col(in.q, t), dot);       // [N, HV, K, V]
    d.q.select(2, t).copy_(scale * at::matmul(cur, dot.transpose(-1, -2)).squeeze(-1));
    const auto u = row(in.v, t) - at::matmul(row(in.p, t), prev);     // [N, HV, 1, V]
    const auto ds_u = at::matmul(ds, u.transpose(-1, -2)).squeeze(-1);  // [N, HV, K]
    const auto b = in.beta.select(2, t).unsqueeze(-1);                 // [N, HV, 1]
    d.g.select(2, t).copy_((ds * prev).sum({-1, -2}) * alpha.select(2, t));
    d.beta.select(2, t).copy_((ds_u * in.k.select(2, t)).sum(-1));
    d.k.select(2, t).copy_(b * ds_u);
    const auto du = b.unsqueeze(-1) * at::matmul(row(in.k, t), ds);  // [N, HV, 1, V]
    d.v.select(2, t).copy_(du.squeeze(-2));
    d.p.select(2, t).copy_(-at::matmul(prev, du.transpose(-1, -2)).squeeze(-1));
    ds = gate(alpha, t) * ds - at::matmul(col(in.p, t), du);
  }
  d.initial_state = ds;
  return d;
}

}  // namespace comba::detail
