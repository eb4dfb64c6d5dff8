// Turns the runtime dtype and vector width into the compiled instantiation (one dispatch
// point), and runs the backward's second stage (the fixed-order dD / ddecay sums).
#include <cuda_runtime.h>

#include "comba/core/cuda_element.cuh"
#include "../reduce.h"
#include "decay_correction_params.h"
#include "decay_correction_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec>
int launch_decay_correction_fwd_typed(const DecayCorrectionParams& params, cudaStream_t stream);
template <typename T, int Vec>
int launch_decay_correction_bwd_typed(const DecayCorrectionParams& params, cudaStream_t stream);

namespace {
template <typename T>
constexpr int kVecOf = DecayCorrectionTraits::kVecBytes / sizeof(T);
}  // namespace

int launch_decay_correction_fwd(const DecayCorrectionParams& params, bool vectorized, void* stream) {
  if (params.rows == 0 || params.heads == 0 || params.dim == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    return vectorized ? launch_decay_correction_fwd_typed<T, kVecOf<T>>(params, s)
                      : launch_decay_correction_fwd_typed<T, 1>(params, s);
  });
}

int launch_decay_correction_bwd(const DecayCorrectionParams& params, bool vectorized, void* stream) {
  if (params.rows == 0 || params.heads == 0 || params.dim == 0) return 0;  // the host launcher zeroes d_params
  const auto s = static_cast<cudaStream_t>(stream);
  int slots = 0;
  const int err = core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    slots = decay_correction_slots(params.heads, params.dim, vectorized ? kVecOf<T> : 1);
    if (slots > DecayCorrectionTraits::kMaxSlots) return static_cast<int>(cudaErrorInvalidValue);
    return vectorized ? launch_decay_correction_bwd_typed<T, kVecOf<T>>(params, s)
                      : launch_decay_correction_bwd_typed<T, 1>(params, s);
  });
  if (err != 0) return err;
  return launch_column_sum(params.partial, decay_correction_bwd_blocks(params.rows, slots), 2 * params.heads,
                           params.d_params, stream);
}

}  // namespace comba::nn::cuda
