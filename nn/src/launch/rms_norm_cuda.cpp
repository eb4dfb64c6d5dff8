// Host launcher of the RMSNorm kernels (nn/cuda/rms_norm/).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/rms_norm/rms_norm_params.h"
#include "../../cuda/rms_norm/rms_norm_traits.h"
#include "comba/core/cuda_launch.h"
#include "launch_utils.h"
#include "launchers.h"

namespace comba::nn::detail::cuda {

namespace kernels = comba::nn::cuda;
using kernels::RMSNormTraits;

bool rms_norm_supported(const at::Tensor& x, const at::Tensor& gate) {
  const auto dt = x.scalar_type();
  const bool dtype_ok = dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16;
  const bool gate_ok = !gate.defined() || gate.scalar_type() == dt || gate.scalar_type() == at::kFloat;
  return x.is_cuda() && dtype_ok && gate_ok && x.dim() >= 1 && x.size(-1) >= 1 &&
         x.size(-1) <= RMSNormTraits::kMaxDim;
}

namespace {

kernels::RMSNormParams make_params(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& gate) {
  kernels::RMSNormParams p;
  p.x = x.data_ptr();
  p.weight = weight.data_ptr<float>();
  p.gate = gate.defined() ? gate.data_ptr() : nullptr;
  p.gate_fp32 = gate.defined() && gate.scalar_type() == at::kFloat;
  p.rows = x.size(0);
  p.dim = static_cast<int>(x.size(1));
  p.dtype = core::element_type_of(x.scalar_type());
  return p;
}

// The vectorised kernels read 16 bytes of x per access (and as many elements of the
// weight and gate): dim must split into such vectors and every tensor start aligned.
bool vectorizable(const kernels::RMSNormParams& p, std::initializer_list<const at::Tensor*> tensors,
                  int64_t element_size) {
  const int64_t vec = RMSNormTraits::kVecBytes / element_size;
  if (p.dim % vec != 0) return false;
  for (const auto* t : tensors) {
    if (t->defined() && !aligned_for_vec(*t, vec)) return false;
  }
  return true;
}

}  // namespace

RMSNormFwd rms_norm_fwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& gate, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto p = make_params(x, weight, gate);
  p.eps = static_cast<float>(eps);
  RMSNormFwd out;
  out.y = at::empty_like(x);
  out.rstd = at::empty({p.rows}, x.options().dtype(at::kFloat));
  p.y = out.y.data_ptr();
  p.rstd = out.rstd.data_ptr<float>();
  const bool vectorized = vectorizable(p, {&x, &weight, &gate, &out.y}, x.element_size());
  core::check_launch(kernels::launch_rms_norm_fwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream()),
                     "rms_norm", "forward");
  return out;
}

RMSNormGrads rms_norm_bwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& gate,
                          const at::Tensor& rstd, const at::Tensor& dy, bool recompute_output) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto p = make_params(x, weight, gate);
  const auto f32 = x.options().dtype(at::kFloat);
  RMSNormGrads grads;
  grads.x = at::empty_like(x);
  if (gate.defined()) grads.gate = at::empty_like(gate);
  if (recompute_output) grads.y = at::empty_like(x);
  if (p.rows == 0) {
    grads.weight = at::zeros({p.dim}, f32);
    return grads;
  }
  const bool vectorized =
      vectorizable(p, {&x, &weight, &gate, &dy, &grads.x, &grads.gate, &grads.y}, x.element_size());
  const auto partial = at::empty({kernels::rms_norm_bwd_partial_rows(p, vectorized), p.dim}, f32);
  grads.weight = at::empty({p.dim}, f32);
  p.rstd = rstd.data_ptr<float>();
  p.dy = dy.data_ptr();
  p.dx = grads.x.data_ptr();
  p.d_gate = gate.defined() ? grads.gate.data_ptr() : nullptr;
  p.dw_partial = partial.data_ptr<float>();
  p.dw = grads.weight.data_ptr<float>();
  p.y = recompute_output ? grads.y.data_ptr() : nullptr;
  core::check_launch(kernels::launch_rms_norm_bwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream()),
                     "rms_norm", "backward");
  return grads;
}

}  // namespace comba::nn::detail::cuda
