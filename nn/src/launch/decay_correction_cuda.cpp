// Host launcher of the inner-decay / output-correction kernels (nn/cuda/decay_correction/).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/decay_correction/decay_correction_params.h"
#include "../../cuda/decay_correction/decay_correction_traits.h"
#include "comba/core/cuda_launch.h"
#include "launch_utils.h"
#include "launchers.h"

namespace comba::nn::detail::cuda {

namespace kernels = comba::nn::cuda;
using kernels::DecayCorrectionTraits;

namespace {

int64_t vec_of(const at::Tensor& t) { return DecayCorrectionTraits::kVecBytes / t.element_size(); }

// 16-byte accesses: dim splits into vectors and every tensor start is aligned.
bool vectorizable(const at::Tensor& like, std::initializer_list<const at::Tensor*> tensors) {
  const int64_t vec = vec_of(like);
  if (like.size(2) % vec != 0) return false;
  for (const auto* t : tensors) {
    if (t->defined() && !aligned_for_vec(*t, vec)) return false;
  }
  return true;
}

// The backward's vector width for rows of `dim`: 16 bytes when dim splits into them (the
// launcher then makes every operand aligned), else one element. decay_correction_supported
// counts the backward's slots at this width.
int64_t bwd_vec(const at::Tensor& k, int64_t dim) { return dim % vec_of(k) == 0 ? vec_of(k) : 1; }

kernels::DecayCorrectionParams make_params(const at::Tensor& q, const at::Tensor& k, const at::Tensor& decay,
                                           const at::Tensor& D) {
  TORCH_INTERNAL_ASSERT(k.dim() == 3 && k.is_contiguous() && (!q.defined() || q.sizes() == k.sizes()),
                        "decay_correction launcher: expected [rows, heads, dim] contiguous operands");
  kernels::DecayCorrectionParams p;
  p.q = q.defined() ? q.data_ptr() : nullptr;
  p.k = k.data_ptr();
  p.decay = decay.data_ptr<float>();
  p.D = D.data_ptr<float>();
  p.rows = k.size(0);
  p.heads = static_cast<int>(k.size(1));
  p.dim = static_cast<int>(k.size(2));
  p.dtype = core::element_type_of(k.scalar_type());
  return p;
}

}  // namespace

bool decay_correction_supported(const at::Tensor& q, const at::Tensor& k) {
  const auto dt = k.scalar_type();
  const bool dtype_ok = dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16;
  if (!q.is_cuda() || !k.is_cuda() || !dtype_ok || q.scalar_type() != dt || k.dim() < 2 || k.numel() == 0) {
    return false;
  }
  const int64_t heads = k.size(-2), dim = k.size(-1);
  return kernels::decay_correction_slots(heads, dim, static_cast<int>(bwd_vec(k, dim))) <=
         DecayCorrectionTraits::kMaxSlots;
}

DecayCorrectionFwd decay_correction_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& decay,
                                        const at::Tensor& D) {
  const c10::cuda::CUDAGuard guard(k.device());
  auto p = make_params(q, k, decay, D);
  DecayCorrectionFwd out;
  out.q = at::empty_like(k);
  out.p = at::empty_like(k);
  p.q_out = out.q.data_ptr();
  p.p_out = out.p.data_ptr();
  const bool vectorized = vectorizable(k, {&q, &k, &out.q, &out.p});
  core::check_launch(kernels::launch_decay_correction_fwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream()),
                     "decay_correction", "forward");
  return out;
}

DecayCorrectionGrads decay_correction_bwd(const at::Tensor& k_in, const at::Tensor& decay, const at::Tensor& D,
                                          const at::Tensor& dq_in, const at::Tensor& dp_in) {
  const c10::cuda::CUDAGuard guard(k_in.device());
  // A misaligned operand is copied to an aligned one rather than run scalar: the scalar
  // form would need more slots per row than the supported check counted.
  const int64_t vec = bwd_vec(k_in, k_in.size(2));
  const auto aligned = [vec](const at::Tensor& t) {
    return t.defined() && vec > 1 && !aligned_for_vec(t, vec) ? t.clone() : t;
  };
  const auto k = aligned(k_in), dq = aligned(dq_in), dp = aligned(dp_in);
  auto p = make_params(at::Tensor(), k, decay, D);
  const auto f32 = k.options().dtype(at::kFloat);
  DecayCorrectionGrads grads;
  grads.k = at::empty_like(k);
  if (p.rows == 0) {
    grads.D = at::zeros({p.heads}, f32);
    grads.decay = at::zeros({p.heads}, f32);
    return grads;
  }
  const bool vectorized = vec > 1;
  const int slots = kernels::decay_correction_slots(p.heads, p.dim, static_cast<int>(vec));
  const auto partial = at::empty({kernels::decay_correction_bwd_blocks(p.rows, slots), 2 * p.heads}, f32);
  const auto d_params = at::empty({2, p.heads}, f32);
  p.dq = dq.defined() ? dq.data_ptr() : nullptr;
  p.dp = dp.defined() ? dp.data_ptr() : nullptr;
  p.dk = grads.k.data_ptr();
  p.partial = partial.data_ptr<float>();
  p.d_params = d_params.data_ptr<float>();
  core::check_launch(kernels::launch_decay_correction_bwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream()),
                     "decay_correction", "backward");
  grads.D = d_params[0];
  grads.decay = d_params[1];
  return grads;
}

}  // namespace comba::nn::detail::cuda
