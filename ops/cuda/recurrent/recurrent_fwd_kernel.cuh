// Fused recurrent forward: per token, u = v - S^T p, S = exp(g) S + beta k u^T,
// o = scale S^T q, the fp32 state kept in registers across the whole sequence.
// Grid: (ceil(V / (32 * Vec)), HV, N). Included by the per-dtype .cu files only.
#pragma once
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <int Vec>
struct StateVec;  // Vec fp32 state columns, loaded and stored in one access
template <>
struct StateVec<1> {
  float x[1];
  __device__ void load(const float* p) { x[0] = *p; }
  __device__ void store(float* p) const { *p = x[0]; }
};
template <>
struct StateVec<4> {
  float x[4];
  __device__ void load(const float* p) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    x[0] = f.x, x[1] = f.y, x[2] = f.z, x[3] = f.w;
  }
  __device__ void store(float* p) const {
    *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
  }
};

template <typename T, int Rows, int Vec>
__global__ void __launch_bounds__(RecurrentTraits::kThreads, 2)
    recurrent_fwd_kernel(const RecurrentFwdParams params) {
  using Tr = RecurrentTraits;
  constexpr int kColumns = 32 * Vec;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int col0 = blockIdx.x * kColumns + lane * Vec;  // first of this lane's columns
  const int hv = blockIdx.y;
  const int n = blockIdx.z;
  const int K = params.key_dim, V = params.value_dim, HV = params.value_heads;
  const int h = hv / (HV / params.heads);
  const bool cols_ok = col0 < V;  // V % Vec == 0, so all Vec columns or none
  const int row0 = warp * Rows;   // this warp's slab of state rows

  long long bos = static_cast<long long>(n) * params.seq_len, len = params.seq_len;
  if (params.cu_seqlens != nullptr) {
    bos = params.cu_seqlens[n];
    len = params.cu_seqlens[n + 1] - bos;
  }

  // Cross-warp partial sums [reduction][warp][column]; the l2 norms of q, k, p.
  __shared__ float partial[2][Tr::kWarps][kColumns];
  __shared__ float norms[3][Tr::kWarps];

  StateVec<Vec> state[Rows];
  const long long state_base = (static_cast<long long>(n) * HV + hv) * K * V;
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    const int r = row0 + i;
    if (params.initial_state != nullptr && r < K && cols_ok) {
      state[i].load(params.initial_state + state_base + static_cast<long long>(r) * V + col0);
    } else {
#pragma unroll
      for (int c = 0; c < Vec; ++c) state[i].x[c] = 0.f;
    }
  }

  const T* q = static_cast<const T*>(params.q);
  const T* k = static_cast<const T*>(params.k);
  const T* p = static_cast<const T*>(params.p);
  const T* v = static_cast<const T*>(params.v);
  T* o = static_cast<T*>(params.o);

  for (long long t = 0; t < len; ++t) {
    const long long token = bos + t;
    const long long qk_base = (token * params.heads + h) * K + row0;
    // One pass over q, k, p: the l2 norms' partial sums and S^T p; only k stays in
    // registers (q is re-read after the update; it is in L1), which keeps the kernel
    // at two CTAs per SM.
    float kr[Rows];
    float dot_p[Vec];
#pragma unroll
    for (int c = 0; c < Vec; ++c) dot_p[c] = 0.f;
    float ss_q = 0.f, ss_k = 0.f, ss_p = 0.f;
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
      const bool ok = row0 + i < K;
      const float qi = ok ? to_float(q[qk_base + i]) : 0.f;
      const float pi = ok ? to_float(p[qk_base + i]) : 0.f;
      kr[i] = ok ? to_float(k[qk_base + i]) : 0.f;
      ss_q += qi * qi;
      ss_k += kr[i] * kr[i];
      ss_p += pi * pi;
#pragma unroll
      for (int c = 0; c < Vec; ++c) dot_p[c] += pi * state[i].x[c];
    }
    float inv_q = 1.f, inv_k = 1.f, inv_p = 1.f;
    if (params.use_l2norm) {
      if (lane == 0) {
        norms[0][warp] = ss_q;
        norms[1][warp] = ss_k;
        norms[2][warp] = ss_p;
      }
      __syncthreads();
      float tq = 0.f, tk = 0.f, tp = 0.f;
#pragma unroll
      for (int w = 0; w < Tr::kWarps; ++w) {
        tq += norms[0][w];
        tk += norms[1][w];
        tp += norms[2][w];
      }
      inv_q = rsqrtf(tq + 1e-6f);
      inv_k = rsqrtf(tk + 1e-6f);
      inv_p = rsqrtf(tp + 1e-6f);
    }
    const long long gate_index = token * HV + hv;
    const float alpha = __expf(load_gate<T>(params.g, gate_index, params.g_fp32));
    const float beta =
        params.beta != nullptr ? load_gate<T>(params.beta, gate_index, params.beta_fp32) : 1.f;
    const long long v_index = (token * HV + hv) * static_cast<long long>(V) + col0;

    // pred = S^T p for this lane's columns, summed over the warps' row slabs.
#pragma unroll
    for (int c = 0; c < Vec; ++c) partial[0][warp][lane * Vec + c] = dot_p[c] * inv_p;
    __syncthreads();
    float update[Vec];
#pragma unroll
    for (int c = 0; c < Vec; ++c) {
      float pred = 0.f;
#pragma unroll
      for (int w = 0; w < Tr::kWarps; ++w) pred += partial[0][w][lane * Vec + c];
      const float v_t = cols_ok ? to_float(v[v_index + c]) : 0.f;
      update[c] = beta * (v_t - pred);
    }

    float dot_q[Vec];
#pragma unroll
    for (int c = 0; c < Vec; ++c) dot_q[c] = 0.f;
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
      const float qi = row0 + i < K ? to_float(q[qk_base + i]) : 0.f;
      const float ki = kr[i] * inv_k;
#pragma unroll
      for (int c = 0; c < Vec; ++c) {
        state[i].x[c] = alpha * state[i].x[c] + ki * update[c];
        dot_q[c] += qi * state[i].x[c];
      }
    }
#pragma unroll
    for (int c = 0; c < Vec; ++c) partial[1][warp][lane * Vec + c] = dot_q[c];
    __syncthreads();
    if (warp == 0 && cols_ok) {
#pragma unroll
      for (int c = 0; c < Vec; ++c) {
        float out = 0.f;
#pragma unroll
        for (int w = 0; w < Tr::kWarps; ++w) out += partial[1][w][lane * Vec + c];
        o[v_index + c] = from_float<T>(out * inv_q * params.scale);
      }
    }
  }

  if (params.final_state != nullptr && cols_ok) {
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
      const int r = row0 + i;
      if (r < K) state[i].store(params.final_state + state_base + static_cast<long long>(r) * V + col0);
    }
  }
}

template <typename T, int Rows, int Vec>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream) {
  constexpr int kColumns = 32 * Vec;
  const dim3 grid((params.value_dim + kColumns - 1) / kColumns, params.value_heads,
                  params.num_seqs);
  recurrent_fwd_kernel<T, Rows, Vec><<<grid, RecurrentTraits::kThreads, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launcher for one dtype and every compiled tile (see recurrent_tile).
#define COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, ROWS, VEC) \
  template int launch_recurrent_fwd_typed<T, ROWS, VEC>(const RecurrentFwdParams&, cudaStream_t);
#define COMBA_INSTANTIATE_RECURRENT_FWD(T)          \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 2, 1)     \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 4, 1)     \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 8, 1)     \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 16, 1)    \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 32, 1)    \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 2, 4)     \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 4, 4)     \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 8, 4)     \
  COMBA_INSTANTIATE_RECURRENT_FWD_TILE(T, 16, 4)

}  // namespace comba::cuda
