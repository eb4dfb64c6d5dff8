// Decode step: one token per sequence (T = 1, dense, no checkpoints), the case of a
// generation loop. The same math as recurrent_fwd_kernel for one token,
//   u = v - S^T p^,  S' = exp(g) S + beta k^ u^T,  o = scale S'^T q^,
// without its staged segment: every warp computes the three l2 norms itself (K elements
// each, from L1), the q, k, p rows go to shared memory once, and the cross-warp sums over
// K take two more barriers. The step is a stream of the state (read once, written once, in
// vectors of Vec columns per lane: a warp touches whole 128- to 512-byte lines), so what
// matters is that nothing sits between the state loads and the stores. The state is fp32
// or bf16 in memory (S), fp32 in registers; it may be updated in place (state_in ==
// state_out): every thread reads all its entries before it writes any.
// The fp32 state is read and written with evict-first hints (Streaming, the default; it
// is touched once per step): B256 H16 in place 150.8 against 161.1 us on an H200, the
// same bits (bench_decode_kernel times both); with everything but the state read before
// it arrives, 145.0 us (a bare in-place stream of the same matrices, one per CTA: 137).
// Grid: (ceil(V / (kLanes * Vec)), HV, N). Included by the per-dtype recurrent_decode_*.cu.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "../common.cuh"
#include "recurrent_common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

// Vec adjacent state entries of a row in one access, from / to fp32 or bf16 memory; the
// fp32 ones evict-first (ld/st.global.cs) with Streaming, the bf16 ones always plain.
template <int Vec>
using StateAccess = std::conditional_t<Vec == 4, float4, std::conditional_t<Vec == 2, float2, float>>;

template <bool Streaming = false, int Vec>
__device__ __forceinline__ void load_state(StateVec<Vec>& dst, const float* src) {
  if constexpr (Streaming) {
    const auto value = __ldcs(reinterpret_cast<const StateAccess<Vec>*>(src));
    static_assert(sizeof(value) == sizeof(dst.x));
    memcpy(dst.x, &value, sizeof(value));
  } else {
    dst.load(src);
  }
}
template <bool Streaming = false, int Vec>
__device__ __forceinline__ void store_state(const StateVec<Vec>& src, float* dst) {
  if constexpr (Streaming) {
    StateAccess<Vec> value;
    memcpy(&value, src.x, sizeof(value));
    __stcs(reinterpret_cast<StateAccess<Vec>*>(dst), value);
  } else {
    src.store(dst);
  }
}

template <bool Streaming = false, int Vec>
__device__ __forceinline__ void load_state(StateVec<Vec>& dst, const __nv_bfloat16* src) {
  if constexpr (Vec == 1) {
    dst.x[0] = __bfloat162float(*src);
  } else if constexpr (Vec == 2) {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src));
    dst.x[0] = f.x, dst.x[1] = f.y;
  } else {
    static_assert(Vec == 4, "1, 2 or 4 columns per lane");
    const uint2 raw = *reinterpret_cast<const uint2*>(src);  // 8 bytes: four bf16
    const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
    dst.x[0] = lo.x, dst.x[1] = lo.y, dst.x[2] = hi.x, dst.x[3] = hi.y;
  }
}
template <bool Streaming = false, int Vec>
__device__ __forceinline__ void store_state(const StateVec<Vec>& src, __nv_bfloat16* dst) {
  if constexpr (Vec == 1) {
    *dst = __float2bfloat16_rn(src.x[0]);
  } else if constexpr (Vec == 2) {
    *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(src.x[0], src.x[1]);
  } else {
    const __nv_bfloat162 lo = __floats2bfloat162_rn(src.x[0], src.x[1]);
    const __nv_bfloat162 hi = __floats2bfloat162_rn(src.x[2], src.x[3]);
    uint2 raw;
    raw.x = *reinterpret_cast<const unsigned*>(&lo);
    raw.y = *reinterpret_cast<const unsigned*>(&hi);
    *reinterpret_cast<uint2*>(dst) = raw;
  }
}

// A Rows x Vec slice of one [K, V] state matrix (rows row0.., columns col0..), zeros where
// the source is null or the slice leaves the matrix (as load_slice / store_slice, for S).
template <int Rows, int Vec, bool Streaming = false, typename S>
__device__ __forceinline__ void load_state_slice(StateVec<Vec> (&dst)[Rows], const S* src, int K, int V,
                                                 int row0, int col0, bool cols_ok) {
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    if (src != nullptr && row0 + i < K && cols_ok) {
      load_state<Streaming>(dst[i], src + static_cast<long long>(row0 + i) * V + col0);
    } else {
#pragma unroll
      for (int c = 0; c < Vec; ++c) dst[i].x[c] = 0.f;
    }
  }
}

template <int Rows, int Vec, bool Streaming = false, typename S>
__device__ __forceinline__ void store_state_slice(const StateVec<Vec> (&src)[Rows], S* dst, int K, int V,
                                                  int row0, int col0, bool cols_ok) {
  if (!cols_ok) return;
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    if (row0 + i < K) store_state<Streaming>(src[i], dst + static_cast<long long>(row0 + i) * V + col0);
  }
}

template <typename T, typename S, int Rows, int Vec, bool Streaming>
__global__ void __launch_bounds__(RecurrentTraits::kThreads, 2)
    recurrent_decode_kernel(const __grid_constant__ RecurrentDecodeParams params) {
  constexpr int kWarps = RecurrentTraits::kWarps;
  constexpr int kColumns = RecurrentTraits::kLanes * Vec;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hv = blockIdx.y, n = blockIdx.z;  // n: the sequence, and its only token
  const int K = params.key_dim, V = params.value_dim, HV = params.value_heads;
  const int h = hv / (HV / params.heads);
  const int my_col = lane * Vec, col0 = blockIdx.x * kColumns + my_col;
  const bool cols_ok = col0 < V;
  const int row0 = warp * Rows;
  __shared__ float pred_red[kWarps][kColumns];  // partial S^T p over each warp's rows
  __shared__ float out_red[kWarps][kColumns];   // partial S'^T q
  __shared__ float qkp_rows[3][kWarps * Rows];  // q, k and p by row (zeros past K)

  // [Rows, Vec] slice of this (sequence, value head)'s [K, V] state; rows past K and
  // columns past V are zeros and never stored.
  const long long mat = (static_cast<long long>(n) * HV + hv) * K * V;
  StateVec<Vec> state[Rows];
  load_state_slice<Rows, Vec, Streaming>(
      state, params.state_in == nullptr ? nullptr : static_cast<const S*>(params.state_in) + mat, K, V, row0,
      col0, cols_ok);

  const long long qk_row = (static_cast<long long>(n) * params.heads + h) * K;
  const T* q = static_cast<const T*>(params.q) + qk_row;
  const T* k = static_cast<const T*>(params.k) + qk_row;
  const T* p = static_cast<const T*>(params.p) + qk_row;
  const long long gate = static_cast<long long>(n) * HV + hv;
  const float alpha = __expf(load_either<T>(params.g, gate, params.g_fp32));
  const float beta = params.beta != nullptr ? load_either<T>(params.beta, gate, params.beta_fp32) : 1.f;
  float v[Vec];
#pragma unroll
  for (int c = 0; c < Vec; ++c) {
    v[c] = cols_ok ? to_float(static_cast<const T*>(params.v)[gate * V + col0 + c]) : 0.f;
  }
  // Everything but the state now, while the state loads are in flight, so that a CTA's
  // life is one memory round trip: the norms (q's after the stores would be a load the
  // compiler may not move above them: in place, q may alias the state) and the q, k, p
  // rows, staged in shared memory behind a barrier that does not wait for the state.
  const float inv_p = warp_inverse_norm(p, K, lane, params.use_l2norm);
  const float beta_k = beta * warp_inverse_norm(k, K, lane, params.use_l2norm);
  const float out_scale = params.scale * warp_inverse_norm(q, K, lane, params.use_l2norm);
  static_assert(kWarps * Rows <= RecurrentTraits::kThreads, "a thread per staged row");
  if (threadIdx.x < kWarps * Rows) {
    const bool in_k = threadIdx.x < K;
    qkp_rows[0][threadIdx.x] = in_k ? to_float(q[threadIdx.x]) : 0.f;
    qkp_rows[1][threadIdx.x] = in_k ? to_float(k[threadIdx.x]) : 0.f;
    qkp_rows[2][threadIdx.x] = in_k ? to_float(p[threadIdx.x]) : 0.f;
  }
  __syncthreads();

  float dot_p[Vec];
  warp_rows_product(state, [&](int i) { return qkp_rows[2][row0 + i]; }, dot_p);
#pragma unroll
  for (int c = 0; c < Vec; ++c) pred_red[warp][my_col + c] = dot_p[c];
  __syncthreads();

  float update[Vec];  // beta u / ||k||
#pragma unroll
  for (int c = 0; c < Vec; ++c) {
    float pred = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) pred += pred_red[w][my_col + c];
    update[c] = beta_k * (v[c] - inv_p * pred);
  }
  float dot_q[Vec] = {};
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    const float qi = qkp_rows[0][row0 + i], ki = qkp_rows[1][row0 + i];
#pragma unroll
    for (int c = 0; c < Vec; ++c) {
      state[i].x[c] = alpha * state[i].x[c] + ki * update[c];
      dot_q[c] += qi * state[i].x[c];
    }
  }
  if (params.state_out != nullptr) {
    store_state_slice<Rows, Vec, Streaming>(state, static_cast<S*>(params.state_out) + mat, K, V, row0, col0,
                                            cols_ok);
  }
#pragma unroll
  for (int c = 0; c < Vec; ++c) out_red[warp][my_col + c] = dot_q[c];
  __syncthreads();
  if (warp != 0 || !cols_ok) return;
  T* o = static_cast<T*>(params.o) + gate * V + col0;
#pragma unroll
  for (int c = 0; c < Vec; ++c) {
    float out = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) out += out_red[w][my_col + c];
    o[c] = from_float<T>(out * out_scale);
  }
}

template <typename T, typename S, int Rows, int Vec, bool Streaming>
int launch_recurrent_decode_variant(const RecurrentDecodeParams& params, cudaStream_t stream) {
  constexpr int kColumns = RecurrentTraits::kLanes * Vec;
  const dim3 grid((params.value_dim + kColumns - 1) / kColumns, params.value_heads, params.num_seqs);
  recurrent_decode_kernel<T, S, Rows, Vec, Streaming><<<grid, RecurrentTraits::kThreads, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

// What comba_decode_step_ and the forward's T = 1 path run: the streaming variant.
template <typename T, typename S, int Rows, int Vec>
int launch_recurrent_decode_typed(const RecurrentDecodeParams& params, cudaStream_t stream) {
  return launch_recurrent_decode_variant<T, S, Rows, Vec, true>(params, stream);
}

// Instantiates the decode launcher for every tile and both state types, for the input
// dtype the including .cu file names COMBA_ELEMENT.
#define COMBA_INSTANTIATE_RECURRENT_DECODE_TILE(ROWS, VEC)                                          \
  template int launch_recurrent_decode_typed<COMBA_ELEMENT, float, ROWS, VEC>(                      \
      const RecurrentDecodeParams&, cudaStream_t);                                                  \
  template int launch_recurrent_decode_typed<COMBA_ELEMENT, __nv_bfloat16, ROWS, VEC>(              \
      const RecurrentDecodeParams&, cudaStream_t);
#define COMBA_INSTANTIATE_RECURRENT_DECODE() COMBA_RECURRENT_TILES(COMBA_INSTANTIATE_RECURRENT_DECODE_TILE)

}  // namespace comba::cuda
