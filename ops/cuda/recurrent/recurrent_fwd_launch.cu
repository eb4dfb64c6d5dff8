// Turns the runtime dtype and key dim into the compiled instantiation (one dispatch point).
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream);

namespace {
template <typename T>
int dispatch_rows(const RecurrentFwdParams& params, cudaStream_t stream) {
  switch (recurrent_rows_per_thread(params.key_dim)) {
    case 2: return launch_recurrent_fwd_typed<T, 2>(params, stream);
    case 4: return launch_recurrent_fwd_typed<T, 4>(params, stream);
    case 8: return launch_recurrent_fwd_typed<T, 8>(params, stream);
    case 16: return launch_recurrent_fwd_typed<T, 16>(params, stream);
    case 32: return launch_recurrent_fwd_typed<T, 32>(params, stream);
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
}
}  // namespace

int launch_recurrent_fwd(const RecurrentFwdParams& params, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (params.dtype) {
    case ElementType::kFloat32: return dispatch_rows<float>(params, s);
    case ElementType::kFloat16: return dispatch_rows<__half>(params, s);
    case ElementType::kBFloat16: return dispatch_rows<__nv_bfloat16>(params, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace comba::cuda
