// Host launcher of the Comba gate kernels (nn/cuda/comba_gates/).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/comba_gates/comba_gates_params.h"
#include "../../cuda/comba_gates/comba_gates_traits.h"
#include "comba/core/cuda_launch.h"
#include "launch_utils.h"
#include "launchers.h"

namespace comba::nn::detail::cuda {

namespace kernels = comba::nn::cuda;
using kernels::CombaGatesTraits;

bool comba_gates_supported(const at::Tensor& a, const at::Tensor& b) {
  const auto dt = a.scalar_type();
  const bool dtype_ok = dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16;
  return a.is_cuda() && b.is_cuda() && dtype_ok && b.scalar_type() == dt && a.dim() >= 1 && a.size(-1) >= 1 &&
         a.size(-1) <= CombaGatesTraits::kMaxHeads;
}

namespace {

kernels::CombaGatesParams make_params(const at::Tensor& a, const at::Tensor& b, const at::Tensor& A_log,
                                      const at::Tensor& dt_bias) {
  kernels::CombaGatesParams p;
  p.a = a.data_ptr();
  p.b = b.data_ptr();
  p.A_log = A_log.data_ptr<float>();
  p.dt_bias = dt_bias.data_ptr<float>();
  p.rows = a.size(0);
  p.heads = static_cast<int>(a.size(1));
  p.dtype = core::element_type_of(a.scalar_type());
  return p;
}

}  // namespace

CombaGatesFwd comba_gates_fwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& A_log,
                              const at::Tensor& dt_bias) {
  const c10::cuda::CUDAGuard guard(a.device());
  auto p = make_params(a, b, A_log, dt_bias);
  CombaGatesFwd out;
  const auto f32 = a.options().dtype(at::kFloat);
  out.g = at::empty({p.rows, p.heads}, f32);
  out.beta = at::empty({p.rows, p.heads}, f32);
  p.g = out.g.data_ptr<float>();
  p.beta = out.beta.data_ptr<float>();
  // Vectors run along the flat [rows * heads] order, so only the total must split.
  constexpr int64_t vec = CombaGatesTraits::kVec;
  const bool vectorized = (p.rows * p.heads) % vec == 0 && aligned_for_vec(a, vec) && aligned_for_vec(b, vec) &&
                          aligned_for_vec(out.g, vec) && aligned_for_vec(out.beta, vec);
  core::check_launch(kernels::launch_comba_gates_fwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream()),
                     "comba_gates", "forward");
  return out;
}

CombaGatesGrads comba_gates_bwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& A_log,
                                const at::Tensor& dt_bias, const at::Tensor& dg, const at::Tensor& dbeta) {
  const c10::cuda::CUDAGuard guard(a.device());
  auto p = make_params(a, b, A_log, dt_bias);
  const auto f32 = a.options().dtype(at::kFloat);
  CombaGatesGrads grads;
  grads.a = at::empty_like(a);
  grads.b = at::empty_like(b);
  if (p.rows == 0) {
    grads.A_log = at::zeros({p.heads}, f32);
    grads.dt_bias = at::zeros({p.heads}, f32);
    return grads;
  }
  const auto partial = at::empty({kernels::comba_gates_bwd_blocks(p.rows, p.heads), 2 * p.heads}, f32);
  const auto d_params = at::empty({2, p.heads}, f32);
  p.dg = dg.defined() ? dg.data_ptr<float>() : nullptr;
  p.dbeta = dbeta.defined() ? dbeta.data_ptr<float>() : nullptr;
  p.da = grads.a.data_ptr();
  p.db = grads.b.data_ptr();
  p.partial = partial.data_ptr<float>();
  p.d_params = d_params.data_ptr<float>();
  core::check_launch(kernels::launch_comba_gates_bwd(p, at::cuda::getCurrentCUDAStream().stream()), "comba_gates",
                     "backward");
  grads.A_log = d_params[0];
  grads.dt_bias = d_params[1];
  return grads;
}

}  // namespace comba::nn::detail::cuda
