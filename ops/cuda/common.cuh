// Small helpers shared by the operator's kernel families: the element conversions (from
// core) and the shared-memory opt-in of a launch. No torch headers (fast to compile).
#pragma once
#include <cuda_runtime.h>

#include <atomic>

#include "comba/core/cuda_element.cuh"
#include "l2norm_eps.h"

namespace comba::cuda {

// The element conversions every kernel family shares (comba/core/cuda_element.cuh).
using core::from_float;
using core::load_either;
using core::to_float;

// Opts Kernel into `bytes` of dynamic shared memory once per device: the default limit
// is 48 KiB less the static shared memory, the attribute is per device, and setting it on
// every launch would cost host time on every call. One flag set per kernel (a static of
// this instantiation), a bit per device.
template <auto Kernel>
int allow_dynamic_smem(int bytes) {
  static std::atomic<unsigned long long> configured{0};
  int device = 0;
  if (const cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  const unsigned long long bit = 1ull << (device % 64);
  if ((configured.load() & bit) != 0) return 0;
  const cudaError_t err =
      cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err == cudaSuccess) configured.fetch_or(bit);
  return static_cast<int>(err);
}

// SMs of the device that was current at the first call (tile choices that fill the GPU;
// 132 if the query fails).
inline int current_device_sms() {
  static const int count = [] {
    int device = 0, sms = 132;
    if (cudaGetDevice(&device) == cudaSuccess) {
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    }
    return sms;
  }();
  return count;
}

}  // namespace comba::cuda
