// The 32-bit shared-window address of a generic pointer into shared memory, the operand
// form of ldmatrix, cp.async, mbarrier and bulk-copy instructions. No torch headers.
#pragma once
#include <cstdint>

namespace comba::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

}  // namespace comba::cuda
