// Turns the runtime dtype and head dims into the compiled instantiation, forward and
// backward (one dispatch point; the tile choice itself lives in recurrent_traits.h).
#include <cuda_runtime.h>

#include <type_traits>

#include "../common.cuh"
#include "../dispatch.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows, int Vec>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream);
template <typename T, int Rows, int Vec>
int launch_recurrent_decode_typed(const RecurrentFwdParams& params, cudaStream_t stream);
template <typename T, int Rows, int Vec>
int launch_recurrent_bwd_typed(const RecurrentBwdParams& params, cudaStream_t stream);

namespace {
// Calls visit(integral_constant<Rows>, integral_constant<Vec>) for the compiled tile (the
// operator's dispatch idiom, ../dispatch.cuh, over the tile list of recurrent_traits.h).
template <typename Visit>
int visit_tile(RecurrentTile tile, Visit&& visit) {
  return dispatch_value<2, 4, 8, 16, 32>(tile.rows, [&](auto rows) {
    using Rows = decltype(rows);
    return dispatch_value<1, 2, 4>(tile.vec, [&](auto vec) {
      if constexpr (recurrent_tile_compiled(Rows::value, decltype(vec)::value)) {
        return visit(Rows{}, vec);
      } else {
        return kNotCompiled;
      }
    });
  });
}

// A dense single-token inference step (generation) takes the decode kernel: nothing to
// stage, no checkpoints.
bool is_decode_step(const RecurrentFwdParams& params) {
  return params.seq_len == 1 && params.cu_seqlens == nullptr && params.checkpoints == nullptr;
}

template <typename T>
int dispatch_fwd(const RecurrentFwdParams& params, cudaStream_t stream) {
  if (is_decode_step(params)) {
    const auto tile = recurrent_decode_tile(params.key_dim, params.value_dim,
                                            static_cast<long long>(params.num_seqs) * params.value_heads,
                                            current_device_sms());
    return visit_tile(tile, [&](auto rows, auto vec) {
      return launch_recurrent_decode_typed<T, decltype(rows)::value, decltype(vec)::value>(params, stream);
    });
  }
  return visit_tile(recurrent_tile(params.key_dim, params.value_dim), [&](auto rows, auto vec) {
    return launch_recurrent_fwd_typed<T, decltype(rows)::value, decltype(vec)::value>(params,
                                                                                     stream);
  });
}

template <typename T>
int dispatch_bwd(const RecurrentBwdParams& params, cudaStream_t stream) {
  return visit_tile(recurrent_bwd_tile(params.in.key_dim, params.in.value_dim),
                    [&](auto rows, auto vec) {
                      return launch_recurrent_bwd_typed<T, decltype(rows)::value,
                                                        decltype(vec)::value>(params, stream);
                    });
}
}  // namespace

int launch_recurrent_fwd(const RecurrentFwdParams& params, void* stream) {
  return dispatch_dtype<float, __half, __nv_bfloat16>(params.dtype, [&](auto tag) {
    return dispatch_fwd<decltype(tag)>(params, static_cast<cudaStream_t>(stream));
  });
}

int launch_recurrent_bwd(const RecurrentBwdParams& params, void* stream) {
  return dispatch_dtype<float, __half, __nv_bfloat16>(params.in.dtype, [&](auto tag) {
    return dispatch_bwd<decltype(tag)>(params, static_cast<cudaStream_t>(stream));
  });
}

RecurrentBwdShape recurrent_bwd_shape(int key_dim, int value_dim) {
  const RecurrentTile tile = recurrent_bwd_tile(key_dim, value_dim);
  const int columns = RecurrentTraits::kLanes * tile.vec;
  return {(value_dim + columns - 1) / columns,
          static_cast<int64_t>(kRecurrentSegment / kRecurrentSubSegment) * tile.rows *
              RecurrentTraits::kThreads * tile.vec};
}

}  // namespace comba::cuda
