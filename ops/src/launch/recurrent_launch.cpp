// Host side of the fused recurrent kernels:
//   forward:  one kernel (o, final state; in training also a state checkpoint every
//             kRecurrentSegment tokens);
//   backward: one kernel on those checkpoints (a backward without them runs the training
//             forward first), then the sums over column blocks and GVA groups and the
//             l2norm backward in ATen.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/recurrent/recurrent_params.h"
#include "comba/core/cuda_launch.h"
#include "kernel_inputs.h"
#include "launchers.h"

namespace comba::detail::cuda {

namespace {

namespace kc = comba::cuda;

kc::RecurrentFwdParams input_params(const CombaProblem& pb, const KernelInputs& in) {
  kc::RecurrentFwdParams params;
  in.bind(params);
  bind_sizes(params, pb);
  return params;
}

}  // namespace

bool recurrent_supported(const CombaProblem& pb, const CombaInputs& in) {
  constexpr int64_t kMaxGridZ = 65535;  // sequences are the grid's z dimension
  return in.q.is_cuda() && pb.dtype != at::kDouble &&
         pb.key_dim <= comba::cuda::kRecurrentMaxKeyDim && pb.num_seqs <= kMaxGridZ;
}

CombaForward recurrent_fwd(const CombaProblem& pb, const CombaInputs& in, bool for_backward) {
  const c10::cuda::CUDAGuard guard(in.q.device());
  const KernelInputs c(in);
  CombaForward out;
  out.o = at::empty({pb.batch, pb.seq_len, pb.value_heads, pb.value_dim}, c.q.options());
  out.final_state = at::empty({pb.num_seqs, pb.value_heads, pb.key_dim, pb.value_dim},
                              c.q.options().dtype(at::kFloat));
  auto params = input_params(pb, c);
  params.o = out.o.data_ptr();
  params.final_state = out.final_state.data_ptr<float>();
  if (for_backward) {
    const auto slots = kc::recurrent_checkpoint_slots(pb.batch * pb.seq_len, pb.num_seqs);
    auto checkpoints = at::empty({slots, pb.value_heads, pb.key_dim, pb.value_dim},
                                 c.q.options().dtype(at::kFloat));
    params.checkpoints = checkpoints.data_ptr<float>();
    out.saved = {checkpoints};
  }
  if (pb.num_seqs > 0) {
    core::check_launch(kc::launch_recurrent_fwd(params, at::cuda::getCurrentCUDAStream().stream()),
                       "fused_recurrent_comba", "forward");
  }
  return out;
}

InputGrads recurrent_bwd(const CombaProblem& pb, const CombaInputs& in, const at::Tensor& grad_o,
                         const at::Tensor& grad_final, std::vector<at::Tensor> saved) {
  if (saved.size() != 1) {  // not after a training forward: run one now for its checkpoints
    return recurrent_bwd(pb, in, grad_o, grad_final, recurrent_fwd(pb, in, true).saved);
  }
  const c10::cuda::CUDAGuard guard(in.q.device());
  const KernelInputs c(in);
  const auto f32 = c.q.options().dtype(at::kFloat);
  const int64_t B = pb.batch, T = pb.seq_len, HV = pb.value_heads, K = pb.key_dim,
                V = pb.value_dim;
  const auto shape = kc::recurrent_bwd_shape(static_cast<int>(K), static_cast<int>(V));
  const int64_t blocks = shape.column_blocks;

  const auto d_o = grad_o.to(pb.dtype).contiguous();
  const auto d_final = as_float(grad_final);
  auto scratch = at::empty({pb.num_seqs * HV * blocks * shape.scratch_floats_per_cta}, f32);
  auto dq = at::empty({blocks, B, T, HV, K}, f32), dk = at::empty({blocks, B, T, HV, K}, f32),
       dp = at::empty({blocks, B, T, HV, K}, f32);
  auto dg = at::empty({blocks, B, T, HV}, f32), dbeta = at::empty({blocks, B, T, HV}, f32);
  auto dv = at::empty({B, T, HV, V}, c.q.options());
  auto d_initial = at::empty({pb.num_seqs, HV, K, V}, f32);

  kc::RecurrentBwdParams params;
  params.in = input_params(pb, c);
  params.checkpoints = saved[0].data_ptr<float>();
  params.grad_o = d_o.data_ptr();
  params.grad_final = d_final.defined() ? d_final.data_ptr<float>() : nullptr;
  params.scratch = scratch.data_ptr<float>();
  params.dq = dq.data_ptr<float>();
  params.dk = dk.data_ptr<float>();
  params.dp = dp.data_ptr<float>();
  params.dg = dg.data_ptr<float>();
  params.dbeta = dbeta.data_ptr<float>();
  params.dv = dv.data_ptr();
  params.grad_initial = d_initial.data_ptr<float>();
  params.tokens = B * T;
  if (pb.num_seqs > 0) {
    core::check_launch(kc::launch_recurrent_bwd(params, at::cuda::getCurrentCUDAStream().stream()),
                       "fused_recurrent_comba", "backward");
  } else {
    for (auto* t : {&dq, &dk, &dp, &dg, &dbeta, &dv}) t->zero_();
  }

  // Column-block partials -> per query/key head (GVA) -> through the l2norm.
  auto total = [&](const at::Tensor& x) { return blocks == 1 ? x[0] : x.sum(0); };
  auto per_head = [&](const at::Tensor& x) {
    auto y = total(x);
    return pb.group() == 1 ? y : y.view({B, T, pb.heads, pb.group(), K}).sum(3);
  };
  auto through_norm = [&](const at::Tensor& x, const at::Tensor& d) {
    return (pb.use_l2norm ? l2norm_bwd(x.to(at::kFloat), d) : d).to(pb.dtype);
  };
  InputGrads out;
  out.q = through_norm(c.q, per_head(dq));
  if (in.p.defined()) {
    out.k = through_norm(c.k, per_head(dk));
    out.p = through_norm(c.p, per_head(dp));
  } else {  // p = k inside the operator: one normalised vector, two uses
    out.k = through_norm(c.k, per_head(dk) + per_head(dp));
  }
  out.v = dv;
  out.g = total(dg).to(in.g.scalar_type());
  if (in.beta.defined()) out.beta = total(dbeta).to(in.beta.scalar_type());
  if (in.initial_state.defined()) out.initial_state = d_initial.to(in.initial_state.scalar_type());
  return out;
}

}  // namespace comba::detail::cuda
