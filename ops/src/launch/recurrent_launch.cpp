// Host side of the fused recurrent kernels:
//   forward:  one kernel (o, final state; in training also a state checkpoint every
//             kRecurrentSegment tokens);
//   backward: one kernel on those checkpoints (a backward without them runs the training
//             forward first), then the sum over column blocks here and the chunk form's
//             q/k/p epilogue (finish_chunk_grads: GVA group sum, l2norm backward, cast).
#include "recurrent_launch.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/recurrent/recurrent_params.h"
#include "../chunk_stages.h"
#include "comba/core/cuda_launch.h"
#include "kernel_inputs.h"

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

void recurrent_decode_step(const CombaProblem& pb, const CombaInputs& in, const at::Tensor& state,
                           const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(in.q.device());
  kc::RecurrentDecodeParams params;
  params.q = in.q.data_ptr();
  params.k = in.k.data_ptr();
  params.p = in.p.defined() ? in.p.data_ptr() : params.k;
  params.v = in.v.data_ptr();
  params.g = in.g.data_ptr();
  params.g_fp32 = in.g.scalar_type() == at::kFloat;
  params.beta = in.beta.defined() ? in.beta.data_ptr() : nullptr;
  params.beta_fp32 = in.beta.defined() && in.beta.scalar_type() == at::kFloat;
  bind_sizes(params, pb);
  params.state_in = state.data_ptr();
  params.state_out = state.data_ptr();
  params.state_bf16 = state.scalar_type() == at::kBFloat16;
  params.o = out.data_ptr();
  core::check_launch(kc::launch_recurrent_decode(params, at::cuda::getCurrentCUDAStream().stream()),
                     "comba_decode_step_", "decode step");
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

  // Column-block partials -> totals; per value head, before the l2norm backward.
  auto total = [&](const at::Tensor& x) { return blocks == 1 ? x[0] : x.sum(0); };
  ChunkGrads grads;
  grads.per_value_head = true;
  grads.l2norm_pending = pb.use_l2norm;
  grads.dq = total(dq);
  grads.dk = total(dk);
  grads.dp = total(dp);
  grads.dv = dv;
  grads.dg = total(dg);
  if (in.beta.defined()) grads.dbeta = total(dbeta);
  grads.d_initial = d_initial;
  return finish_chunk_grads(pb, in, grads);
}

}  // namespace comba::detail::cuda
