// Host launcher of the cross-entropy row kernels (nn/cuda/cross_entropy/).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "../../cuda/cross_entropy/cross_entropy_params.h"
#include "../../cuda/cross_entropy/cross_entropy_traits.h"
#include "comba/core/cuda_launch.h"
#include "launch_utils.h"
#include "launchers.h"

namespace comba::nn::detail::cuda {

namespace kernels = comba::nn::cuda;

bool cross_entropy_rows_supported(const at::Tensor& logits) {
  const auto dt = logits.scalar_type();
  const bool dtype_ok = dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16;
  return logits.is_cuda() && dtype_ok && logits.dim() == 2 && logits.size(1) >= 1 &&
         logits.size(0) <= std::numeric_limits<int32_t>::max();
}

void cross_entropy_rows(const at::Tensor& logits, const at::Tensor& targets, int64_t ignore_index,
                        const at::Tensor& row_loss, bool grad) {
  TORCH_INTERNAL_ASSERT(logits.is_contiguous() && targets.is_contiguous() && row_loss.is_contiguous() &&
                            targets.scalar_type() == at::kLong && row_loss.scalar_type() == at::kFloat &&
                            targets.numel() == logits.size(0) && row_loss.numel() == logits.size(0),
                        "cross_entropy launcher: expected contiguous logits [rows, vocab], int64 targets [rows] "
                        "and fp32 row_loss [rows]");
  const c10::cuda::CUDAGuard guard(logits.device());
  kernels::CrossEntropyParams p;
  p.logits = logits.data_ptr();
  p.targets = targets.data_ptr<int64_t>();
  p.row_loss = row_loss.data_ptr<float>();
  p.rows = logits.size(0);
  p.vocab = logits.size(1);
  p.ignore_index = ignore_index;
  p.grad = grad;
  p.dtype = core::element_type_of(logits.scalar_type());
  const int64_t vec = kernels::CrossEntropyTraits::kVecBytes / logits.element_size();
  const bool vectorized = p.vocab % vec == 0 && aligned_for_vec(logits, vec);
  core::check_launch(kernels::launch_cross_entropy_rows(p, vectorized, at::cuda::getCurrentCUDAStream().stream()),
                     "linear_cross_entropy", "row kernel");
}

}  // namespace comba::nn::detail::cuda
