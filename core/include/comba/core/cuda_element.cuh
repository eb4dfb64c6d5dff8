// Element access shared by every CUDA kernel family (ops and nn): fp32 conversions of the
// supported input dtypes, a value stored in either the element type or float32, and the
// runtime-to-compiled element type dispatch. Everything is __host__ __device__ so that
// per-thread math can also run on the CPU (tests emulate kernels' tiling there). No torch
// headers (fast to compile).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "comba/core/element_type.h"

namespace comba::core {

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

// A value stored either in the element type T or in float32 (gates, weights).
template <typename T>
__host__ __device__ __forceinline__ float load_either(const void* ptr, long long index,
                                                      bool is_fp32) {
  return is_fp32 ? static_cast<const float*>(ptr)[index]
                 : to_float(static_cast<const T*>(ptr)[index]);
}

// fn(T{}) with the compiled type named by `dtype` (cudaErrorInvalidValue for anything else).
template <typename Fn>
int dispatch_element_type(ElementType dtype, Fn&& fn) {
  switch (dtype) {
    case ElementType::kFloat32: return fn(float{});
    case ElementType::kFloat16: return fn(__half{});
    case ElementType::kBFloat16: return fn(__nv_bfloat16{});
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace comba::core
