// Element access shared by the nn kernel families: the element conversions (from core)
// and aligned vector loads/stores of Vec elements. Everything is __host__ __device__ so that
// the per-thread math can also run on the CPU (tests emulate the kernels' tiling there).
// No torch headers (fast to compile).
#pragma once
#include <cstdint>
#include <type_traits>

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

// Vec elements of type E held as 32-bit words until converted where used: an array of
// 16-bit elements would be split into one register per element (twice the registers).
// Device code only.
template <typename E, int Vec>
struct alignas(sizeof(E) * Vec) Words {
  static constexpr int kCount = static_cast<int>(sizeof(E)) * Vec / 4;
  static_assert(kCount * 4 == static_cast<int>(sizeof(E)) * Vec, "whole 32-bit words");
  uint32_t w[kCount];

  // The vector at `ptr` when `ok`, zeros otherwise.
  __device__ __forceinline__ void load(const E* ptr, bool ok) {
    if (ok) {
      *this = *reinterpret_cast<const Words*>(ptr);
    } else {
#pragma unroll
      for (int i = 0; i < kCount; ++i) w[i] = 0u;
    }
  }

  // The same values as to_float of each element (element 2i is word i's low half).
  __device__ __forceinline__ void unpack(float (&out)[Vec]) const {
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      if constexpr (std::is_same_v<E, float>) {
        out[i] = __uint_as_float(w[i]);
      } else if constexpr (std::is_same_v<E, __nv_bfloat16>) {
        out[2 * i] = __uint_as_float(w[i] << 16);
        out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
      } else {
        static_assert(std::is_same_v<E, __half>, "float, bfloat16 or half");
        out[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] & 0xffffu)));
        out[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] >> 16)));
      }
    }
  }

  // `zero` is 0 at run time but unknown to the compiler: values it derived from the words
  // before this point cannot be reused after it, so they are recomputed (one instruction
  // each) instead of kept live.
  __device__ __forceinline__ void hide(uint32_t zero) {
#pragma unroll
    for (int i = 0; i < kCount; ++i) w[i] |= zero;
  }
};

__host__ __device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

}  // namespace comba::nn::cuda
