// Hopper (sm_90) bulk copies global -> shared that complete on an mbarrier: one
// instruction moves a whole contiguous tile (any multiple of 16 bytes) and the copy
// engine, not the threads, does the per-16-byte work; a thread waiting on the barrier
// sees the bytes once the phase completes. Worth it only for large copies: one copy per
// 256-byte row cost more than it saved (the scans' per-row try, 2026-12-03). No torch
// headers. Used by the chunk scans and the streaming decode kernel.
#pragma once
#include <cstdint>

#include "shared_address.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#error "bulk copies need sm_90: build with TORCH_CUDA_ARCH_LIST=9.0a"
#endif

namespace comba::cuda {

// One thread initialises; fence_barrier_init() and a __syncthreads() must follow before
// any other thread or copy uses the barrier.
__device__ __forceinline__ void mbar_init(uint64_t* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
}
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// The phase's one arrival, announcing `bytes` of copies to come on this barrier.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

// Waits until the barrier's phase of this parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
  } while (!done);
}

// bytes (a multiple of 16; both addresses 16-byte aligned) from global src to shared dst,
// counted against bar's transactions as they land.
__device__ __forceinline__ void bulk_copy_g2s(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
          smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
}

}  // namespace comba::cuda
