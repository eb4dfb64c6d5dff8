// Backward derivations follow the forward line by line; see chunk_ref.h for the forward.
#include "chunk_ref.h"

#include <limits>

#include "comba/ops/comba.h"

namespace comba::detail {

namespace {

// exp(a_i - b_j) on the kept triangle, exactly 0 elsewhere (masked before the exp).
at::Tensor masked_decay(const at::Tensor& a, const at::Tensor& b, bool include_diagonal) {
  const auto c = a.size(-1);
  const auto mask = at::ones({c, c}, a.options().dtype(at::kBool)).tril(include_diagonal ? 0 : -1);
  const auto diff = a.unsqueeze(-1) - b.unsqueeze(-2);
  return diff.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity()).exp();
}

at::Tensor rowsum(const at::Tensor& x) { return x.sum(-1); }
at::Tensor colsum(const at::Tensor& x) { return x.sum(-2); }
at::Tensor mT(const at::Tensor& x) { return x.transpose(-1, -2); }

// [N, HV, Tp, D] <-> [NC, N, HV, C, D] and [N, HV, Tp] <-> [NC, N, HV, C] (chunk-major).
at::Tensor chunks(const at::Tensor& x) {
  auto sizes = x.sizes().vec();
  const auto tp = sizes[2];
  sizes[2] = kChunkSize;
  sizes.insert(sizes.begin() + 2, tp / kChunkSize);
  return x.view(sizes).movedim(2, 0).contiguous();
}
at::Tensor unchunk(const at::Tensor& x) {
  auto y = x.movedim(0, 2);
  auto sizes = y.sizes().vec();
  sizes[2] *= sizes[3];
  sizes.erase(sizes.begin() + 3);
  return y.reshape(sizes);
}

}  // namespace

ChunkDecay chunk_decay_fwd(const at::Tensor& g) {
  auto G = g.cumsum(-1);
  auto G0 = G - g;
  return {G, G0};
}

at::Tensor chunk_decay_bwd(const at::Tensor& dG, const at::Tensor& dG0) {
  // G_i = sum_{t<=i} g_t, G0_i = sum_{t<i} g_t: dg_t = sum_{i>=t} dG_i + sum_{i>t} dG0_i.
  const auto reverse_cumsum = [](const at::Tensor& x) { return x.flip(-1).cumsum(-1).flip(-1); };
  return reverse_cumsum(dG) + reverse_cumsum(dG0) - dG0;
}

WYRepresentation wy_fwd(const at::Tensor& k, const at::Tensor& p, const at::Tensor& v,
                        const at::Tensor& beta, const ChunkDecay& decay) {
  const auto b = beta.unsqueeze(-1);
  const auto a = b * at::matmul(p, mT(k)) * masked_decay(decay.G0, decay.G, false);
  const auto eye = at::eye(a.size(-1), a.options());
  auto T = at::linalg_solve_triangular(eye + a, eye.expand_as(a), /*upper=*/false,
                                       /*left=*/true, /*unitriangular=*/true);
  auto W = at::matmul(T, b * decay.G0.exp().unsqueeze(-1) * p);
  auto U = at::matmul(T, b * v);
  return {T, W, U};
}

WYGrads wy_bwd(const at::Tensor& k, const at::Tensor& p, const at::Tensor& v,
               const at::Tensor& beta, const ChunkDecay& decay, const WYRepresentation& wy,
               const at::Tensor& dW, const at::Tensor& dU) {
  const auto b = beta.unsqueeze(-1);
  const auto gamma0 = decay.G0.exp();
  const auto bp = b * gamma0.unsqueeze(-1) * p;  // [.., C, K]
  const auto bv = b * v;                         // [.., C, V]
  const auto dT = at::matmul(dW, mT(bp)) + at::matmul(dU, mT(bv));
  const auto d_bp = at::matmul(mT(wy.T), dW);
  const auto d_bv = at::matmul(mT(wy.T), dU);
  // T = (I + A)^-1  =>  dA = -T^T dT T^T, kept on A's strict lower triangle.
  const auto m_a = masked_decay(decay.G0, decay.G, false);  // zero off the strict triangle
  const auto pk = at::matmul(p, mT(k));
  const auto y = -at::matmul(at::matmul(mT(wy.T), dT), mT(wy.T)) * m_a;  // dA * M
  const auto d_pk = b * y;
  const auto z = d_pk * pk;  // dM * M
  WYGrads d;
  d.p = at::matmul(d_pk, k) + b * gamma0.unsqueeze(-1) * d_bp;
  d.k = at::matmul(mT(d_pk), p);
  d.v = b * d_bv;
  const auto s_bp = rowsum(d_bp * p);
  d.beta = rowsum(y * pk) + gamma0 * s_bp + rowsum(d_bv * v);
  d.G0 = rowsum(z) + beta * gamma0 * s_bp;
  d.G = -colsum(z);
  return d;
}

ChunkCarry chunk_carry_fwd(const at::Tensor& k, const at::Tensor& G) {
  const auto g_last = G.select(-1, G.size(-1) - 1);
  const auto e = (g_last.unsqueeze(-1) - G).exp();
  return {k * e.unsqueeze(-1), g_last.exp()};
}

CarryGrads chunk_carry_bwd(const at::Tensor& k, const at::Tensor& G, const ChunkCarry& carry,
                           const at::Tensor& d_k_decayed, const at::Tensor& d_gamma_last) {
  const auto g_last = G.select(-1, G.size(-1) - 1);
  const auto e = (g_last.unsqueeze(-1) - G).exp();
  const auto s = rowsum(d_k_decayed * k) * e;  // d(e_j) * e_j
  CarryGrads d;
  d.k = d_k_decayed * e.unsqueeze(-1);
  d.G = -s;
  d.G.select(-1, G.size(-1) - 1).add_(s.sum(-1) + d_gamma_last * carry.gamma_last);
  return d;
}

ChunkStates state_scan_fwd(const WYRepresentation& wy, const ChunkCarry& carry,
                           const at::Tensor& initial_state) {
  const auto num_chunks = wy.W.size(0);
  ChunkStates st;
  auto sizes = initial_state.sizes().vec();
  sizes.insert(sizes.begin(), num_chunks);
  st.starts = at::empty(sizes, initial_state.options());
  st.u_corrected = at::empty_like(wy.U);
  auto s = initial_state;
  for (int64_t c = 0; c < num_chunks; ++c) {
    st.starts.select(0, c).copy_(s);
    const auto uc = wy.U.select(0, c) - at::matmul(wy.W.select(0, c), s);
    st.u_corrected.select(0, c).copy_(uc);
    s = carry.gamma_last.select(0, c).unsqueeze(-1).unsqueeze(-1) * s +
        at::matmul(mT(carry.k_decayed.select(0, c)), uc);
  }
  st.final_state = s;
  return st;
}

ScanGrads state_scan_bwd(const WYRepresentation& wy, const ChunkCarry& carry,
                         const ChunkStates& states, const at::Tensor& d_u_direct,
                         const at::Tensor& d_starts_direct, const at::Tensor& d_final) {
  const auto num_chunks = wy.W.size(0);
  ScanGrads d;
  d.W = at::empty_like(wy.W);
  d.U = at::empty_like(wy.U);
  d.k_decayed = at::empty_like(carry.k_decayed);
  d.gamma_last = at::empty_like(carry.gamma_last);
  auto ds = d_final.defined() ? d_final.clone() : at::zeros_like(states.final_state);
  for (int64_t c = num_chunks - 1; c >= 0; --c) {
    const auto s = states.starts.select(0, c);
    const auto w = wy.W.select(0, c);
    const auto du = d_u_direct.select(0, c) + at::matmul(carry.k_decayed.select(0, c), ds);
    d.k_decayed.select(0, c).copy_(at::matmul(states.u_corrected.select(0, c), mT(ds)));
    d.gamma_last.select(0, c).copy_((s * ds).sum({-1, -2}));
    d.W.select(0, c).copy_(-at::matmul(du, mT(s)));
    d.U.select(0, c).copy_(du);
    ds = carry.gamma_last.select(0, c).unsqueeze(-1).unsqueeze(-1) * ds -
         at::matmul(mT(w), du) + d_starts_direct.select(0, c);
  }
  d.initial_state = ds;
  return d;
}

at::Tensor chunk_output_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                            const ChunkStates& states, double scale) {
  const auto qs = q * scale;
  const auto inter = at::matmul(qs * G.exp().unsqueeze(-1), states.starts);
  const auto a_qk = at::matmul(qs, mT(k)) * masked_decay(G, G, true);
  return inter + at::matmul(a_qk, states.u_corrected);
}

OutputGrads chunk_output_bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                             const ChunkStates& states, double scale, const at::Tensor& d_o) {
  const auto qs = q * scale;
  const auto gamma = G.exp().unsqueeze(-1);
  const auto m_o = masked_decay(G, G, true);
  const auto qk = at::matmul(qs, mT(k));
  const auto e = at::matmul(d_o, mT(states.u_corrected));  // d(A_qk)
  const auto f = e * m_o;                                  // d(Qs K^T)
  const auto z = f * qk;                                   // dM * M
  const auto inter = at::matmul(qs, states.starts);        // before the row decay
  OutputGrads d;
  d.q = (gamma * at::matmul(d_o, mT(states.starts)) + at::matmul(f, k)) * scale;
  d.k = at::matmul(mT(f), qs);
  d.starts = at::matmul(mT(qs * gamma), d_o);
  d.u_corrected = at::matmul(mT(qk * m_o), d_o);
  d.G = rowsum(inter * d_o) * gamma.squeeze(-1) + rowsum(z) - colsum(z);
  return d;
}

RecurrentForward chunk_fwd_ref(const CanonicalInputs& in, double scale) {
  const auto q = chunks(in.q), k = chunks(in.k), p = chunks(in.p), v = chunks(in.v);
  const auto decay = chunk_decay_fwd(chunks(in.g));
  const auto wy = wy_fwd(k, p, v, chunks(in.beta), decay);
  const auto carry = chunk_carry_fwd(k, decay.G);
  const auto states = state_scan_fwd(wy, carry, in.initial_state);
  return {unchunk(chunk_output_fwd(q, k, decay.G, states, scale)), states.final_state};
}

CanonicalGrads chunk_bwd_ref(const CanonicalInputs& in, double scale, const at::Tensor& grad_o,
                             const at::Tensor& grad_final) {
  const auto q = chunks(in.q), k = chunks(in.k), p = chunks(in.p), v = chunks(in.v);
  const auto beta = chunks(in.beta);
  const auto decay = chunk_decay_fwd(chunks(in.g));
  const auto wy = wy_fwd(k, p, v, beta, decay);
  const auto carry = chunk_carry_fwd(k, decay.G);
  const auto states = state_scan_fwd(wy, carry, in.initial_state);

  const auto d_out = chunk_output_bwd(q, k, decay.G, states, scale, chunks(grad_o));
  const auto d_scan = state_scan_bwd(wy, carry, states, d_out.u_corrected, d_out.starts, grad_final);
  const auto d_carry = chunk_carry_bwd(k, decay.G, carry, d_scan.k_decayed, d_scan.gamma_last);
  const auto d_wy = wy_bwd(k, p, v, beta, decay, wy, d_scan.W, d_scan.U);

  CanonicalGrads d;
  d.q = unchunk(d_out.q);
  d.k = unchunk(d_out.k + d_carry.k + d_wy.k);
  d.p = unchunk(d_wy.p);
  d.v = unchunk(d_wy.v);
  d.beta = unchunk(d_wy.beta);
  d.g = unchunk(chunk_decay_bwd(d_out.G + d_carry.G + d_wy.G, d_wy.G0));
  d.initial_state = d_scan.initial_state;
  return d;
}

}  // namespace comba::detail
