// Small device helpers shared by the kernel families: element loads/stores in any of the
// supported input dtypes with fp32 arithmetic. No torch headers (fast to compile).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace comba::cuda {

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// A gate (g or beta) is stored either in the input dtype T or in float32.
template <typename T>
__device__ __forceinline__ float load_gate(const void* ptr, long long index, bool is_fp32) {
  return is_fp32 ? static_cast<const float*>(ptr)[index]
                 : to_float(static_cast<const T*>(ptr)[index]);
}

}  // namespace comba::cuda
