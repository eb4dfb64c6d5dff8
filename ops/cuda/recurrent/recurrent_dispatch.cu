// Turns the runtime dtype and head dims into the compiled instantiation, forward and
// backward (one dispatch point; the tile choice itself lives in recurrent_traits.h).
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows, int Vec>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream);
template <typename T, int Rows, int Vec>
int launch_recurrent_bwd_typed(const RecurrentBwdParams& params, cudaStream_t stream);

namespace {
constexpr int kBadTile = static_cast<int>(cudaErrorInvalidValue);

template <typename T>
int dispatch_fwd(const RecurrentFwdParams& params, cudaStream_t stream) {
  const RecurrentTile tile = recurrent_tile(params.key_dim, params.value_dim);
  const auto& P = params;
  switch (tile.vec * 100 + tile.rows) {
    case 102: return launch_recurrent_fwd_typed<T, 2, 1>(P, stream);
    case 104: return launch_recurrent_fwd_typed<T, 4, 1>(P, stream);
    case 108: return launch_recurrent_fwd_typed<T, 8, 1>(P, stream);
    case 116: return launch_recurrent_fwd_typed<T, 16, 1>(P, stream);
    case 132: return launch_recurrent_fwd_typed<T, 32, 1>(P, stream);
    case 402: return launch_recurrent_fwd_typed<T, 2, 4>(P, stream);
    case 404: return launch_recurrent_fwd_typed<T, 4, 4>(P, stream);
    case 408: return launch_recurrent_fwd_typed<T, 8, 4>(P, stream);
    case 416: return launch_recurrent_fwd_typed<T, 16, 4>(P, stream);
    default: return kBadTile;
  }
}

template <typename T>
int dispatch_bwd(const RecurrentBwdParams& params, cudaStream_t stream) {
  const RecurrentTile tile = recurrent_bwd_tile(params.in.key_dim, params.in.value_dim);
  const auto& P = params;
  switch (tile.vec * 100 + tile.rows) {
    case 102: return launch_recurrent_bwd_typed<T, 2, 1>(P, stream);
    case 104: return launch_recurrent_bwd_typed<T, 4, 1>(P, stream);
    case 108: return launch_recurrent_bwd_typed<T, 8, 1>(P, stream);
    case 116: return launch_recurrent_bwd_typed<T, 16, 1>(P, stream);
    case 132: return launch_recurrent_bwd_typed<T, 32, 1>(P, stream);
    case 216: return launch_recurrent_bwd_typed<T, 16, 2>(P, stream);
    case 402: return launch_recurrent_bwd_typed<T, 2, 4>(P, stream);
    case 404: return launch_recurrent_bwd_typed<T, 4, 4>(P, stream);
    case 408: return launch_recurrent_bwd_typed<T, 8, 4>(P, stream);
    default: return kBadTile;
  }
}
}  // namespace

int launch_recurrent_fwd(const RecurrentFwdParams& params, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (params.dtype) {
    case ElementType::kFloat32: return dispatch_fwd<float>(params, s);
    case ElementType::kFloat16: return dispatch_fwd<__half>(params, s);
    case ElementType::kBFloat16: return dispatch_fwd<__nv_bfloat16>(params, s);
  }
  return kBadTile;
}

int launch_recurrent_bwd(const RecurrentBwdParams& params, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (params.in.dtype) {
    case ElementType::kFloat32: return dispatch_bwd<float>(params, s);
    case ElementType::kFloat16: return dispatch_bwd<__half>(params, s);
    case ElementType::kBFloat16: return dispatch_bwd<__nv_bfloat16>(params, s);
  }
  return kBadTile;
}

RecurrentBwdShape recurrent_bwd_shape(int key_dim, int value_dim) {
  const RecurrentTile tile = recurrent_bwd_tile(key_dim, value_dim);
  const int columns = 32 * tile.vec;
  return {(value_dim + columns - 1) / columns,
          static_cast<int64_t>(kRecurrentSegment / kRecurrentSubSegment) * tile.rows *
              RecurrentTraits::kThreads * tile.vec};
}

}  // namespace comba::cuda
