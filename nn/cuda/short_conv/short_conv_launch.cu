// Turns the runtime dtype and vector width into the compiled instantiation (one dispatch
// point), and runs the backward's second stage (the fixed-order weight-grad sum).
#include <cuda_runtime.h>

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
  switch (params.dtype) {
    case ElementType::kFloat32: return fwd<float>(params, vectorized, s);
    case ElementType::kFloat16: return fwd<__half>(params, vectorized, s);
    case ElementType::kBFloat16: return fwd<__nv_bfloat16>(params, vectorized, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int launch_short_conv_bwd(const ShortConvParams& params, bool vectorized, void* stream) {
  if (params.tokens == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  int err = static_cast<int>(cudaErrorInvalidValue);
  switch (params.dtype) {
    case ElementType::kFloat32: err = bwd<float>(params, vectorized, s); break;
    case ElementType::kFloat16: err = bwd<__half>(params, vectorized, s); break;
    case ElementType::kBFloat16: err = bwd<__nv_bfloat16>(params, vectorized, s); break;
  }
  if (err != 0) return err;
  return launch_column_sum(params.dw_partial, short_conv_blocks_for(params.tokens),
                           static_cast<int64_t>(ShortConvTraits::kMaxTaps + 1) * params.channels,
                           params.dw_total, stream);
}

}  // namespace comba::nn::cuda
