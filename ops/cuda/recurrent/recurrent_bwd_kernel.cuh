// Fused recurrent backward. A CTA owns a block of state columns of one (sequence, value
// head) and walks the sequence's segments of kRecurrentSegment tokens from last to first.
// Per segment, after staging its inputs in shared memory (SegmentSmem):
//   1. from the checkpoint the training forward stored, recompute the segment's states;
//      keep u_t in shared memory and the state entering every kRecurrentSubSegment tokens
//      in this CTA's scratch (global, read back by the same thread), and write
//      dq_t = scale S_t do_t, the one gradient that needs S_t;
//   2. walk the segment backward with dS in registers, S_{t-1} recomputed from its
//      sub-segment's first state and the stored u (no barrier, no memory traffic):
//        dS += scale q_t do_t^T;   du = beta dS^T k;   dv = du;   dk = beta dS u;
//        dbeta = k^T dS u;   dp = -S_{t-1} du;   dg = alpha <dS, S_{t-1}>;
//        dS <- alpha dS - p du^T.
// dg is alpha times <dS, S_{t-1}> taken directly, never a difference of larger terms, so
// strong decay cannot cancel it away. Everything is summed in a fixed order (no atomics).
// Grid: (column blocks, HV, N). Included by the per-dtype .cu files only.
#pragma once
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows, int Vec>
__global__ void __launch_bounds__(RecurrentTraits::kThreads)
    recurrent_bwd_kernel(const __grid_constant__ RecurrentBwdParams params) {
  using Tr = RecurrentTraits;
  constexpr int kWarps = Tr::kWarps;
  constexpr int kColumns = Tr::kLanes * Vec;
  constexpr int kL = kRecurrentSegment;
  constexpr int kLanesPerRow = Tr::kLanes / Rows;  // lanes holding one row after a reduce-scatter
  constexpr int kSub = kRecurrentSubSegment;
  const RecurrentFwdParams& in = params.in;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int hv = blockIdx.y;
  const int n = blockIdx.z;
  const int K = in.key_dim, V = in.value_dim, HV = in.value_heads;
  const int h = hv / (HV / in.heads);
  const int col_base = blockIdx.x * kColumns;
  const int col0 = col_base + lane * Vec;
  const int my_col = lane * Vec;  // this lane's first column inside the block
  const bool cols_ok = col0 < V;
  const int row0 = warp * Rows;
  const int my_row = row0 + lane / kLanesPerRow;  // the row this lane holds after a scatter
  const bool writes_row = lane % kLanesPerRow == 0 && my_row < K;
  const SequenceSpan span(in, n);

  extern __shared__ float dynamic_smem[];
  SegmentSmem seg(dynamic_smem, K, kColumns);
  __shared__ float red[2][kWarps][kColumns];  // cross-warp sums, one barrier per token
  __shared__ float seg_u[kL][kColumns];       // u_t of the segment's tokens
  __shared__ float seg_sum[kL][kWarps][2];    // per-warp <dS, S_{t-1}> and k^T dS u

  const long long mat = (static_cast<long long>(n) * HV + hv) * K * V;
  StateVec<Vec> S[Rows], D[Rows], first_state[Rows];
  load_slice(D, params.grad_final == nullptr ? nullptr : params.grad_final + mat, K, V, row0,
             col0, cols_ok);
  const long long cta = (static_cast<long long>(n) * HV + hv) * gridDim.x + blockIdx.x;
  StateVec<Vec>* scratch =
      reinterpret_cast<StateVec<Vec>*>(params.scratch) + cta * (kL / kSub) * Rows * Tr::kThreads;
  T* dv = static_cast<T*>(params.dv);
  const long long part = static_cast<long long>(blockIdx.x) * params.tokens;
  // Row i of a staged [kL][K] vector (zero past K: rows are padded to 8 * Rows).
  auto row_of = [&](const float* x, int s, int i) {
    return row0 + i < K ? x[s * K + row0 + i] : 0.f;
  };

  int round = 0;
  const int segments = static_cast<int>((span.len + kL - 1) / kL);
  for (int sg = segments - 1; sg >= 0; --sg) {
    const long long first = span.bos + static_cast<long long>(sg) * kL;
    const int steps = static_cast<int>(min(static_cast<long long>(kL), span.len - sg * kL));
    const long long slot = span.first_slot(n) + sg;
    load_slice(S, params.checkpoints + (slot * HV + hv) * K * V, K, V, row0, col0, cols_ok);
    seg.stage<T, kColumns, kWarps>(in, params.grad_o, first, steps, h, hv, col_base);

    // 1. Forward through the segment.
    for (int s = 0; s < steps; ++s, ++round) {
      if (s % kSub == 0) {
#pragma unroll
        for (int i = 0; i < Rows; ++i) {
          scratch[(s / kSub * Rows + i) * Tr::kThreads + threadIdx.x] = S[i];
        }
      }
      float dot_p[Vec];
      warp_rows_product(S, [&](int i) { return row_of(seg.p, s, i); }, dot_p);
#pragma unroll
      for (int c = 0; c < Vec; ++c) red[round & 1][warp][my_col + c] = dot_p[c];
      __syncthreads();
      const float alpha = seg.alpha[s], beta_k = seg.beta[s] * seg.inv_k[s];
      const float inv_p = seg.inv_p[s];
      float u[Vec], grad_out[Vec];
#pragma unroll
      for (int c = 0; c < Vec; ++c) {
        float pred = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) pred += red[round & 1][w][my_col + c];
        u[c] = seg.v[s * kColumns + my_col + c] - inv_p * pred;
        grad_out[c] = seg.d_o[s * kColumns + my_col + c];
        if (warp == 0) seg_u[s][my_col + c] = u[c];
      }
      float s_do[Rows];
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        const float kb = beta_k * row_of(seg.k, s, i);
        s_do[i] = 0.f;
#pragma unroll
        for (int c = 0; c < Vec; ++c) {
          S[i].x[c] = alpha * S[i].x[c] + kb * u[c];
          s_do[i] += S[i].x[c] * grad_out[c];
        }
      }
      const float dq = warp_reduce_scatter<Rows>(s_do, lane);
      if (writes_row) params.dq[((part + first + s) * HV + hv) * K + my_row] = in.scale * dq;
    }
    __syncthreads();  // seg_u complete

    // 2. Backward through the segment, a sub-segment of kSub tokens at a time: S_{t-1}
    //    is recomputed from the sub-segment's first state with the stored u (no barrier).
    for (int s = steps - 1; s >= 0; --s, ++round) {
      if (s == steps - 1 || s % kSub == kSub - 1) {
#pragma unroll
        for (int i = 0; i < Rows; ++i) {
          first_state[i] = scratch[(s / kSub * Rows + i) * Tr::kThreads + threadIdx.x];
        }
      }
#pragma unroll
      for (int i = 0; i < Rows; ++i) S[i] = first_state[i];
      for (int j = s - s % kSub; j < s; ++j) {
        const float alpha_j = seg.alpha[j], beta_k_j = seg.beta[j] * seg.inv_k[j];
#pragma unroll
        for (int i = 0; i < Rows; ++i) {
          const float kb = beta_k_j * row_of(seg.k, j, i);
#pragma unroll
          for (int c = 0; c < Vec; ++c) {
            S[i].x[c] = alpha_j * S[i].x[c] + kb * seg_u[j][my_col + c];
          }
        }
      }
      const float alpha = seg.alpha[s], beta = seg.beta[s];
      const float inv_k = seg.inv_k[s], inv_p = seg.inv_p[s];
      const float q_scale = in.scale * seg.inv_q[s];
      float u[Vec], grad_out[Vec], dot_k[Vec];
#pragma unroll
      for (int c = 0; c < Vec; ++c) {
        u[c] = seg_u[s][my_col + c];
        grad_out[c] = seg.d_o[s * kColumns + my_col + c];
        dot_k[c] = 0.f;
      }
      // dS += scale q do^T, and the partial sums of dS^T k.
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        const float qi = q_scale * row_of(seg.q, s, i), ki = row_of(seg.k, s, i);
#pragma unroll
        for (int c = 0; c < Vec; ++c) {
          D[i].x[c] += qi * grad_out[c];
          dot_k[c] += D[i].x[c] * ki;
        }
      }
#pragma unroll
      for (int c = 0; c < Vec; ++c) red[round & 1][warp][my_col + c] = dot_k[c];
      __syncthreads();
      const long long token = first + s;
      float du[Vec];
#pragma unroll
      for (int c = 0; c < Vec; ++c) {
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) sum += red[round & 1][w][my_col + c];
        du[c] = beta * inv_k * sum;
        if (warp == 0 && cols_ok) dv[(token * HV + hv) * V + col0 + c] = from_float<T>(du[c]);
      }
      // dk = beta dS u and k^T dS u.
      float row_sums[Rows];
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        row_sums[i] = 0.f;
#pragma unroll
        for (int c = 0; c < Vec; ++c) row_sums[i] += D[i].x[c] * u[c];
      }
      const float ds_u = warp_reduce_scatter<Rows>(row_sums, lane);
      const long long out = ((part + token) * HV + hv) * K + my_row;
      float k_ds_u = 0.f;
      if (writes_row) {
        params.dk[out] = beta * ds_u;
        k_ds_u = inv_k * seg.k[s * K + my_row] * ds_u;
      }
      // dp = -S_{t-1} du and <dS, S_{t-1}>.
      float ds_s = 0.f;
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        row_sums[i] = 0.f;
#pragma unroll
        for (int c = 0; c < Vec; ++c) {
          row_sums[i] += S[i].x[c] * du[c];
          ds_s += D[i].x[c] * S[i].x[c];
        }
      }
      const float s_du = warp_reduce_scatter<Rows>(row_sums, lane);
      if (writes_row) params.dp[out] = -s_du;
      ds_s = warp_sum(ds_s);
      k_ds_u = warp_sum(k_ds_u);
      if (lane == 0) {
        seg_sum[s][warp][0] = ds_s;
        seg_sum[s][warp][1] = k_ds_u;
      }
      // dS <- alpha dS - p du^T.
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        const float pi = inv_p * row_of(seg.p, s, i);
#pragma unroll
        for (int c = 0; c < Vec; ++c) D[i].x[c] = alpha * D[i].x[c] - pi * du[c];
      }
    }
    __syncthreads();  // seg_sum complete
    if (threadIdx.x < steps) {
      const int s = threadIdx.x;
      float ds_s = 0.f, k_ds_u = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        ds_s += seg_sum[s][w][0];
        k_ds_u += seg_sum[s][w][1];
      }
      const long long gate = (part + first + s) * HV + hv;
      params.dg[gate] = seg.alpha[s] * ds_s;
      params.dbeta[gate] = k_ds_u;
    }
    __syncthreads();  // the next segment restages seg
  }

  if (params.grad_initial != nullptr) {
    store_slice(D, params.grad_initial + mat, K, V, row0, col0, cols_ok);
  }
}

template <typename T, int Rows, int Vec>
int launch_recurrent_bwd_typed(const RecurrentBwdParams& params, cudaStream_t stream) {
  return launch_segment_kernel<recurrent_bwd_kernel<T, Rows, Vec>, Rows, Vec>(params, params.in, stream);
}

// Instantiates the backward launcher for every tile, for the dtype the including .cu file
// names COMBA_ELEMENT.
#define COMBA_INSTANTIATE_RECURRENT_BWD_TILE(ROWS, VEC)                          \
  template int launch_recurrent_bwd_typed<COMBA_ELEMENT, ROWS, VEC>(const RecurrentBwdParams&, \
                                                                   cudaStream_t);
#define COMBA_INSTANTIATE_RECURRENT_BWD() COMBA_RECURRENT_TILES(COMBA_INSTANTIATE_RECURRENT_BWD_TILE)

}  // namespace comba::cuda
