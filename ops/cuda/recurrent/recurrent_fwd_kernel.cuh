// Fused recurrent forward: per token, u = v - S^T p, S = exp(g) S + beta k u^T,
// o = scale S^T q, the fp32 state kept in registers across the whole sequence.
// Grid: (ceil(V / kColumns), HV, N). Included by the per-dtype .cu files only.
#pragma once
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <typename T, int Rows>
__global__ void __launch_bounds__(RecurrentTraits::kThreads)
    recurrent_fwd_kernel(const RecurrentFwdParams params) {
  using Tr = RecurrentTraits;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int col = blockIdx.x * Tr::kColumns + lane;
  const int hv = blockIdx.y;
  const int n = blockIdx.z;
  const int K = params.key_dim, V = params.value_dim, HV = params.value_heads;
  const int h = hv / (HV / params.heads);
  const bool col_ok = col < V;
  const int row0 = warp * Rows;  // this warp's slab of state rows

  long long bos = n * params.seq_len, len = params.seq_len;
  if (params.cu_seqlens != nullptr) {
    bos = params.cu_seqlens[n];
    len = params.cu_seqlens[n + 1] - bos;
  }

  // [2 reductions][warps][columns]; a second buffer set for the l2 norms of q, k, p.
  __shared__ float partial[2][Tr::kWarps][Tr::kColumns];
  __shared__ float norms[3][Tr::kWarps];

  float state[Rows];
  const long long state_base = (static_cast<long long>(n) * HV + hv) * K * V;
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    const int r = row0 + i;
    state[i] = (params.initial_state != nullptr && r < K && col_ok)
                   ? params.initial_state[state_base + static_cast<long long>(r) * V + col]
                   : 0.f;
  }

  const T* q = static_cast<const T*>(params.q);
  const T* k = static_cast<const T*>(params.k);
  const T* p = static_cast<const T*>(params.p);
  const T* v = static_cast<const T*>(params.v);
  T* o = static_cast<T*>(params.o);

  for (long long t = 0; t < len; ++t) {
    const long long token = bos + t;
    const long long qk_base = (token * params.heads + h) * K + row0;
    float qr[Rows], kr[Rows], pr[Rows];
    float ss_q = 0.f, ss_k = 0.f, ss_p = 0.f;
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
      const bool ok = row0 + i < K;
      qr[i] = ok ? to_float(q[qk_base + i]) : 0.f;
      kr[i] = ok ? to_float(k[qk_base + i]) : 0.f;
      pr[i] = ok ? to_float(p[qk_base + i]) : 0.f;
      ss_q += qr[i] * qr[i];
      ss_k += kr[i] * kr[i];
      ss_p += pr[i] * pr[i];
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
    const long long v_index = (token * HV + hv) * static_cast<long long>(V) + col;
    const float v_t = col_ok ? to_float(v[v_index]) : 0.f;

    float dot_p = 0.f;
#pragma unroll
    for (int i = 0; i < Rows; ++i) dot_p += pr[i] * state[i];
    partial[0][warp][lane] = dot_p * inv_p;
    __syncthreads();
    float pred = 0.f;
#pragma unroll
    for (int w = 0; w < Tr::kWarps; ++w) pred += partial[0][w][lane];
    const float update = beta * (v_t - pred);

    float dot_q = 0.f;
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
      state[i] = alpha * state[i] + (kr[i] * inv_k) * update;
      dot_q += qr[i] * state[i];
    }
    partial[1][warp][lane] = dot_q;
    __syncthreads();
    if (warp == 0 && col_ok) {
      float out = 0.f;
#pragma unroll
      for (int w = 0; w < Tr::kWarps; ++w) out += partial[1][w][lane];
      o[v_index] = from_float<T>(out * inv_q * params.scale);
    }
  }

  if (params.final_state != nullptr && col_ok) {
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
      const int r = row0 + i;
      if (r < K) params.final_state[state_base + static_cast<long long>(r) * V + col] = state[i];
    }
  }
}

template <typename T, int Rows>
int launch_recurrent_fwd_typed(const RecurrentFwdParams& params, cudaStream_t stream) {
  const dim3 grid((params.value_dim + RecurrentTraits::kColumns - 1) / RecurrentTraits::kColumns,
                  params.value_heads, params.num_seqs);
  recurrent_fwd_kernel<T, Rows><<<grid, RecurrentTraits::kThreads, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launcher for one dtype and every compiled rows-per-thread.
#define COMBA_INSTANTIATE_RECURRENT_FWD(T)                                                \
  template int launch_recurrent_fwd_typed<T, 4>(const RecurrentFwdParams&, cudaStream_t);  \
  template int launch_recurrent_fwd_typed<T, 8>(const RecurrentFwdParams&, cudaStream_t);  \
  template int launch_recurrent_fwd_typed<T, 16>(const RecurrentFwdParams&, cudaStream_t); \
  template int launch_recurrent_fwd_typed<T, 32>(const RecurrentFwdParams&, cudaStream_t); \
  template int launch_recurrent_fwd_typed<T, 2>(const RecurrentFwdParams&, cudaStream_t);

}  // namespace comba::cuda
