// Decay / correction kernels (math in decay_correction_params.h, tiling in
// decay_correction_traits.h). Included by the per-dtype .cu files only.
#pragma once
#include <cuda_runtime.h>

#include "../element.cuh"
#include "decay_correction_params.h"
#include "decay_correction_traits.h"

namespace comba::nn::cuda {

// p = round(k s) as the forward stores it, back in fp32.
template <typename T>
__device__ __forceinline__ float rounded_product(float k, float s) {
  return to_float(from_float<T>(k * s));
}

template <typename T, int Vec>
__global__ void __launch_bounds__(DecayCorrectionTraits::kThreads)
    decay_correction_fwd_kernel(const DecayCorrectionParams p) {
  const int64_t vectors = p.rows * p.heads * p.dim / Vec;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = i * Vec;
    const int h = static_cast<int>((e / p.dim) % p.heads);  // Vec divides dim: one head per vector
    const float s = sigmoidf_(p.decay[h]), d = p.D[h];
    float qv[Vec], kv[Vec], pv[Vec], qo[Vec];
    load_vec<T, Vec>(static_cast<const T*>(p.q) + e, qv);
    load_vec<T, Vec>(static_cast<const T*>(p.k) + e, kv);
#pragma unroll
    for (int v = 0; v < Vec; ++v) {
      pv[v] = rounded_product<T>(kv[v], s);
      qo[v] = qv[v] - d * pv[v];
    }
    store_vec<T, Vec>(static_cast<T*>(p.p_out) + e, pv);
    store_vec<T, Vec>(static_cast<T*>(p.q_out) + e, qo);
  }
}

template <typename T, int Vec>
__global__ void decay_correction_bwd_kernel(const DecayCorrectionParams p) {
  extern __shared__ float sums[];  // [2][blockDim.x]
  const int slots = p.heads * p.dim / Vec;
  const int per_pass = blockDim.x / slots;
  const int t = threadIdx.x;
  const int slot = t % slots, sub = t / slots;
  const int h = slot * Vec / p.dim;
  const float s = sigmoidf_(p.decay[h]), d = p.D[h];
  float sum_dq_p = 0.f, sum_e_k = 0.f;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * per_pass + sub; row < p.rows;
       row += static_cast<int64_t>(gridDim.x) * per_pass) {
    const int64_t e = row * slots * Vec + static_cast<int64_t>(slot) * Vec;
    float kv[Vec], dq[Vec], dp[Vec], dk[Vec];
    load_vec<T, Vec>(static_cast<const T*>(p.k) + e, kv);
    if (p.dq != nullptr) {
      load_vec<T, Vec>(static_cast<const T*>(p.dq) + e, dq);
    } else {
#pragma unroll
      for (int v = 0; v < Vec; ++v) dq[v] = 0.f;
    }
    if (p.dp != nullptr) {
      load_vec<T, Vec>(static_cast<const T*>(p.dp) + e, dp);
    } else {
#pragma unroll
      for (int v = 0; v < Vec; ++v) dp[v] = 0.f;
    }
#pragma unroll
    for (int v = 0; v < Vec; ++v) {
      const float grad_p = dp[v] - d * dq[v];
      dk[v] = grad_p * s;
      sum_dq_p += dq[v] * rounded_product<T>(kv[v], s);
      sum_e_k += grad_p * kv[v];
    }
    store_vec<T, Vec>(static_cast<T*>(p.dk) + e, dk);
  }
  sums[t] = sum_dq_p;
  sums[blockDim.x + t] = sum_e_k;
  __syncthreads();
  // Per head, this block's threads in a fixed order: slots of head h are
  // [h * dim / Vec, (h + 1) * dim / Vec), each on per_pass threads.
  if (t < p.heads) {
    const int first = t * p.dim / Vec, last = (t + 1) * p.dim / Vec;
    float total_dq_p = 0.f, total_e_k = 0.f;
    for (int r = 0; r < per_pass; ++r) {
      for (int sl = first; sl < last; ++sl) {
        total_dq_p += sums[r * slots + sl];
        total_e_k += sums[blockDim.x + r * slots + sl];
      }
    }
    const float st = sigmoidf_(p.decay[t]);
    float* out = p.partial + static_cast<int64_t>(blockIdx.x) * 2 * p.heads;
    out[t] = -total_dq_p;
    out[p.heads + t] = st * (1.f - st) * total_e_k;
  }
}

template <typename T, int Vec>
int launch_decay_correction_fwd_typed(const DecayCorrectionParams& p, cudaStream_t stream) {
  const int64_t vectors = p.rows * p.heads * p.dim / Vec;
  const dim3 grid(static_cast<unsigned>(decay_correction_fwd_blocks(vectors)));
  decay_correction_fwd_kernel<T, Vec><<<grid, DecayCorrectionTraits::kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int Vec>
int launch_decay_correction_bwd_typed(const DecayCorrectionParams& p, cudaStream_t stream) {
  const int slots = p.heads * p.dim / Vec;
  const int threads = slots * decay_correction_rows_per_pass(slots);
  const dim3 grid(static_cast<unsigned>(decay_correction_bwd_blocks(p.rows, slots)));
  decay_correction_bwd_kernel<T, Vec><<<grid, threads, 2 * threads * sizeof(float), stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launchers for one dtype: vectorised (16-byte accesses) and scalar.
#define COMBA_INSTANTIATE_DECAY_CORRECTION(T)                                                       \
  template int launch_decay_correction_fwd_typed<T, DecayCorrectionTraits::kVecBytes / sizeof(T)>(  \
      const DecayCorrectionParams&, cudaStream_t);                                                   \
  template int launch_decay_correction_fwd_typed<T, 1>(const DecayCorrectionParams&, cudaStream_t);  \
  template int launch_decay_correction_bwd_typed<T, DecayCorrectionTraits::kVecBytes / sizeof(T)>(  \
      const DecayCorrectionParams&, cudaStream_t);                                                   \
  template int launch_decay_correction_bwd_typed<T, 1>(const DecayCorrectionParams&, cudaStream_t);

}  // namespace comba::nn::cuda
