#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/recurrent/recurrent_params.h"
#include "launchers.h"

namespace comba::detail::cuda {

namespace {
comba::cuda::ElementType element_type(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return comba::cuda::ElementType::kFloat16;
    case at::kBFloat16: return comba::cuda::ElementType::kBFloat16;
    default: return comba::cuda::ElementType::kFloat32;
  }
}
}  // namespace

bool recurrent_fwd_supported(const CombaProblem& pb, const CombaInputs& in) {
  return in.q.is_cuda() && pb.dtype != at::kDouble &&
         pb.key_dim <= comba::cuda::kRecurrentMaxKeyDim;
}

CombaForward recurrent_fwd(const CombaProblem& pb, const CombaInputs& in) {
  const c10::cuda::CUDAGuard guard(in.q.device());
  const auto q = in.q.contiguous(), k = in.k.contiguous(), v = in.v.contiguous();
  const auto p = in.p.defined() ? in.p.contiguous() : k;
  const auto g = in.g.contiguous();
  const auto beta = in.beta.defined() ? in.beta.contiguous() : at::Tensor();
  const auto h0 = in.initial_state.defined() ? in.initial_state.contiguous() : at::Tensor();
  const auto cu = in.cu_seqlens.defined() ? in.cu_seqlens.to(q.device()).contiguous() : at::Tensor();

  CombaForward out;
  out.o = at::empty({pb.batch, pb.seq_len, pb.value_heads, pb.value_dim}, q.options());
  out.final_state = at::empty({pb.num_seqs, pb.value_heads, pb.key_dim, pb.value_dim},
                              q.options().dtype(at::kFloat));

  comba::cuda::RecurrentFwdParams params;
  params.q = q.data_ptr();
  params.k = k.data_ptr();
  params.p = p.data_ptr();
  params.v = v.data_ptr();
  params.g = g.data_ptr();
  params.g_fp32 = g.scalar_type() == at::kFloat;
  params.beta = beta.defined() ? beta.data_ptr() : nullptr;
  params.beta_fp32 = beta.defined() && beta.scalar_type() == at::kFloat;
  params.initial_state = h0.defined() ? h0.data_ptr<float>() : nullptr;
  params.cu_seqlens = cu.defined() ? cu.data_ptr<int64_t>() : nullptr;
  params.o = out.o.data_ptr();
  params.final_state = out.final_state.data_ptr<float>();
  params.dtype = element_type(pb.dtype);
  params.seq_len = pb.seq_len;
  params.heads = static_cast<int>(pb.heads);
  params.value_heads = static_cast<int>(pb.value_heads);
  params.key_dim = static_cast<int>(pb.key_dim);
  params.value_dim = static_cast<int>(pb.value_dim);
  params.num_seqs = static_cast<int>(pb.num_seqs);
  params.scale = static_cast<float>(pb.scale);
  params.use_l2norm = pb.use_l2norm;
  if (pb.num_seqs > 0) {
    const int err = comba::cuda::launch_recurrent_fwd(params, at::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == 0, "fused_recurrent_comba: CUDA kernel launch failed: ",
                cudaGetErrorString(static_cast<cudaError_t>(err)));
  }
  return out;
}

}  // namespace comba::detail::cuda
