// Turns the runtime dtype and head dims into the compiled instantiation, forward and
// backward (one dispatch point; the tile choice itself lives in recurrent_traits.h).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "../common.cuh"
#include "../dispatch.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows, int Vec>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream);
template <typename T, typename S, int Rows, int Vec>
int launch_recurrent_decode_typed(const RecurrentDecodeParams& params, cudaStream_t stream);
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

// The most columns per lane (4, 2 or 1) whose vector accesses the state buffers' addresses
// allow: a lane's Vec entries are one access of Vec * element bytes.
int state_vec_limit(const RecurrentDecodeParams& params) {
  const unsigned element = params.state_bf16 ? 2u : 4u;
  auto aligned = [&](int vec) {
    const auto bytes = static_cast<uintptr_t>(vec) * element;
    return reinterpret_cast<uintptr_t>(params.state_in) % bytes == 0 &&
           reinterpret_cast<uintptr_t>(params.state_out) % bytes == 0;
  };
  return aligned(4) ? 4 : aligned(2) ? 2 : 1;
}

template <typename T>
int dispatch_decode(const RecurrentDecodeParams& params, cudaStream_t stream) {
  const auto tile = recurrent_decode_tile(params.key_dim, params.value_dim,
                                          static_cast<long long>(params.num_seqs) * params.value_heads,
                                          current_device_sms(), state_vec_limit(params));
  return visit_tile(tile, [&](auto rows, auto vec) {
    constexpr int kRows = decltype(rows)::value, kVec = decltype(vec)::value;
    return params.state_bf16
               ? launch_recurrent_decode_typed<T, __nv_bfloat16, kRows, kVec>(params, stream)
               : launch_recurrent_decode_typed<T, float, kRows, kVec>(params, stream);
  });
}

// The fused recurrent forward of one dense token: the decode kernel, fp32 state from
// initial_state (or zeros) to final_state (or nowhere).
RecurrentDecodeParams decode_params(const RecurrentFwdParams& params) {
  RecurrentDecodeParams out;
  static_cast<CombaKernelInputs&>(out) = params;
  out.initial_state = nullptr;
  out.state_in = params.initial_state;
  out.state_out = params.final_state;
  out.o = params.o;
  return out;
}

template <typename T>
int dispatch_fwd(const RecurrentFwdParams& params, cudaStream_t stream) {
  if (is_decode_step(params)) return dispatch_decode<T>(decode_params(params), stream);
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

int launch_recurrent_decode(const RecurrentDecodeParams& params, void* stream) {
  return dispatch_dtype<float, __half, __nv_bfloat16>(params.dtype, [&](auto tag) {
    return dispatch_decode<decltype(tag)>(params, static_cast<cudaStream_t>(stream));
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
