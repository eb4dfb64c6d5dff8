// Host launcher of the short-convolution kernels (nn/cuda/short_conv/).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

#include "../../cuda/short_conv/short_conv_params.h"
#include "../../cuda/short_conv/short_conv_traits.h"
#include "comba/core/cuda_launch.h"
#include "launch_utils.h"
#include "launchers.h"

namespace comba::nn::detail::cuda {

namespace kernels = comba::nn::cuda;
using kernels::ShortConvTraits;

bool short_conv_supported(const at::Tensor& x, int64_t taps) {
  const auto dt = x.scalar_type();
  return x.is_cuda() && (dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16) && taps >= 1 &&
         taps <= ShortConvTraits::kMaxTaps;
}

namespace {

kernels::ShortConvParams make_params(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     const at::Tensor& initial_state, const at::Tensor& cu_seqlens, bool silu) {
  kernels::ShortConvParams p;
  p.x = x.data_ptr();
  p.weight = weight.data_ptr<float>();
  p.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  p.initial_state = initial_state.defined() ? initial_state.data_ptr() : nullptr;
  p.cu_seqlens = cu_seqlens.defined() ? cu_seqlens.data_ptr<int64_t>() : nullptr;
  p.tokens = x.size(0) * x.size(1);
  p.seq_len = x.size(1);
  p.num_seqs = static_cast<int>(cu_seqlens.defined() ? cu_seqlens.size(0) - 1 : x.size(0));
  p.channels = static_cast<int>(x.size(2));
  p.taps = static_cast<int>(weight.size(1));
  p.silu = silu;
  p.dtype = core::element_type_of(x.scalar_type());
  return p;
}

// Kept for the dense/packed sequences with no tokens (only packed ones can be empty): the
// kernels never visit them, so their state passes through unchanged.
at::Tensor state_like(const at::Tensor& source, bool varlen, at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (!varlen) return at::empty(sizes, options);
  return source.defined() ? source.to(options.dtype().toScalarType()).clone() : at::zeros(sizes, options);
}

}  // namespace

ShortConvFwd short_conv_fwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& initial_state, const at::Tensor& cu_seqlens, bool silu) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto p = make_params(x, weight, bias, initial_state, cu_seqlens, silu);
  ShortConvFwd out;
  out.y = at::empty_like(x);
  out.final_state = state_like(initial_state, cu_seqlens.defined(), {p.num_seqs, p.channels, p.taps - 1}, x.options());
  p.y = out.y.data_ptr();
  p.final_state = out.final_state.data_ptr();
  const bool vectorized = p.channels % ShortConvTraits::kVec == 0 &&
                          aligned_for_vec(x, ShortConvTraits::kVec) && aligned_for_vec(out.y, ShortConvTraits::kVec);
  const int err = kernels::launch_short_conv_fwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream());
  core::check_launch(err, "short_convolution", "forward");
  return out;
}

ShortConvGrads short_conv_bwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& initial_state, const at::Tensor& cu_seqlens, bool silu,
                              const at::Tensor& dy, const at::Tensor& d_final_state,
                              bool want_initial_state_grad) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto p = make_params(x, weight, bias, initial_state, cu_seqlens, silu);
  constexpr int W = ShortConvTraits::kMaxTaps;
  const auto f32 = x.options().dtype(at::kFloat);
  ShortConvGrads grads;
  grads.x = at::empty_like(x);
  const auto partial = at::empty({kernels::short_conv_blocks_for(p.tokens), W + 1, p.channels}, f32);
  const auto total = at::empty({W + 1, p.channels}, f32);
  if (want_initial_state_grad) {
    grads.initial_state = state_like(d_final_state, cu_seqlens.defined(), {p.num_seqs, p.channels, p.taps - 1}, f32);
    p.d_initial_state = grads.initial_state.data_ptr<float>();
  }
  p.dy = dy.data_ptr();
  p.d_final_state = d_final_state.defined() ? d_final_state.data_ptr() : nullptr;
  p.dx = grads.x.data_ptr();
  p.dw_partial = partial.data_ptr<float>();
  p.dw_total = total.data_ptr<float>();
  const bool vectorized = p.channels % ShortConvTraits::kVec == 0 && aligned_for_vec(x, ShortConvTraits::kVec) &&
                          aligned_for_vec(dy, ShortConvTraits::kVec) &&
                          aligned_for_vec(grads.x, ShortConvTraits::kVec);
  const int err = kernels::launch_short_conv_bwd(p, vectorized, at::cuda::getCurrentCUDAStream().stream());
  core::check_launch(err, "short_convolution", "backward");
  // Window slot j holds weight j - (W - taps); the last row is the bias.
  grads.weight = total.slice(0, W - p.taps, W).t().contiguous();
  grads.bias = total[W];
  return grads;
}

}  // namespace comba::nn::detail::cuda
