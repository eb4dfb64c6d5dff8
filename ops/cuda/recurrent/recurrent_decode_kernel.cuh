// Decode step: one token per sequence (T = 1, dense, no checkpoints), the case of a
// generation loop. The same math as recurrent_fwd_kernel for one token,
//   u = v - S^T p^,  S' = exp(g) S + beta k^ u^T,  o = scale S'^T q^,
// without its staged segment: every warp computes the three l2 norms itself (K elements
// each, from L1) and reads its own rows of q, k, p, so the only barriers are the two
// cross-warp sums over K. The step is a stream of the fp32 state (read once, written
// once), so what matters is that nothing sits between the state loads and the stores.
// Grid: (ceil(V / (kLanes * Vec)), HV, N). Included by the per-dtype forward .cu files.
#pragma once
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows, int Vec>
__global__ void __launch_bounds__(RecurrentTraits::kThreads, 2)
    recurrent_decode_kernel(const __grid_constant__ RecurrentFwdParams params) {
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

  StateVec<Vec> state[Rows];
  const long long mat = (static_cast<long long>(n) * HV + hv) * K * V;
  load_slice(state, params.initial_state == nullptr ? nullptr : params.initial_state + mat, K, V,
             row0, col0, cols_ok);

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
  auto row = [&](const T* x, int i) { return row0 + i < K ? to_float(x[row0 + i]) : 0.f; };

  float dot_p[Vec];
  warp_rows_product(state, [&](int i) { return row(p, i); }, dot_p);
#pragma unroll
  for (int c = 0; c < Vec; ++c) pred_red[warp][my_col + c] = dot_p[c];
  const float inv_p = warp_inverse_norm(p, K, lane, params.use_l2norm);
  const float beta_k = beta * warp_inverse_norm(k, K, lane, params.use_l2norm);
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
    const float qi = row(q, i), ki = row(k, i);
#pragma unroll
    for (int c = 0; c < Vec; ++c) {
      state[i].x[c] = alpha * state[i].x[c] + ki * update[c];
      dot_q[c] += qi * state[i].x[c];
    }
  }
  if (params.final_state != nullptr) {
    store_slice(state, params.final_state + mat, K, V, row0, col0, cols_ok);
  }
#pragma unroll
  for (int c = 0; c < Vec; ++c) out_red[warp][my_col + c] = dot_q[c];
  const float out_scale = params.scale * warp_inverse_norm(q, K, lane, params.use_l2norm);
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

template <typename T, int Rows, int Vec>
int launch_recurrent_decode_typed(const RecurrentFwdParams& params, cudaStream_t stream) {
  constexpr int kColumns = RecurrentTraits::kLanes * Vec;
  const dim3 grid((params.value_dim + kColumns - 1) / kColumns, params.value_heads, params.num_seqs);
  recurrent_decode_kernel<T, Rows, Vec><<<grid, RecurrentTraits::kThreads, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

#define COMBA_INSTANTIATE_RECURRENT_DECODE_TILE(ROWS, VEC)                               \
  template int launch_recurrent_decode_typed<COMBA_ELEMENT, ROWS, VEC>(const RecurrentFwdParams&, \
                                                                      cudaStream_t);
#define COMBA_INSTANTIATE_RECURRENT_DECODE() COMBA_RECURRENT_TILES(COMBA_INSTANTIATE_RECURRENT_DECODE_TILE)

}  // namespace comba::cuda
