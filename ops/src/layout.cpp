#include "layout.h"

#include <vector>

#include "../cuda/l2norm_eps.h"

namespace comba::detail {

namespace {
int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// [N, H, Tp, D] -> [N, HV, Tp, D], each head repeated over its group of value heads.
at::Tensor expand_groups(const at::Tensor& x, int64_t group) {
  return group == 1 ? x : x.repeat_interleave(group, /*dim=*/1);
}
}  // namespace

at::ScalarType compute_dtype(const CombaProblem& pb) {
  return pb.dtype == at::kDouble ? at::kDouble : at::kFloat;
}

TokenLayout::TokenLayout(const CombaProblem& pb, const at::Tensor& cu_seqlens,
                         int64_t pad_multiple)
    : pb_(pb) {
  if (!pb.varlen) {
    padded_len_ = round_up(std::max<int64_t>(pb.seq_len, 1), pad_multiple);
    return;
  }
  const auto cu = cu_seqlens.to(at::kCPU).contiguous();
  const auto* b = cu.data_ptr<int64_t>();
  int64_t longest = 1;
  for (int64_t i = 0; i < pb.num_seqs; ++i) longest = std::max(longest, b[i + 1] - b[i]);
  padded_len_ = round_up(longest, pad_multiple);
  std::vector<int64_t> gather(pb.num_seqs * padded_len_, pb.seq_len);
  std::vector<int64_t> scatter(pb.seq_len);
  for (int64_t i = 0; i < pb.num_seqs; ++i) {
    for (int64_t t = b[i]; t < b[i + 1]; ++t) {
      gather[i * padded_len_ + (t - b[i])] = t;
      scatter[t] = i * padded_len_ + (t - b[i]);
    }
  }
  const auto opts = at::TensorOptions().dtype(at::kLong);
  const auto device = cu_seqlens.device();
  gather_ = at::tensor(gather, opts).to(device);
  scatter_ = at::tensor(scatter, opts).to(device);
}

at::Tensor TokenLayout::pack(const at::Tensor& x) const {
  const auto x_heads = x.size(2), d = x.size(3);
  if (!pb_.varlen) {
    auto y = x.transpose(1, 2);  // [B, X, T, D]
    if (padded_len_ != pb_.seq_len) y = at::constant_pad_nd(y, {0, 0, 0, padded_len_ - pb_.seq_len});
    return y.contiguous();
  }
  const auto rows = at::cat({x.reshape({pb_.seq_len, x_heads * d}),
                             at::zeros({1, x_heads * d}, x.options())});
  return rows.index_select(0, gather_.to(x.device()))
      .view({pb_.num_seqs, padded_len_, x_heads, d})
      .transpose(1, 2)
      .contiguous();
}

at::Tensor TokenLayout::unpack(const at::Tensor& x) const {
  const auto x_heads = x.size(1), d = x.size(3);
  if (!pb_.varlen) {
    return x.narrow(2, 0, pb_.seq_len).transpose(1, 2).contiguous();
  }
  return x.transpose(1, 2)
      .reshape({pb_.num_seqs * padded_len_, x_heads * d})
      .index_select(0, scatter_.to(x.device()))
      .view({1, pb_.seq_len, x_heads, d});
}

at::Tensor l2norm_fwd(const at::Tensor& x) {
  return x * (x * x).sum(-1, /*keepdim=*/true).add(kL2NormEps).rsqrt();
}

at::Tensor l2norm_bwd(const at::Tensor& x, const at::Tensor& grad_y) {
  const auto rinv = (x * x).sum(-1, /*keepdim=*/true).add(kL2NormEps).rsqrt();
  const auto y = x * rinv;
  return (grad_y - y * (y * grad_y).sum(-1, /*keepdim=*/true)) * rinv;
}

at::Tensor sum_head_groups(const at::Tensor& dx, int64_t dim, int64_t group) {
  if (group == 1) return dx;
  auto sizes = dx.sizes().vec();
  sizes[dim] /= group;
  sizes.insert(sizes.begin() + dim + 1, group);
  return dx.view(sizes).sum(dim + 1);
}

at::Tensor qk_grad_to_input(const at::Tensor& x, const at::Tensor& dx, bool through_l2norm,
                            at::ScalarType compute) {
  return (through_l2norm ? l2norm_bwd(x.to(compute), dx) : dx).to(x.scalar_type());
}

CanonicalInputs to_canonical(const CombaProblem& pb, const CombaInputs& in,
                             const TokenLayout& layout, bool use_l2norm) {
  const auto dt = compute_dtype(pb);
  auto prep_qk = [&](const at::Tensor& x) {
    auto y = x.to(dt);
    if (use_l2norm) y = l2norm_fwd(y);
    return expand_groups(layout.pack(y), pb.group());
  };
  CanonicalInputs c;
  c.q = prep_qk(in.q);
  c.k = prep_qk(in.k);
  c.p = in.p.defined() ? prep_qk(in.p) : c.k;
  c.v = layout.pack(in.v.to(dt));
  c.g = layout.pack_gate(in.g.to(dt));
  c.beta = in.beta.defined() ? layout.pack_gate(in.beta.to(dt))
                             : layout.pack_gate(at::ones_like(in.g, in.g.options().dtype(dt)));
  c.initial_state = in.initial_state.defined()
                        ? in.initial_state.to(dt).contiguous()
                        : at::zeros({pb.num_seqs, pb.value_heads, pb.key_dim, pb.value_dim},
                                    in.q.options().dtype(dt));
  return c;
}

InputGrads from_canonical(const CombaProblem& pb, const CombaInputs& in,
                          const CanonicalGrads& grads, const TokenLayout& layout,
                          bool use_l2norm) {
  const auto dt = compute_dtype(pb);
  // The kernels' epilogue (finish_chunk_grads) shares these steps; here the group sum runs
  // on the canonical layout, before the unpack.
  auto back_qk = [&](const at::Tensor& x, const at::Tensor& dx) {
    return qk_grad_to_input(x, layout.unpack(sum_head_groups(dx, /*dim=*/1, pb.group())),
                            use_l2norm, dt);
  };
  InputGrads out;
  out.q = back_qk(in.q, grads.q);
  out.v = layout.unpack(grads.v).to(in.v.scalar_type());
  out.g = layout.unpack_gate(grads.g).to(in.g.scalar_type());
  if (in.p.defined()) {
    out.k = back_qk(in.k, grads.k);
    out.p = back_qk(in.p, grads.p);
  } else {  // p = k inside the operator (merged before the group sum, unlike the kernels')
    out.k = back_qk(in.k, grads.k + grads.p);
  }
  if (in.beta.defined()) out.beta = layout.unpack_gate(grads.beta).to(in.beta.scalar_type());
  if (in.initial_state.defined()) {
    out.initial_state = grads.initial_state.to(in.initial_state.scalar_type());
  }
  return out;
}

}  // namespace comba::detail
