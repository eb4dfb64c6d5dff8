// Turns the runtime dtype and vector width into the compiled instantiation (one dispatch
// point), and runs the backward's second stage (the fixed-order weight-grad sum).
#include <cuda_runtime.h>

#include "comba/core/cuda_element.cuh"
#include "../element.cuh"
#include "../reduce.h"
#include "rms_norm_params.h"
#include "rms_norm_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec>
int launch_rms_norm_fwd_typed(const RMSNormParams& params, cudaStream_t stream);
template <typename T, int Vec>
int launch_rms_norm_bwd_typed(const RMSNormParams& params, cudaStream_t stream);

namespace {
template <typename T>
constexpr int kVecOf = RMSNormTraits::kVecBytes / sizeof(T);

template <typename T>
int fwd(const RMSNormParams& params, bool vectorized, cudaStream_t stream) {
  return vectorized ? launch_rms_norm_fwd_typed<T, kVecOf<T>>(params, stream)
                    : launch_rms_norm_fwd_typed<T, 1>(params, stream);
}
template <typename T>
int bwd(const RMSNormParams& params, bool vectorized, cudaStream_t stream) {
  return vectorized ? launch_rms_norm_bwd_typed<T, kVecOf<T>>(params, stream)
                    : launch_rms_norm_bwd_typed<T, 1>(params, stream);
}
}  // namespace

int launch_rms_norm_fwd(const RMSNormParams& params, bool vectorized, void* stream) {
  if (params.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    return fwd<decltype(tag)>(params, vectorized, s);
  });
}

int launch_rms_norm_bwd(const RMSNormParams& params, bool vectorized, void* stream) {
  if (params.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  const int err = core::dispatch_element_type(params.dtype, [&](auto tag) {
    return bwd<decltype(tag)>(params, vectorized, s);
  });
  if (err != 0) return err;
  return launch_column_sum(params.dw_partial, rms_norm_bwd_blocks(params.rows), params.dim, params.dw, stream);
}

}  // namespace comba::nn::cuda
