// comba_decode_step_ (comba/ops/decode_step.h): the boundary checks, which read only
// metadata (a CUDA graph may capture the call), then the decode kernel in place or, where
// it does not apply, the step composed of ATen ops.
#include "comba/ops/decode_step.h"

#include <ATen/core/grad_mode.h>

#include <array>
#include <cmath>
#include <utility>

#include "comba/core/checks.h"
#include "layout.h"
#ifdef COMBA_WITH_CUDA
#include "launch/recurrent_launch.h"
#endif

namespace comba {

namespace {

constexpr const char* kFn = "comba_decode_step_";

// Caller-owned buffers are written through their data pointers and the kernel reads the
// inputs at dense offsets, so no stride other than the contiguous one is accepted (a copy
// would be an allocation, and the state's copy would not be the caller's).
void require_contiguous(const core::ArgChecker& check, const at::Tensor& t, const char* name) {
  check.require(t.is_contiguous(), "argument `", name, "` must be contiguous (",
                "the step reads and writes it in place, without copies), got strides ", t.strides(),
                " for shape ", t.sizes());
}

detail::CombaProblem validate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& p, const at::Tensor& g, const at::Tensor& beta,
                              const at::Tensor& state, const at::Tensor& out,
                              const DecodeStepOptions& options) {
  const core::ArgChecker check(kFn);
  check.rank(q, "q", 4, "[B, 1, H, K]").floating(q, "q");
  check.require(q.size(1) == 1, "argument `q` expected one token per sequence [B, 1, H, K], got shape ",
                q.sizes());
  check.shape(k, "k", q.sizes(), "[B, 1, H, K] like q");
  if (p.defined()) check.shape(p, "p", q.sizes(), "[B, 1, H, K] like q");
  check.rank(v, "v", 4, "[B, 1, HV, V]");

  detail::CombaProblem pb;
  pb.batch = pb.num_seqs = q.size(0);
  pb.seq_len = 1;
  pb.heads = q.size(2);
  pb.key_dim = q.size(3);
  pb.value_heads = v.size(2);
  pb.value_dim = v.size(3);
  pb.dtype = q.scalar_type();
  pb.state_dtype = state.defined() ? state.scalar_type() : at::kFloat;
  pb.scale = options.scale().value_or(1.0 / std::sqrt(static_cast<double>(pb.key_dim)));
  pb.use_l2norm = options.use_qk_l2norm_in_kernel();

  check.require(v.size(0) == pb.batch && v.size(1) == 1, "argument `v` expected shape [B, 1, HV, V] with B = ",
                pb.batch, " from q, got ", v.sizes());
  check.require(pb.heads > 0 && pb.key_dim > 0 && pb.value_heads > 0 && pb.value_dim > 0,
                "head counts and head dims must be positive, got q ", q.sizes(), " and v ", v.sizes());
  check.require(pb.value_heads % pb.heads == 0, "argument `v` has HV = ", pb.value_heads,
                " value heads, expected a multiple of H = ", pb.heads, " (q/k heads)");
  check.dtype_in(k, "k", {pb.dtype}).dtype_in(v, "v", {pb.dtype});
  if (p.defined()) check.dtype_in(p, "p", {pb.dtype});

  const std::array<int64_t, 3> gate_shape{pb.batch, 1, pb.value_heads};
  check.shape(g, "g", gate_shape, "[B, 1, HV]").dtype_in(g, "g", {pb.dtype, at::kFloat});
  if (beta.defined()) check.shape(beta, "beta", gate_shape, "[B, 1, HV]").dtype_in(beta, "beta", {pb.dtype, at::kFloat});
  check.shape(state, "state", {pb.batch, pb.value_heads, pb.key_dim, pb.value_dim}, "[B, HV, K, V]");
  if (pb.dtype == at::kDouble) {
    check.dtype_in(state, "state", {at::kDouble});
  } else {
    check.dtype_in(state, "state", {at::kFloat, at::kBFloat16});
  }
  check.shape(out, "out", {pb.batch, 1, pb.value_heads, pb.value_dim}, "[B, 1, HV, V]");
  check.dtype_in(out, "out", {pb.dtype});

  const auto device = q.device();
  check.device(k, "k", device, "q").device(v, "v", device, "q").device(g, "g", device, "q");
  if (p.defined()) check.device(p, "p", device, "q");
  if (beta.defined()) check.device(beta, "beta", device, "q");
  check.device(state, "state", device, "q").device(out, "out", device, "q");

  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&p, "p"}, {&g, "g"},
                                {&beta, "beta"}, {&state, "state"}, {&out, "out"}}) {
    if (t->defined()) require_contiguous(check, *t, name);
  }
  if (at::GradMode::is_enabled()) {
    for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&p, "p"}, {&g, "g"},
                                  {&beta, "beta"}, {&state, "state"}}) {
      check.require(!t->defined() || !t->requires_grad(), "argument `", name,
                    "` requires grad, but the step is not differentiable (an inference step): use "
                    "fused_recurrent_comba, or run it under torch::NoGradGuard");
    }
  }
  check.require(std::isfinite(pb.scale), "argument `scale` must be finite, got ", pb.scale);
  return pb;
}

// The step in ATen ops, in fp32 (fp64 for fp64 inputs), then written into the caller's
// state and out.
void decode_step_aten(const detail::CombaProblem& pb, const detail::CombaInputs& in,
                      const at::Tensor& state, const at::Tensor& out) {
  const at::NoGradGuard no_grad;
  const auto compute = pb.dtype == at::kDouble ? at::kDouble : at::kFloat;
  auto vec = [&](const at::Tensor& x) {  // [B, 1, X, D] -> [B, X, D]
    return x.select(1, 0).to(compute);
  };
  auto qk = [&](const at::Tensor& x) {  // l2norm, then each q/k head over its value heads
    auto y = vec(x);
    if (pb.use_l2norm) y = detail::l2norm_fwd(y);
    return pb.group() > 1 ? y.repeat_interleave(pb.group(), 1) : y;  // [B, HV, K]
  };
  const auto q = qk(in.q), k = qk(in.k), p = in.p.defined() ? qk(in.p) : k;
  const auto v = vec(in.v);                               // [B, HV, V]
  const auto alpha = in.g.select(1, 0).to(compute).exp();  // [B, HV]
  const auto beta = in.beta.defined() ? in.beta.select(1, 0).to(compute) : at::ones_like(alpha);
  const auto s = state.to(compute);  // [B, HV, K, V]; the caller's tensor when fp32 / fp64
  const auto update = beta.unsqueeze(-1) * (v - (s * p.unsqueeze(-1)).sum(2));  // [B, HV, V]
  const auto s_new = alpha.unsqueeze(-1).unsqueeze(-1) * s + k.unsqueeze(-1) * update.unsqueeze(2);
  const auto o = (s_new * q.unsqueeze(-1)).sum(2) * pb.scale;  // [B, HV, V]
  state.copy_(s_new);
  out.select(1, 0).copy_(o);
}

#ifdef COMBA_WITH_CUDA
bool kernel_takes(const detail::CombaProblem& pb, const at::Tensor& q, const at::Tensor& state) {
  detail::CombaInputs in;
  in.q = q;
  return state.scalar_type() != at::kDouble && detail::cuda::recurrent_supported(pb, in);
}
#endif

}  // namespace

void comba_decode_step_(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const c10::optional<at::Tensor>& p, const at::Tensor& g,
                        const c10::optional<at::Tensor>& beta, const at::Tensor& state,
                        const at::Tensor& out, const DecodeStepOptions& options) {
  detail::CombaInputs in;
  in.q = q, in.k = k, in.v = v, in.g = g;
  in.p = p.value_or(at::Tensor());
  in.beta = beta.value_or(at::Tensor());
  const auto pb = validate(q, k, v, in.p, g, in.beta, state, out, options);
  if (pb.batch == 0) return;
#ifdef COMBA_WITH_CUDA
  if (kernel_takes(pb, q, state)) {
    detail::cuda::recurrent_decode_step(pb, in, state, out);
    return;
  }
#endif
  decode_step_aten(pb, in, state, out);
}

}  // namespace comba
