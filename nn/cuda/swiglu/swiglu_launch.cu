// Turns the runtime dtype and vector width into the compiled instantiation (one dispatch
// point).
#include <cuda_runtime.h>

#include "comba/core/cuda_element.cuh"
#include "swiglu_params.h"
#include "swiglu_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec>
int launch_swiglu_fwd_typed(const SwiGLUParams& params, cudaStream_t stream);
template <typename T, int Vec>
int launch_swiglu_bwd_typed(const SwiGLUParams& params, cudaStream_t stream);

namespace {
template <typename T>
constexpr int kVecOf = SwiGLUTraits::kVecBytes / sizeof(T);
}  // namespace

int launch_swiglu_fwd(const SwiGLUParams& params, bool vectorized, void* stream) {
  if (params.rows == 0 || params.dim == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    return vectorized ? launch_swiglu_fwd_typed<T, kVecOf<T>>(params, s) : launch_swiglu_fwd_typed<T, 1>(params, s);
  });
}

int launch_swiglu_bwd(const SwiGLUParams& params, bool vectorized, void* stream) {
  if (params.rows == 0 || params.dim == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    return vectorized ? launch_swiglu_bwd_typed<T, kVecOf<T>>(params, s) : launch_swiglu_bwd_typed<T, 1>(params, s);
  });
}

}  // namespace comba::nn::cuda
