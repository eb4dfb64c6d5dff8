// Element access shared by the nn kernel families: dtype tags, fp32 conversions and
// aligned vector loads/stores of Vec elements. Everything is __host__ __device__ so that
// the per-thread math can also run on the CPU (tests emulate the kernels' tiling there).
// No torch headers (fast to compile).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "element_type.h"

namespace comba::nn::cuda {

template <typename T>
__host__ __device__ __forceinline__ float to_float(T x);
template <>
__host__ __device__ __forceinline__ float to_float<float>(float x) { return x; }
template <>
__host__ __device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <>
__host__ __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
__host__ __device__ __forceinline__ T from_float(float x);
template <>
__host__ __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__host__ __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

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

// A value stored either in the element type T or in float32 (weights, gates).
template <typename T>
__host__ __device__ __forceinline__ float load_either(const void* ptr, long long index, bool is_fp32) {
  return is_fp32 ? static_cast<const float*>(ptr)[index] : to_float(static_cast<const T*>(ptr)[index]);
}

__host__ __device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

}  // namespace comba::nn::cuda
