// Turns the runtime dtype and vector width into the compiled instantiation (one dispatch
// point), and runs the backward's second stage (the fixed-order weight-grad sum).
#include <cuda_runtime.h>

#include "comba/core/cuda_element.cuh"
#include "../element.cuh"
#include "../reduce.h"
#include "short_conv_params.h"
#include "short_conv_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec>
int launch_short_conv_fwd_typed(const ShortConvParams& params, cudaStream_t stream);
template <typename T, int Vec>
int launch_short_conv_bwd_typed(const ShortConvParams& params, cudaStream_t stream);

namespace {
template <typename T>
int fwd(const ShortConvParams& params, bool vectorized, cudaStream_t stream) {
  return vectorized ? launch_short_conv_fwd_typed<T, ShortConvTraits::kVec>(params, stream)
                    : launch_short_conv_fwd_typed<T, 1>(params, stream);
}
template <typename T>
int bwd(const ShortConvParams& params, bool vectorized, cudaStream_t stream) {
  return vectorized ? launch_short_conv_bwd_typed<T, ShortConvTraits::kVec>(params, stream)
                    : launch_short_conv_bwd_typed<T, 1>(params, stream);
}
}  // namespace

int launch_short_conv_fwd(const ShortConvParams& params, bool vectorized, void* stream) {
  if (params.tokens == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    return fwd<decltype(tag)>(params, vectorized, s);
  });
}

int launch_short_conv_bwd(const ShortConvParams& params, bool vectorized, void* stream) {
  if (params.tokens == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  const int err = core::dispatch_element_type(params.dtype, [&](auto tag) {
    return bwd<decltype(tag)>(params, vectorized, s);
  });
  if (err != 0) return err;
  return launch_column_sum(params.dw_partial, short_conv_blocks_for(params.tokens),
                           static_cast<int64_t>(ShortConvTraits::kMaxTaps + 1) * params.channels,
                           params.dw_total, stream);
}

}  // namespace comba::nn::cuda
