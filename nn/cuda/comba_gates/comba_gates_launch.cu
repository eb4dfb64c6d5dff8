// Turns the runtime dtype and vector width into the compiled instantiation (one dispatch
// point), and runs the backward's second stage (the fixed-order dA_log / ddt_bias sums).
#include <cuda_runtime.h>

#include "comba/core/cuda_element.cuh"
#include "../reduce.h"
#include "comba_gates_params.h"
#include "comba_gates_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec>
int launch_comba_gates_fwd_typed(const CombaGatesParams& params, cudaStream_t stream);
template <typename T>
int launch_comba_gates_bwd_typed(const CombaGatesParams& params, cudaStream_t stream);

int launch_comba_gates_fwd(const CombaGatesParams& params, bool vectorized, void* stream) {
  if (params.rows == 0 || params.heads == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    return vectorized ? launch_comba_gates_fwd_typed<T, CombaGatesTraits::kVec>(params, s)
                      : launch_comba_gates_fwd_typed<T, 1>(params, s);
  });
}

int launch_comba_gates_bwd(const CombaGatesParams& params, void* stream) {
  if (params.rows == 0 || params.heads == 0) return 0;  // the host launcher zeroes d_params
  if (params.heads > CombaGatesTraits::kMaxHeads) return static_cast<int>(cudaErrorInvalidValue);
  const int err = core::dispatch_element_type(params.dtype, [&](auto tag) {
    return launch_comba_gates_bwd_typed<decltype(tag)>(params, static_cast<cudaStream_t>(stream));
  });
  if (err != 0) return err;
  return launch_column_sum(params.partial, comba_gates_bwd_blocks(params.rows, params.heads), 2 * params.heads,
                           params.d_params, stream);
}

}  // namespace comba::nn::cuda
