// Element access shared by the nn kernel families: the element conversions (from core)
// and aligned vector loads/stores of Vec elements. Everything is __host__ __device__ so that
// the per-thread math can also run on the CPU (tests emulate the kernels' tiling there).
// No torch headers (fast to compile).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "comba/core/cuda_element.cuh"

namespace comba::nn::cuda {

// The element conversions every kernel family shares (comba/core).
using core::from_float;
using core::to_float;

// Vec elements moved in one access (16 bytes for 8 x bf16 or 4 x fp32).
template <typename T, int Vec>
struct alignas(sizeof(T) * Vec) Pack {
  T v[Vec];
};

template <typename T, int Vec>
__host__ __device__ __forceinline__ void load_vec(const T* ptr, float (&out)[Vec]) {
  const Pack<T, Vec> pack = *reinterpret_cast<const Pack<T, Vec>*>(ptr);
#pragma unroll
  for (int i = 0; i < Vec; ++i) out[i] = to_float(pack.v[i]);
}

template <typename T, int Vec>
__host__ __device__ __forceinline__ void store_vec(T* ptr, const float (&in)[Vec]) {
  Pack<T, Vec> pack;
#pragma unroll
  for (int i = 0; i < Vec; ++i) pack.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Pack<T, Vec>*>(ptr) = pack;
}

__host__ __device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

}  // namespace comba::nn::cuda
