// SwiGLU kernels (see swiglu_params.h for the math, swiglu_traits.h for the tiling).
// Included by the per-dtype .cu files only.
#pragma once
#include <cuda_runtime.h>

#include "../element.cuh"
#include "swiglu_params.h"
#include "swiglu_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec>
__global__ void __launch_bounds__(SwiGLUTraits::kThreads) swiglu_fwd_kernel(const SwiGLUParams p) {
  const int64_t per_row = p.dim / Vec;
  const int64_t vectors = p.rows * per_row;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / per_row;
    const int64_t col = (i - row * per_row) * Vec;
    float av[Vec], bv[Vec], out[Vec];
    load_vec<T, Vec>(static_cast<const T*>(p.a) + row * p.a_stride + col, av);
    load_vec<T, Vec>(static_cast<const T*>(p.b) + row * p.b_stride + col, bv);
#pragma unroll
    for (int v = 0; v < Vec; ++v) out[v] = av[v] * sigmoidf_(av[v]) * bv[v];
    store_vec<T, Vec>(static_cast<T*>(p.y) + row * p.dim + col, out);
  }
}

template <typename T, int Vec>
__global__ void __launch_bounds__(SwiGLUTraits::kThreads) swiglu_bwd_kernel(const SwiGLUParams p) {
  const int64_t per_row = p.dim / Vec;
  const int64_t vectors = p.rows * per_row;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / per_row;
    const int64_t col = (i - row * per_row) * Vec;
    float av[Vec], bv[Vec], gv[Vec], da[Vec], db[Vec], out[Vec];
    load_vec<T, Vec>(static_cast<const T*>(p.a) + row * p.a_stride + col, av);
    load_vec<T, Vec>(static_cast<const T*>(p.b) + row * p.b_stride + col, bv);
    load_vec<T, Vec>(static_cast<const T*>(p.dy) + row * p.dim + col, gv);
#pragma unroll
    for (int v = 0; v < Vec; ++v) {
      const float s = sigmoidf_(av[v]);
      const float silu = av[v] * s;
      da[v] = gv[v] * bv[v] * s * (1.f + av[v] * (1.f - s));
      db[v] = gv[v] * silu;
      out[v] = silu * bv[v];  // the forward's value, same operation order
    }
    store_vec<T, Vec>(static_cast<T*>(p.da) + row * p.da_stride + col, da);
    store_vec<T, Vec>(static_cast<T*>(p.db) + row * p.db_stride + col, db);
    if (p.y != nullptr) store_vec<T, Vec>(static_cast<T*>(p.y) + row * p.dim + col, out);
  }
}

template <typename T, int Vec>
int launch_swiglu_fwd_typed(const SwiGLUParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(swiglu_blocks(p.rows * (p.dim / Vec))));
  swiglu_fwd_kernel<T, Vec><<<grid, SwiGLUTraits::kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int Vec>
int launch_swiglu_bwd_typed(const SwiGLUParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(swiglu_blocks(p.rows * (p.dim / Vec))));
  swiglu_bwd_kernel<T, Vec><<<grid, SwiGLUTraits::kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launchers for one dtype: vectorised (16-byte accesses) and scalar.
#define COMBA_INSTANTIATE_SWIGLU(T)                                                                            \
  template int launch_swiglu_fwd_typed<T, SwiGLUTraits::kVecBytes / sizeof(T)>(const SwiGLUParams&, cudaStream_t); \
  template int launch_swiglu_fwd_typed<T, 1>(const SwiGLUParams&, cudaStream_t);                               \
  template int launch_swiglu_bwd_typed<T, SwiGLUTraits::kVecBytes / sizeof(T)>(const SwiGLUParams&, cudaStream_t); \
  template int launch_swiglu_bwd_typed<T, 1>(const SwiGLUParams&, cudaStream_t);

}  // namespace comba::nn::cuda
