// Fused recurrent forward: per token, u = v - S^T p, S = exp(g) S + beta k u^T,
// o = scale S^T q (q, k, p l2-normalised when asked: the norms scale the reductions),
// the fp32 state kept in registers across the whole sequence. Inputs are
// staged in shared memory a segment of kRecurrentSegment tokens at a time (SegmentSmem),
// so the serial per-token loop waits on no global load; one barrier per token (o of
// token t is summed across warps at token t + 1's barrier). A training forward also
// stores the state entering every segment for the backward.
// Grid: (ceil(V / (kLanes * Vec)), HV, N). Included by the per-dtype .cu files only.
#pragma once
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows, int Vec>
__global__ void __launch_bounds__(RecurrentTraits::kThreads, 2)
    recurrent_fwd_kernel(const __grid_constant__ RecurrentFwdParams params) {
  using Tr = RecurrentTraits;
  constexpr int kWarps = Tr::kWarps;
  constexpr int kColumns = Tr::kLanes * Vec;
  constexpr int kL = kRecurrentSegment;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int hv = blockIdx.y;
  const int n = blockIdx.z;
  const int K = params.key_dim, V = params.value_dim, HV = params.value_heads;
  const int h = hv / (HV / params.heads);
  const int col_base = blockIdx.x * kColumns;
  const int col0 = col_base + lane * Vec;  // first of this lane's columns
  const int my_col = lane * Vec;
  const bool cols_ok = col0 < V;  // V % Vec == 0, so all Vec columns or none
  const int row0 = warp * Rows;   // this warp's slab of state rows
  const SequenceSpan span(params, n);

  extern __shared__ float dynamic_smem[];
  SegmentSmem seg(dynamic_smem, K, kColumns);
  // Cross-warp partial sums, double-buffered by token parity: S^T p and S^T q.
  __shared__ float pred_red[2][kWarps][kColumns];
  __shared__ float out_red[2][kWarps][kColumns];

  StateVec<Vec> state[Rows];
  const long long mat = (static_cast<long long>(n) * HV + hv) * K * V;
  load_slice(state, params.initial_state == nullptr ? nullptr : params.initial_state + mat, K, V,
             row0, col0, cols_ok);
  T* o = static_cast<T*>(params.o);
  auto row_of = [&](const float* x, int s, int i) {
    return row0 + i < K ? x[s * K + row0 + i] : 0.f;
  };
  // Warp 0 writes o of a token whose S^T q partials are complete in out_red[buf].
  auto write_output = [&](int buf, long long token, float out_scale) {
    if (warp != 0 || !cols_ok) return;
#pragma unroll
    for (int c = 0; c < Vec; ++c) {
      float out = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) out += out_red[buf][w][my_col + c];
      o[(token * HV + hv) * V + col0 + c] = from_float<T>(out * out_scale);
    }
  };

  int round = 0;
  for (long long first = span.bos; first < span.bos + span.len; first += kL) {
    const int steps = static_cast<int>(min(static_cast<long long>(kL), span.bos + span.len - first));
    if (params.checkpoints != nullptr) {
      const long long slot = span.first_slot(n) + (first - span.bos) / kL;
      store_slice(state, params.checkpoints + (slot * HV + hv) * K * V, K, V, row0, col0, cols_ok);
    }
    seg.stage<T, kColumns, kWarps>(params, nullptr, first, steps, h, hv, col_base);
    for (int s = 0; s < steps; ++s, ++round) {
      const int buf = round & 1;
      float dot_p[Vec];
#pragma unroll
      for (int c = 0; c < Vec; ++c) dot_p[c] = 0.f;
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        const float pi = row_of(seg.p, s, i);
#pragma unroll
        for (int c = 0; c < Vec; ++c) dot_p[c] += pi * state[i].x[c];
      }
#pragma unroll
      for (int c = 0; c < Vec; ++c) pred_red[buf][warp][my_col + c] = dot_p[c];
      __syncthreads();
      if (s > 0) write_output(buf ^ 1, first + s - 1, params.scale * seg.inv_q[s - 1]);
      const float alpha = seg.alpha[s], beta_k = seg.beta[s] * seg.inv_k[s], inv_p = seg.inv_p[s];
      float update[Vec];  // beta u / ||k||
#pragma unroll
      for (int c = 0; c < Vec; ++c) {
        float pred = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) pred += pred_red[buf][w][my_col + c];
        update[c] = beta_k * (seg.v[s * kColumns + my_col + c] - inv_p * pred);
      }
      float dot_q[Vec];
#pragma unroll
      for (int c = 0; c < Vec; ++c) dot_q[c] = 0.f;
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        const float qi = row_of(seg.q, s, i), ki = row_of(seg.k, s, i);
#pragma unroll
        for (int c = 0; c < Vec; ++c) {
          state[i].x[c] = alpha * state[i].x[c] + ki * update[c];
          dot_q[c] += qi * state[i].x[c];
        }
      }
#pragma unroll
      for (int c = 0; c < Vec; ++c) out_red[buf][warp][my_col + c] = dot_q[c];
    }
    __syncthreads();  // the segment's last S^T q partials; seg free for restaging
    write_output((round - 1) & 1, first + steps - 1, params.scale * seg.inv_q[steps - 1]);
  }

  if (params.final_state != nullptr) {
    store_slice(state, params.final_state + mat, K, V, row0, col0, cols_ok);
  }
}

template <typename T, int Rows, int Vec>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream) {
  return launch_segment_kernel<recurrent_fwd_kernel<T, Rows, Vec>, Rows, Vec>(params, params, stream);
}

// Instantiates the forward launcher for every tile, for the dtype the including .cu file
// names COMBA_ELEMENT.
#define COMBA_INSTANTIATE_RECURRENT_FWD_TILE(ROWS, VEC)                          \
  template int launch_recurrent_fwd_typed<COMBA_ELEMENT, ROWS, VEC>(const RecurrentFwdParams&, \
                                                                   cudaStream_t);
#define COMBA_INSTANTIATE_RECURRENT_FWD() COMBA_RECURRENT_TILES(COMBA_INSTANTIATE_RECURRENT_FWD_TILE)

}  // namespace comba::cuda
