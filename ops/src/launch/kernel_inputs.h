// The operator's tensors as every kernel family reads them, and the kernel parameters
// filled from them in one place (shared by the chunk and recurrent launchers; their
// parameter structs name the inputs and sizes alike).
#pragma once
#include <cstdint>

#include "../layout.h"
#include "comba/core/element_type_of.h"

namespace comba::detail::cuda {

// Contiguous fp32 (or undefined); no dispatcher call when it already is (decode steps
// are host bound).
inline at::Tensor as_float(const at::Tensor& t) {
  if (!t.defined()) return t;
  return t.scalar_type() == at::kFloat ? t.contiguous() : t.to(at::kFloat).contiguous();
}

// Contiguous and 16-byte aligned (a contiguous view can start mid-vector; the chunk
// kernels read tiles in 16-byte vectors).
inline at::Tensor tile_ready(const at::Tensor& x) {
  auto y = x.contiguous();
  return reinterpret_cast<uintptr_t>(y.data_ptr()) % 16 == 0 ? y : y.clone();
}

// The caller's inputs laid out as the kernels read them, dtypes and undefined inputs
// unchanged: a list of stages given these builds each stage's KernelInputs without a copy.
inline CombaInputs kernel_ready(const CombaInputs& in) {
  auto contiguous = [](const at::Tensor& t) { return t.defined() ? t.contiguous() : t; };
  CombaInputs out;  // by name: the struct's field order is q, k, v, p (not q, k, p, v)
  out.q = tile_ready(in.q);
  out.k = tile_ready(in.k);
  out.v = tile_ready(in.v);
  out.p = in.p.defined() ? tile_ready(in.p) : at::Tensor();
  out.g = in.g.contiguous();
  out.beta = contiguous(in.beta);
  out.initial_state = contiguous(in.initial_state);
  out.cu_seqlens = in.cu_seqlens;
  return out;
}

// q, k, p, v tile-ready (p = k when absent), gates contiguous, the initial state fp32,
// cu_seqlens on q's device.
struct KernelInputs {
  at::Tensor q, k, p, v, g, beta, h0, cu;

  explicit KernelInputs(const CombaInputs& in)
      : q(tile_ready(in.q)),
        k(tile_ready(in.k)),
        p(in.p.defined() ? tile_ready(in.p) : k),
        v(tile_ready(in.v)),
        g(in.g.contiguous()),
        beta(in.beta.defined() ? in.beta.contiguous() : at::Tensor()),
        h0(as_float(in.initial_state)),
        cu(in.cu_seqlens.defined() ? in.cu_seqlens.to(in.q.device()).contiguous() : at::Tensor()) {}

  // Into any kernel family's parameters (the same input field names in each).
  template <typename Params>
  void bind(Params& out) const {
    out.q = q.data_ptr();
    out.k = k.data_ptr();
    out.p = p.data_ptr();
    out.v = v.data_ptr();
    out.g = g.data_ptr();
    out.g_fp32 = g.scalar_type() == at::kFloat;
    out.beta = beta.defined() ? beta.data_ptr() : nullptr;
    out.beta_fp32 = beta.defined() && beta.scalar_type() == at::kFloat;
    out.initial_state = h0.defined() ? h0.data_ptr<float>() : nullptr;
    out.cu_seqlens = cu.defined() ? cu.data_ptr<int64_t>() : nullptr;
  }
};

// The problem's sizes into any kernel family's parameters (the same field names in each).
template <typename Params>
void bind_sizes(Params& out, const CombaProblem& pb) {
  out.dtype = core::element_type_of(pb.dtype);
  out.seq_len = pb.seq_len;
  out.heads = static_cast<int>(pb.heads);
  out.value_heads = static_cast<int>(pb.value_heads);
  out.key_dim = static_cast<int>(pb.key_dim);
  out.value_dim = static_cast<int>(pb.value_dim);
  out.num_seqs = static_cast<int>(pb.num_seqs);
  out.scale = static_cast<float>(pb.scale);
  out.use_l2norm = pb.use_l2norm;
}

}  // namespace comba::detail::cuda
