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

// Range weights (see chunk_decay_bwd) from a pair matrix z[i][j] of terms
// exp(sum g over [j + 1 + lo_shift, i - hi_shift]): entry [i - hi_shift][j + 1 + lo_shift].
// Pairs whose range is empty (the diagonal of the output mask, the first subdiagonal of
// the WY mask) are constants and must be zero in z.
at::Tensor pair_ranges(const at::Tensor& z, int64_t hi_shift) {
  const auto c = z.size(-1);
  auto rows = z.narrow(-2, hi_shift, c - hi_shift);                          // i -> i - shift
  rows = at::constant_pad_nd(rows, {0, 0, 0, hi_shift});
  return at::constant_pad_nd(rows.narrow(-1, 0, c - 1), {1, 0});             // j -> j + 1
}

// Range weights of terms w_i * exp(sum g over [0, i - hi_shift]) (entry [i - shift][0]).
at::Tensor prefix_ranges(const at::Tensor& w, int64_t hi_shift) {
  const auto c = w.size(-1);
  auto shifted = at::constant_pad_nd(w.narrow(-1, hi_shift, c - hi_shift), {0, hi_shift});
  return at::constant_pad_nd(shifted.unsqueeze(-1), {0, c - 1});
}

at::Tensor zero_diagonal(const at::Tensor& x, int64_t offset) {
  auto mask = at::ones({x.size(-1), x.size(-1)}, x.options());
  mask.diagonal(offset).zero_();
  return x * mask;
}

at::Tensor rowsum(const at::Tensor& x) { return x.sum(-1); }
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

at::Tensor chunk_decay_bwd(const at::Tensor& range_weights) {
  const auto c = range_weights.size(-1);
  const auto upto = range_weights.cumsum(-1);  // [hi][t] = sum over lo <= t
  const auto hi_at_least_t = at::ones({c, c}, range_weights.options()).tril();
  return (upto * hi_at_least_t).sum(-2);
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
  const auto z = zero_diagonal(d_pk * pk, -1);  // dM * M; the subdiagonal's range is empty
  WYGrads d;
  d.p = at::matmul(d_pk, k) + b * gamma0.unsqueeze(-1) * d_bp;
  d.k = at::matmul(mT(d_pk), p);
  d.v = b * d_bv;
  const auto s_bp = rowsum(d_bp * p);
  d.beta = rowsum(y * pk) + gamma0 * s_bp + rowsum(d_bv * v);
  // exp(G0_i - G_j) spans g[j+1 .. i-1]; exp(G0_i) spans g[0 .. i-1].
  d.decay_ranges = pair_ranges(z, 1) + prefix_ranges(beta * gamma0 * s_bp, 1);
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
  const auto last = G.size(-1) - 1;
  const auto s = rowsum(d_k_decayed * k) * e;  // d(e_j) * e_j
  CarryGrads d;
  d.k = d_k_decayed * e.unsqueeze(-1);
  // exp(G_last - G_j) spans g[j+1 .. last]; exp(G_last) spans g[0 .. last].
  const auto c = G.size(-1);
  auto sizes = G.sizes().vec();
  sizes.push_back(c);
  auto ranges = at::zeros(sizes, G.options());
  auto last_row = ranges.select(-2, last);
  last_row.narrow(-1, 1, c - 1).copy_(s.narrow(-1, 0, c - 1));
  last_row.select(-1, 0).add_(d_gamma_last * carry.gamma_last);
  d.decay_ranges = ranges;
  return d;
}

ChunkTransition chunk_transition_fwd(const WYRepresentation& wy, const ChunkCarry& carry) {
  const auto k_dim = wy.W.size(-1);
  const auto eye = at::eye(k_dim, wy.W.options());
  auto M = carry.gamma_last.unsqueeze(-1).unsqueeze(-1) * eye -
           at::matmul(mT(carry.k_decayed), wy.W);
  auto B = at::matmul(mT(carry.k_decayed), wy.U);
  return {M, B};
}

TransitionGrads chunk_transition_bwd(const WYRepresentation& wy, const ChunkCarry& carry,
                                     const at::Tensor& dM, const at::Tensor& dB) {
  TransitionGrads d;
  d.gamma_last = dM.diagonal(0, -2, -1).sum(-1);
  d.k_decayed = -at::matmul(wy.W, mT(dM)) + at::matmul(wy.U, mT(dB));
  d.W = -at::matmul(carry.k_decayed, dM);
  d.U = at::matmul(carry.k_decayed, dB);
  return d;
}

namespace {
// [NC, N, HV, R, C] -> [NC, N * HV, R, C]: one batch of matrices per chunk.
at::Tensor per_chunk_batches(const at::Tensor& x) {
  return x.reshape({x.size(0), x.size(1) * x.size(2), x.size(3), x.size(4)});
}
}  // namespace

ChunkStates state_scan_fwd(const ChunkTransition& step, const at::Tensor& initial_state) {
  const auto num_chunks = step.M.size(0);
  auto sizes = initial_state.sizes().vec();
  sizes.insert(sizes.begin(), num_chunks + 1);
  auto all = at::empty(sizes, initial_state.options());  // S_0 .. S_NC
  all.select(0, 0).copy_(initial_state);
  auto flat = per_chunk_batches(all);
  const auto m = per_chunk_batches(step.M), b = per_chunk_batches(step.B);
  for (int64_t c = 0; c < num_chunks; ++c) {
    auto next = flat.select(0, c + 1);
    at::baddbmm_out(next, b.select(0, c), m.select(0, c), flat.select(0, c));
  }
  return {all.narrow(0, 0, num_chunks), all.select(0, num_chunks)};
}

ScanGrads state_scan_bwd(const ChunkTransition& step, const ChunkStates& states,
                         const at::Tensor& d_starts_direct, const at::Tensor& d_final) {
  const auto num_chunks = step.M.size(0);
  auto sizes = states.final_state.sizes().vec();
  sizes.insert(sizes.begin(), num_chunks + 1);
  auto all = at::empty(sizes, states.final_state.options());  // dS_0 .. dS_NC
  if (d_final.defined()) {
    all.select(0, num_chunks).copy_(d_final);
  } else {
    all.select(0, num_chunks).zero_();
  }
  auto flat = per_chunk_batches(all);
  const auto m = per_chunk_batches(step.M);
  const auto direct = per_chunk_batches(d_starts_direct);
  for (int64_t c = num_chunks - 1; c >= 0; --c) {
    auto prev = flat.select(0, c);
    at::baddbmm_out(prev, direct.select(0, c), mT(m.select(0, c)), flat.select(0, c + 1));
  }
  const auto d_ends = all.narrow(0, 1, num_chunks);  // gradient into each chunk's end state
  ScanGrads d;
  d.M = at::matmul(d_ends, mT(states.starts));
  d.B = d_ends;
  d.initial_state = all.select(0, 0);
  return d;
}

at::Tensor chunk_output_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                            const WYRepresentation& wy, const ChunkStates& states,
                            double scale) {
  const auto qs = q * scale;
  const auto u_corrected = wy.U - at::matmul(wy.W, states.starts);
  const auto inter = at::matmul(qs * G.exp().unsqueeze(-1), states.starts);
  const auto a_qk = at::matmul(qs, mT(k)) * masked_decay(G, G, true);
  return inter + at::matmul(a_qk, u_corrected);
}

OutputGrads chunk_output_bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& G,
                             const WYRepresentation& wy, const ChunkStates& states,
                             double scale, const at::Tensor& d_o) {
  const auto qs = q * scale;
  const auto gamma = G.exp().unsqueeze(-1);
  const auto m_o = masked_decay(G, G, true);
  const auto qk = at::matmul(qs, mT(k));
  const auto u_corrected = wy.U - at::matmul(wy.W, states.starts);
  const auto e = at::matmul(d_o, mT(u_corrected));  // d(A_qk)
  const auto f = e * m_o;                           // d(Qs K^T)
  const auto z = zero_diagonal(f * qk, 0);          // dM * M; the diagonal's range is empty
  const auto inter = at::matmul(qs, states.starts);  // before the row decay
  const auto d_u = at::matmul(mT(qk * m_o), d_o);    // d(Uc)
  OutputGrads d;
  d.q = (gamma * at::matmul(d_o, mT(states.starts)) + at::matmul(f, k)) * scale;
  d.k = at::matmul(mT(f), qs);
  d.U = d_u;
  d.W = -at::matmul(d_u, mT(states.starts));
  d.starts = at::matmul(mT(qs * gamma), d_o) - at::matmul(mT(wy.W), d_u);
  // exp(G_i - G_j) spans g[j+1 .. i]; exp(G_i) spans g[0 .. i].
  d.decay_ranges = pair_ranges(z, 0) + prefix_ranges(rowsum(inter * d_o) * gamma.squeeze(-1), 0);
  return d;
}

RecurrentForward chunk_fwd_ref(const CanonicalInputs& in, double scale) {
  const auto q = chunks(in.q), k = chunks(in.k), p = chunks(in.p), v = chunks(in.v);
  const auto decay = chunk_decay_fwd(chunks(in.g));
  const auto wy = wy_fwd(k, p, v, chunks(in.beta), decay);
  const auto carry = chunk_carry_fwd(k, decay.G);
  const auto states = state_scan_fwd(chunk_transition_fwd(wy, carry), in.initial_state);
  return {unchunk(chunk_output_fwd(q, k, decay.G, wy, states, scale)), states.final_state};
}

CanonicalGrads chunk_bwd_ref(const CanonicalInputs& in, double scale, const at::Tensor& grad_o,
                             const at::Tensor& grad_final) {
  const auto q = chunks(in.q), k = chunks(in.k), p = chunks(in.p), v = chunks(in.v);
  const auto beta = chunks(in.beta);
  const auto decay = chunk_decay_fwd(chunks(in.g));
  const auto wy = wy_fwd(k, p, v, beta, decay);
  const auto carry = chunk_carry_fwd(k, decay.G);
  const auto step = chunk_transition_fwd(wy, carry);
  const auto states = state_scan_fwd(step, in.initial_state);

  const auto d_out = chunk_output_bwd(q, k, decay.G, wy, states, scale, chunks(grad_o));
  const auto d_scan = state_scan_bwd(step, states, d_out.starts, grad_final);
  const auto d_step = chunk_transition_bwd(wy, carry, d_scan.M, d_scan.B);
  const auto d_carry = chunk_carry_bwd(k, decay.G, carry, d_step.k_decayed, d_step.gamma_last);
  const auto d_wy = wy_bwd(k, p, v, beta, decay, wy, d_out.W + d_step.W, d_out.U + d_step.U);

  CanonicalGrads d;
  d.q = unchunk(d_out.q);
  d.k = unchunk(d_out.k + d_carry.k + d_wy.k);
  d.p = unchunk(d_wy.p);
  d.v = unchunk(d_wy.v);
  d.beta = unchunk(d_wy.beta);
  d.g = unchunk(chunk_decay_bwd(d_out.decay_ranges + d_carry.decay_ranges + d_wy.decay_ranges));
  d.initial_state = d_scan.initial_state;
  return d;
}

}  // namespace comba::detail
