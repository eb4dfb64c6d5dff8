// Turns the runtime dtype and head dims into the compiled instantiation (one dispatch
// point; the tile choice itself lives in recurrent_traits.h).
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows, int Vec>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream);

namespace {
template <typename T, int Vec>
int dispatch_rows(const RecurrentFwdParams& params, int rows, cudaStream_t stream) {
  switch (rows) {
    case 2: return launch_recurrent_fwd_typed<T, 2, Vec>(params, stream);
    case 4: return launch_recurrent_fwd_typed<T, 4, Vec>(params, stream);
    case 8: return launch_recurrent_fwd_typed<T, 8, Vec>(params, stream);
    case 16: return launch_recurrent_fwd_typed<T, 16, Vec>(params, stream);
    case 32:
      if constexpr (Vec == 1) return launch_recurrent_fwd_typed<T, 32, 1>(params, stream);
      [[fallthrough]];
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
}

template <typename T>
int dispatch_tile(const RecurrentFwdParams& params, cudaStream_t stream) {
  const RecurrentTile tile = recurrent_tile(params.key_dim, params.value_dim);
  return tile.vec == 4 ? dispatch_rows<T, 4>(params, tile.rows, stream)
                       : dispatch_rows<T, 1>(params, tile.rows, stream);
}
}  // namespace

int launch_recurrent_fwd(const RecurrentFwdParams& params, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (params.dtype) {
    case ElementType::kFloat32: return dispatch_tile<float>(params, s);
    case ElementType::kFloat16: return dispatch_tile<__half>(params, s);
    case ElementType::kBFloat16: return dispatch_tile<__nv_bfloat16>(params, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace comba::cuda
