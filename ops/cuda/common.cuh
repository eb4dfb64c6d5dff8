// Small helpers shared by the kernel families: element loads/stores in any of the
// supported input dtypes with fp32 arithmetic, and the shared-memory opt-in of a launch.
// No torch headers (fast to compile).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>

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

// Opts a kernel into `bytes` of dynamic shared memory once per device (the default limit
// is 48 KiB less the static shared memory; the attribute is per device, and setting it on
// every launch costs host time on every call). `configured`: the kernel's devices done.
template <typename Kernel>
int allow_dynamic_smem(Kernel kernel, int bytes, std::atomic<unsigned long long>& configured) {
  int device = 0;
  if (const cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  const unsigned long long bit = 1ull << (device % 64);
  if ((configured.load() & bit) != 0) return 0;
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err == cudaSuccess) configured.fetch_or(bit);
  return static_cast<int>(err);
}

}  // namespace comba::cuda
