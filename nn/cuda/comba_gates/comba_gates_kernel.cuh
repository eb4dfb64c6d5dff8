// Comba gate kernels (math in comba_gates_params.h, tiling in comba_gates_traits.h).
// Included by the per-dtype .cu files only.
#pragma once
#include <cuda_runtime.h>

#include "../element.cuh"
#include "comba_gates_params.h"
#include "comba_gates_traits.h"

namespace comba::nn::cuda {

// torch's softplus (beta 1, threshold 20) and its derivative.
__host__ __device__ __forceinline__ float softplusf_(float z) {
  return z > CombaGatesTraits::kSoftplusThreshold ? z : log1pf(expf(z));
}
__host__ __device__ __forceinline__ float softplus_gradf_(float z) {
  return z > CombaGatesTraits::kSoftplusThreshold ? 1.f : sigmoidf_(z);
}

template <typename T, int Vec>
__global__ void __launch_bounds__(CombaGatesTraits::kThreads) comba_gates_fwd_kernel(const CombaGatesParams p) {
  const int64_t vectors = p.rows * p.heads / Vec;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = i * Vec;
    float av[Vec], bv[Vec], g[Vec], beta[Vec];
    load_vec<T, Vec>(static_cast<const T*>(p.a) + e, av);
    load_vec<T, Vec>(static_cast<const T*>(p.b) + e, bv);
    int h = static_cast<int>(e % p.heads);
#pragma unroll
    for (int v = 0; v < Vec; ++v) {
      g[v] = -expf(p.A_log[h]) * softplusf_(av[v] + p.dt_bias[h]);
      beta[v] = sigmoidf_(bv[v]);
      h = h + 1 == p.heads ? 0 : h + 1;
    }
    store_vec<float, Vec>(p.g + e, g);
    store_vec<float, Vec>(p.beta + e, beta);
  }
}

template <typename T>
__global__ void __launch_bounds__(CombaGatesTraits::kThreads) comba_gates_bwd_kernel(const CombaGatesParams p) {
  constexpr int kThreads = CombaGatesTraits::kThreads;
  __shared__ float sums[2][kThreads];
  const int t = threadIdx.x;
  const int rows_per_pass = kThreads / p.heads;
  const int h = t % p.heads;
  const int sub = t / p.heads;  // == rows_per_pass for the idle tail threads
  float d_a_log = 0.f, d_dt = 0.f;
  if (sub < rows_per_pass) {
    const float neg_a = -expf(p.A_log[h]);
    const float dt = p.dt_bias[h];
    for (int64_t row = static_cast<int64_t>(blockIdx.x) * rows_per_pass + sub; row < p.rows;
         row += static_cast<int64_t>(gridDim.x) * rows_per_pass) {
      const int64_t e = row * p.heads + h;
      const float z = to_float(static_cast<const T*>(p.a)[e]) + dt;
      const float dg = p.dg != nullptr ? p.dg[e] : 0.f;
      const float da = dg * neg_a * softplus_gradf_(z);
      d_a_log += dg * neg_a * softplusf_(z);  // dg * g
      d_dt += da;
      static_cast<T*>(p.da)[e] = from_float<T>(da);
      const float beta = sigmoidf_(to_float(static_cast<const T*>(p.b)[e]));
      const float dbeta = p.dbeta != nullptr ? p.dbeta[e] : 0.f;
      static_cast<T*>(p.db)[e] = from_float<T>(dbeta * beta * (1.f - beta));
    }
  }
  sums[0][t] = d_a_log;
  sums[1][t] = d_dt;
  __syncthreads();
  if (t < p.heads) {
    float total_a = 0.f, total_dt = 0.f;
    for (int s = 0; s < rows_per_pass; ++s) {
      total_a += sums[0][s * p.heads + t];
      total_dt += sums[1][s * p.heads + t];
    }
    float* out = p.partial + static_cast<int64_t>(blockIdx.x) * 2 * p.heads;
    out[t] = total_a;
    out[p.heads + t] = total_dt;
  }
}

template <typename T, int Vec>
int launch_comba_gates_fwd_typed(const CombaGatesParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(comba_gates_fwd_blocks(p.rows * p.heads / Vec)));
  comba_gates_fwd_kernel<T, Vec><<<grid, CombaGatesTraits::kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_comba_gates_bwd_typed(const CombaGatesParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(comba_gates_bwd_blocks(p.rows, p.heads)));
  comba_gates_bwd_kernel<T><<<grid, CombaGatesTraits::kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launchers for one dtype: vectorised and scalar forward, the backward.
#define COMBA_INSTANTIATE_COMBA_GATES(T)                                                                \
  template int launch_comba_gates_fwd_typed<T, CombaGatesTraits::kVec>(const CombaGatesParams&, cudaStream_t); \
  template int launch_comba_gates_fwd_typed<T, 1>(const CombaGatesParams&, cudaStream_t);               \
  template int launch_comba_gates_bwd_typed<T>(const CombaGatesParams&, cudaStream_t);

}  // namespace comba::nn::cuda
