// The ATen twins of the chunk stages (see chunk_stages_ref.h). Chunked tensors are
// [NC, HV, C, D] like the kernels' workspace; the caller's token rows are gathered into
// chunk rows once per stage (rows past a short chunk's end are zero, as the kernels load
// them).
#include "chunk_stages_ref.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../../cuda/chunk/chunk_params.h"
#include "../../cuda/l2norm_eps.h"

namespace comba::detail::twin {

namespace {

constexpr int64_t C = kChunkSize;
static_assert(comba::cuda::kChunk == kChunkSize, "twin chunk length != the kernels' kChunk");

// Where chunk rows come from: chunk c, row i reads token token[c * C + i] of the flattened
// [B * T] token axis when valid (else a zero row).
struct ChunkRows {
  std::vector<int64_t> first_chunk;  // [N + 1] (host)
  int64_t num_chunks = 0;
  at::Tensor token;        // [NC * C] int64 (0 where not valid)
  at::Tensor mask;         // [NC * C] compute dtype, 1 on valid rows
  at::Tensor valid;        // [rows] int64: the valid chunk rows
  at::Tensor valid_token;  // [rows] int64: their tokens
};

ChunkRows chunk_rows(const CombaProblem& pb, const CombaInputs& in, at::ScalarType dt) {
  std::vector<int64_t> starts, ends;  // token range of each sequence
  if (pb.varlen) {
    const auto cu = in.cu_seqlens.to(at::kCPU, at::kLong).contiguous();
    const auto* b = cu.data_ptr<int64_t>();
    for (int64_t n = 0; n < pb.num_seqs; ++n) {
      starts.push_back(b[n]);
      ends.push_back(b[n + 1]);
    }
  } else {
    for (int64_t n = 0; n < pb.num_seqs; ++n) {
      starts.push_back(n * pb.seq_len);
      ends.push_back((n + 1) * pb.seq_len);
    }
  }
  ChunkRows rows;
  rows.first_chunk.push_back(0);
  std::vector<int64_t> token, valid, valid_token;
  std::vector<double> mask;
  for (int64_t n = 0; n < pb.num_seqs; ++n) {
    const int64_t len = ends[n] - starts[n], count = (len + C - 1) / C;
    for (int64_t i = 0; i < count * C; ++i) {
      const bool ok = i < len;
      if (ok) {
        valid.push_back(static_cast<int64_t>(token.size()));
        valid_token.push_back(starts[n] + i);
      }
      token.push_back(ok ? starts[n] + i : 0);
      mask.push_back(ok ? 1.0 : 0.0);
    }
    rows.first_chunk.push_back(rows.first_chunk.back() + count);
  }
  rows.num_chunks = rows.first_chunk.back();
  const auto device = in.q.device();
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  rows.token = at::tensor(token, i64).to(device);
  rows.mask = at::tensor(mask, at::TensorOptions().dtype(at::kDouble)).to(device, dt);
  rows.valid = at::tensor(valid, i64).to(device);
  rows.valid_token = at::tensor(valid_token, i64).to(device);
  return rows;
}

// [B, T, X, D] (or a [B * T, X, D] leaf) -> [NC, X, C, D] in dt, zero rows past the ends.
// Differentiable (index_select and a mask).
at::Tensor to_chunks(const at::Tensor& x, const ChunkRows& rows, at::ScalarType dt) {
  const auto d = x.size(-1), heads = x.size(-2);
  const auto flat = x.to(dt).reshape({-1, heads * d});
  return (flat.index_select(0, rows.token) * rows.mask.unsqueeze(1))
      .view({rows.num_chunks, C, heads, d})
      .permute({0, 2, 1, 3})
      .contiguous();
}
at::Tensor gate_to_chunks(const at::Tensor& x, const ChunkRows& rows, at::ScalarType dt) {
  return to_chunks(x.unsqueeze(-1), rows, dt).squeeze(-1);
}

// q, k or p [B, T, H, K] -> [NC, HV, C, KP]: each head repeated over its value heads.
at::Tensor key_chunks(const CombaProblem& pb, const at::Tensor& x, const ChunkRows& rows,
                      at::ScalarType dt, int64_t kp) {
  auto y = to_chunks(x, rows, dt);
  if (pb.group() > 1) y = y.repeat_interleave(pb.group(), /*dim=*/1);
  return kp > pb.key_dim ? at::constant_pad_nd(y, {0, kp - pb.key_dim}) : y;
}

// [NC, X, C, D] -> [B, T, X, D] (tokens no chunk covers stay zero).
at::Tensor from_chunks(const CombaProblem& pb, const at::Tensor& y, const ChunkRows& rows) {
  const auto heads = y.size(1), d = y.size(3);
  const auto chunk_rows = y.permute({0, 2, 1, 3}).reshape({rows.num_chunks * C, heads * d});
  return at::zeros({pb.batch * pb.seq_len, heads * d}, y.options())
      .index_copy_(0, rows.valid_token, chunk_rows.index_select(0, rows.valid))
      .view({pb.batch, pb.seq_len, heads, d});
}

// exp(a_i - b_j) on the kept triangle, exactly 0 elsewhere (masked before the exp, so no
// overflowing term is formed and autograd sees a zero there).
at::Tensor masked_decay(const at::Tensor& a, const at::Tensor& b, bool include_diagonal) {
  const auto mask = at::ones({C, C}, a.options().dtype(at::kBool)).tril(include_diagonal ? 0 : -1);
  return (a.unsqueeze(-1) - b.unsqueeze(-2))
      .masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity())
      .exp();
}

at::Tensor mT(const at::Tensor& x) { return x.transpose(-1, -2); }

// The prep operands from chunked raw q, k, p [..., C, KP], g, beta [..., C]; the kernel's
// formulas (chunk_prep_kernel.cuh), differentiable, so that chunk_grads can reuse them.
struct PrepOperands {
  at::Tensor w, tu, mqk, qf, kf, gamma, t_inv;
};

PrepOperands prep_operands(const at::Tensor& q, const at::Tensor& k, const at::Tensor& p,
                           const at::Tensor& g, const at::Tensor& beta, double scale,
                           bool use_l2norm) {
  // l2norm row factors 1 / |x| (of a zero row too, as the kernel forms them).
  auto row_factor = [&](const at::Tensor& x) {
    return use_l2norm ? (x * x).sum(-1).add(kL2NormEps).rsqrt() : at::ones_like(g);
  };
  const auto rq = row_factor(q), rk = row_factor(k), rp = row_factor(p);
  const auto G = g.cumsum(-1), G0 = G - g, G_last = G.narrow(-1, C - 1, 1);
  const auto a = (beta * rp).unsqueeze(-1) * at::matmul(p, mT(k)) * rk.unsqueeze(-2) *
                 masked_decay(G0, G, /*include_diagonal=*/false);
  const auto eye = at::eye(C, g.options());
  PrepOperands out;
  out.t_inv = at::linalg_solve_triangular(eye + a, eye.expand_as(a), /*upper=*/false,
                                          /*left=*/true, /*unitriangular=*/true);
  out.w = at::matmul(out.t_inv * (beta * G0.exp() * rp).unsqueeze(-2), p);
  out.tu = out.t_inv * beta.unsqueeze(-2);
  out.mqk = scale * rq.unsqueeze(-1) * at::matmul(q, mT(k)) * rk.unsqueeze(-2) *
            masked_decay(G, G, /*include_diagonal=*/true);
  out.qf = scale * rq * G.exp();
  out.kf = rk * (G_last - G).exp();
  out.gamma = G_last.squeeze(-1).exp();
  return out;
}

// Beta in chunks: the given one, or 1 on valid rows (0 past the ends, as the kernels load).
at::Tensor beta_chunks(const CombaProblem& pb, const CombaInputs& in, const ChunkRows& rows,
                       at::ScalarType dt) {
  if (in.beta.defined()) return gate_to_chunks(in.beta, rows, dt);
  return rows.mask.view({rows.num_chunks, 1, C})
      .expand({rows.num_chunks, pb.value_heads, C})
      .contiguous();
}

// The chunks at position i of every sequence that has one: the sequences and the chunks.
struct Step {
  at::Tensor seqs, chunks;
};
std::vector<Step> steps(const ChunkRows& rows, at::Device device) {
  int64_t longest = 0;
  const auto n = static_cast<int64_t>(rows.first_chunk.size()) - 1;
  for (int64_t s = 0; s < n; ++s) {
    longest = std::max(longest, rows.first_chunk[s + 1] - rows.first_chunk[s]);
  }
  std::vector<Step> out;
  for (int64_t i = 0; i < longest; ++i) {
    std::vector<int64_t> seqs, chunks;
    for (int64_t s = 0; s < n; ++s) {
      if (rows.first_chunk[s] + i < rows.first_chunk[s + 1]) {
        seqs.push_back(s);
        chunks.push_back(rows.first_chunk[s] + i);
      }
    }
    const auto i64 = at::TensorOptions().dtype(at::kLong);
    out.push_back({at::tensor(seqs, i64).to(device), at::tensor(chunks, i64).to(device)});
  }
  return out;
}

// [N, HV, K, V] -> [N, HV, KP, V] in dt (zeros when undefined).
at::Tensor padded_state(const CombaProblem& pb, const at::Tensor& s, int64_t kp,
                        const at::TensorOptions& opts) {
  if (!s.defined()) return at::zeros({pb.num_seqs, pb.value_heads, kp, pb.value_dim}, opts);
  return at::constant_pad_nd(s.to(opts.dtype().toScalarType()), {0, 0, 0, kp - pb.key_dim});
}

void check_workspace(const ChunkWorkspace& ws, const ChunkRows& rows, const char* stage) {
  TORCH_CHECK(ws.num_chunks == rows.num_chunks, "chunk_comba twin ", stage,
              ": workspace has num_chunks = ", ws.num_chunks, ", expected ", rows.num_chunks,
              " for these inputs");
}

}  // namespace

ChunkWorkspace chunk_prep(const CombaProblem& pb, const CombaInputs& in) {
  TORCH_CHECK(pb.key_dim <= comba::cuda::kChunkMaxKeyDim,
              "chunk_comba twin chunk_prep: argument `q` has key dim K = ", pb.key_dim,
              ", expected at most ", comba::cuda::kChunkMaxKeyDim,
              " (the chunk workspace pads K to 64, 128 or 256)");
  const auto dt = compute_dtype(pb);
  const auto rows = chunk_rows(pb, in, dt);
  ChunkWorkspace ws;
  ws.num_chunks = rows.num_chunks;
  ws.padded_key_dim = comba::cuda::chunk_padded_key_dim(static_cast<int>(pb.key_dim));
  if (pb.varlen) {
    const std::vector<int> offsets(rows.first_chunk.begin(), rows.first_chunk.end());
    ws.chunk_offsets = at::tensor(offsets, at::TensorOptions().dtype(at::kInt)).to(in.q.device());
  }
  const auto kp = ws.padded_key_dim;
  const auto k = key_chunks(pb, in.k, rows, dt, kp);
  const auto ops = prep_operands(key_chunks(pb, in.q, rows, dt, kp), k,
                                 in.p.defined() ? key_chunks(pb, in.p, rows, dt, kp) : k,
                                 gate_to_chunks(in.g, rows, dt), beta_chunks(pb, in, rows, dt),
                                 pb.scale, pb.use_l2norm);
  ws.w = ops.w;
  ws.tu = ops.tu;
  ws.mqk = ops.mqk;
  ws.qf = ops.qf;
  ws.kf = ops.kf;
  ws.gamma = ops.gamma;
  ws.t_inv = ops.t_inv;
  return ws;
}

CombaForward chunk_scan_fwd(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws,
                            KeptWorkspace keep) {
  const auto dt = compute_dtype(pb);
  const auto rows = chunk_rows(pb, in, dt);
  check_workspace(ws, rows, "chunk_scan_fwd");
  const auto kp = ws.padded_key_dim;
  const auto opts = in.q.options().dtype(dt);
  const auto v = to_chunks(in.v, rows, dt);
  const auto w = ws.w.to(dt), mqk = ws.mqk.to(dt);
  const auto u = at::matmul(ws.tu.to(dt), v);  // every chunk at once
  const auto qs = ws.qf.to(dt).unsqueeze(-1) * key_chunks(pb, in.q, rows, dt, kp);
  const auto kd = ws.kf.to(dt).unsqueeze(-1) * key_chunks(pb, in.k, rows, dt, kp);
  const auto gamma = ws.gamma.to(dt).unsqueeze(-1).unsqueeze(-1);

  auto S = padded_state(pb, in.initial_state, kp, opts);
  auto states = at::zeros({rows.num_chunks, pb.value_heads, kp, pb.value_dim}, opts);
  auto v_new = at::zeros_like(v), o = at::zeros_like(v);
  for (const auto& step : steps(rows, in.q.device())) {
    const auto s = S.index_select(0, step.seqs);
    const auto vn = u.index_select(0, step.chunks) - at::matmul(w.index_select(0, step.chunks), s);
    o.index_copy_(0, step.chunks,
                  at::matmul(qs.index_select(0, step.chunks), s) +
                      at::matmul(mqk.index_select(0, step.chunks), vn));
    states.index_copy_(0, step.chunks, s);
    v_new.index_copy_(0, step.chunks, vn);
    S.index_copy_(0, step.seqs,
                  gamma.index_select(0, step.chunks) * s +
                      at::matmul(mT(kd.index_select(0, step.chunks)), vn));
  }
  if (keep != KeptWorkspace::kNone) ws.states = states;
  if (keep == KeptWorkspace::kAll) ws.v_new = v_new;
  CombaForward out;
  out.o = from_chunks(pb, o, rows).to(pb.dtype);
  out.final_state = S.narrow(2, 0, pb.key_dim).to(pb.state_dtype).contiguous();
  return out;
}

void chunk_v_new(const CombaProblem& pb, const CombaInputs& in, ChunkWorkspace& ws) {
  const auto dt = compute_dtype(pb);
  const auto rows = chunk_rows(pb, in, dt);
  check_workspace(ws, rows, "chunk_v_new");
  TORCH_CHECK(ws.states.defined() && ws.w.defined() && ws.tu.defined(),
              "chunk_v_new: the workspace holds no states / W / Tu (expected chunk_prep and "
              "the states a forward scan kept)");
  const auto v = to_chunks(in.v, rows, dt);
  ws.v_new = at::matmul(ws.tu.to(dt), v) - at::matmul(ws.w.to(dt), ws.states.to(dt));
}

ChunkStateGrads chunk_scan_bwd(const CombaProblem& pb, const CombaInputs& in,
                               const ChunkWorkspace& ws, const at::Tensor& grad_o,
                               const at::Tensor& grad_final) {
  const auto dt = compute_dtype(pb);
  const auto rows = chunk_rows(pb, in, dt);
  check_workspace(ws, rows, "chunk_scan_bwd");
  const auto kp = ws.padded_key_dim;
  const auto opts = in.q.options().dtype(dt);
  const auto d_o = to_chunks(grad_o, rows, dt);
  const auto d_oq = ws.qf.to(dt).unsqueeze(-1) * d_o;
  const auto q = key_chunks(pb, in.q, rows, dt, kp);
  const auto kd = ws.kf.to(dt).unsqueeze(-1) * key_chunks(pb, in.k, rows, dt, kp);
  const auto w = ws.w.to(dt), mqk = ws.mqk.to(dt);
  const auto gamma = ws.gamma.to(dt).unsqueeze(-1).unsqueeze(-1);

  auto dS = padded_state(pb, grad_final, kp, opts);
  ChunkStateGrads out;
  out.d_states = at::zeros({rows.num_chunks, pb.value_heads, kp, pb.value_dim}, opts);
  out.dv_new = at::zeros_like(d_o);
  auto all_steps = steps(rows, in.q.device());
  for (auto step = all_steps.rbegin(); step != all_steps.rend(); ++step) {
    const auto& c = step->chunks;
    const auto ds = dS.index_select(0, step->seqs);  // the gradient of these chunks' end states
    const auto dvn = at::matmul(mT(mqk.index_select(0, c)), d_o.index_select(0, c)) +
                     at::matmul(kd.index_select(0, c), ds);
    out.d_states.index_copy_(0, c, ds);
    out.dv_new.index_copy_(0, c, dvn);
    dS.index_copy_(0, step->seqs,
                   gamma.index_select(0, c) * ds +
                       at::matmul(mT(q.index_select(0, c)), d_oq.index_select(0, c)) -
                       at::matmul(mT(w.index_select(0, c)), dvn));
  }
  out.d_initial = dS.narrow(2, 0, pb.key_dim).contiguous();
  return out;
}

ChunkGrads chunk_grads(const CombaProblem& pb, const CombaInputs& in, const ChunkWorkspace& ws,
                       const ChunkStateGrads& sg, const at::Tensor& grad_o) {
  const c10::AutoGradMode grad_mode(true);  // a backward runs with grad mode off
  const auto dt = compute_dtype(pb);
  const auto rows = chunk_rows(pb, in, dt);
  check_workspace(ws, rows, "chunk_grads");
  const int64_t tokens = pb.batch * pb.seq_len, hv = pb.value_heads, K = pb.key_dim;
  // Leaves per value head (their gradients are the per-value-head ones), p's role its own
  // leaf even when p = k.
  auto key_leaf = [&](const at::Tensor& x) {
    auto y = x.to(dt);
    if (pb.group() > 1) y = y.repeat_interleave(pb.group(), /*dim=*/2);
    return y.reshape({tokens, hv, K}).detach().requires_grad_(true);
  };
  const auto q = key_leaf(in.q), k = key_leaf(in.k), p = key_leaf(in.p.defined() ? in.p : in.k);
  const auto v = in.v.to(dt).reshape({tokens, hv, pb.value_dim}).detach().requires_grad_(true);
  const auto g = in.g.to(dt).reshape({tokens, hv}).detach().requires_grad_(true);
  const auto beta = (in.beta.defined() ? in.beta.to(dt).reshape({tokens, hv})
                                       : at::ones({tokens, hv}, in.q.options().dtype(dt)))
                        .detach()
                        .requires_grad_(true);

  const auto qc = to_chunks(q, rows, dt), kc = to_chunks(k, rows, dt);
  const auto ops = prep_operands(qc, kc, to_chunks(p, rows, dt), gate_to_chunks(g, rows, dt),
                                 gate_to_chunks(beta, rows, dt), pb.scale, pb.use_l2norm);
  // Constants: the state entering each chunk and the gradient of each chunk's end state.
  const auto S = ws.states.narrow(2, 0, K).to(dt);
  const auto dS_end = sg.d_states.narrow(2, 0, K).to(dt);
  const auto vn = at::matmul(ops.tu, to_chunks(v, rows, dt)) - at::matmul(ops.w, S);
  const auto o = ops.qf.unsqueeze(-1) * at::matmul(qc, S) + at::matmul(ops.mqk, vn);
  const auto s_end =
      ops.gamma.unsqueeze(-1).unsqueeze(-1) * S + at::matmul(mT(ops.kf.unsqueeze(-1) * kc), vn);
  const auto loss = (o * to_chunks(grad_o, rows, dt)).sum() + (s_end * dS_end).sum();
  const auto grads = torch::autograd::grad({loss}, {q, k, p, v, g, beta});

  ChunkGrads out;
  out.per_value_head = true;
  out.l2norm_pending = false;
  const std::vector<int64_t> key_shape{pb.batch, pb.seq_len, hv, K};
  out.dq = grads[0].view(key_shape);
  out.dk = grads[1].view(key_shape);
  out.dp = grads[2].view(key_shape);
  out.dv = grads[3].view({pb.batch, pb.seq_len, hv, pb.value_dim}).to(pb.dtype);
  out.dg = grads[4].view({pb.batch, pb.seq_len, hv});
  out.dbeta = grads[5].view({pb.batch, pb.seq_len, hv});
  out.d_initial = sg.d_initial;
  return out;
}

}  // namespace comba::detail::twin
