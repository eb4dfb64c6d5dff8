// Host launcher of the SwiGLU kernels (nn/cuda/swiglu/).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/swiglu/swiglu_params.h"
#include "../../cuda/swiglu/swiglu_traits.h"
#include "comba/core/cuda_launch.h"
#include "launch_utils.h"
#include "launchers.h"

namespace comba::nn::detail::cuda {

namespace kernels = comba::nn::cuda;
using kernels::SwiGLUTraits;

bool swiglu_supported(const at::Tensor& a, const at::Tensor& b) {
  const auto dt = a.scalar_type();
  const bool dtype_ok = dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16;
  return a.is_cuda() && b.is_cuda() && dtype_ok && b.scalar_type() == dt && a.dim() >= 1 && a.size(-1) >= 1;
}

namespace {

kernels::SwiGLUParams make_params(const at::Tensor& a, const at::Tensor& b) {
  TORCH_INTERNAL_ASSERT(a.dim() == 2 && a.sizes() == b.sizes() && a.stride(1) == 1 && b.stride(1) == 1,
                        "swiglu launcher: expected [rows, dim] operands with unit column stride");
  kernels::SwiGLUParams p;
  p.a = a.data_ptr();
  p.b = b.data_ptr();
  p.rows = a.size(0);
  p.dim = a.size(1);
  p.a_stride = a.stride(0);
  p.b_stride = b.stride(0);
  p.dtype = core::element_type_of(a.scalar_type());
  return p;
}

// The vectorised kernels move 16 bytes per access: dim and every row stride must split
// into such vectors and every start be aligned.
bool vectorizable(const kernels::SwiGLUParams& p, std::initializer_list<const at::Tensor*> tensors,
                  int64_t element_size) {
  const int64_t vec = SwiGLUTraits::kVecBytes / element_size;
  if (p.dim % vec != 0) return false;
  for (const auto* t : tensors) {
    if (t->stride(0) % vec != 0 || !aligned_for_vec(*t, vec)) return false;
  }
  return true;
}

}  // namespace

at::Tensor swiglu_fwd(const at::Tensor& a, const at::Tensor& b) {
  const c10::cuda::CUDAGuard guard(a.device());
  auto p = make_params(a, b);
  auto y = at::empty({p.rows, p.dim}, a.options());
  p.y = y.data_ptr();
  const bool vectorized = vectorizable(p, {&a, &b, &y}, a.element_size());
  core::check_launch(kernels::launch_swiglu_fwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream()), "swiglu",
                     "forward");
  return y;
}

void swiglu_bwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& dy, const at::Tensor& da,
                const at::Tensor& db, const at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(a.device());
  auto p = make_params(a, b);
  TORCH_INTERNAL_ASSERT(dy.is_contiguous() && dy.sizes() == a.sizes() && da.sizes() == a.sizes() &&
                            db.sizes() == a.sizes() && da.stride(1) == 1 && db.stride(1) == 1,
                        "swiglu launcher: expected dy [rows, dim] contiguous and da, db [rows, dim]");
  p.dy = dy.data_ptr();
  p.da = da.data_ptr();
  p.db = db.data_ptr();
  p.da_stride = da.stride(0);
  p.db_stride = db.stride(0);
  if (y.defined()) {
    TORCH_INTERNAL_ASSERT(y.is_contiguous() && y.sizes() == a.sizes(), "swiglu launcher: expected y [rows, dim]");
    p.y = y.data_ptr();
  }
  const bool vectorized = vectorizable(p, {&a, &b, &dy, &da, &db, y.defined() ? &y : &dy}, a.element_size());
  core::check_launch(kernels::launch_swiglu_bwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream()), "swiglu",
                     "backward");
}

}  // namespace comba::nn::detail::cuda
