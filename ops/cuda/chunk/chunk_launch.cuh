// Launch of each chunked kernel for one compiled (dtype, KP); instantiated per dtype and
// key tile in chunk_<dtype>_k<KP>.cu, dispatched in chunk_dispatch.cu.
#pragma once
#include <cuda_runtime.h>

#include "../common.cuh"
#include "../dispatch.cuh"
#include "chunk_grad_kernel.cuh"
#include "chunk_prep_kernel.cuh"
#include "chunk_scan_kernel.cuh"
#include "chunk_v_new_kernel.cuh"

namespace comba::cuda::chunk {

template <auto Kernel>
int launch_with_smem(dim3 grid, int smem_bytes, const ChunkParams& p, cudaStream_t stream) {
  if (const int err = allow_dynamic_smem<Kernel>(smem_bytes); err != 0) return err;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return 0;
  const auto kernel = Kernel;
  kernel<<<grid, kThreads, smem_bytes, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int KP>
int launch_prep(const ChunkParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_chunks), p.value_heads);
  return launch_with_smem<chunk_prep_kernel<T, KP>>(grid, PrepLayout<T, KP>::kBytes, p, stream);
}

template <typename T, int KP, int BV>
int launch_scan_bv(const ChunkParams& p, bool backward, cudaStream_t stream) {
  const dim3 grid((p.value_dim + BV - 1) / BV, p.value_heads, static_cast<unsigned>(p.scan_walk_count()));
  constexpr int kBytes = ScanLayout<T, KP, BV>::kBytes;
  return backward ? launch_with_smem<chunk_scan_bwd_kernel<T, KP, BV>>(grid, kBytes, p, stream)
                  : launch_with_smem<chunk_scan_fwd_kernel<T, KP, BV>>(grid, kBytes, p, stream);
}

// bv: one of the widths ChunkTraits::scan_columns picks.
template <typename T, int KP>
int launch_scan(const ChunkParams& p, bool backward, int bv, cudaStream_t stream) {
  return dispatch_value<64, 32, 16>(bv, [&](auto width) {
    return launch_scan_bv<T, KP, decltype(width)::value>(p, backward, stream);
  });
}

template <typename T, int KP>
int launch_v_new(const ChunkParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_chunks), p.value_heads);
  return launch_with_smem<chunk_v_new_kernel<T, KP>>(grid, VNewLayout<T, KP>::kBytes, p, stream);
}

template <typename T, int KP>
int launch_grad(const ChunkParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_chunks), p.value_heads);
  return launch_with_smem<chunk_grad_kernel<T, KP>>(grid, GradLayout<T, KP>::kBytes, p, stream);
}

#define COMBA_INSTANTIATE_CHUNK(T, KP)                                                  \
  template int launch_prep<T, KP>(const ChunkParams&, cudaStream_t);                    \
  template int launch_scan<T, KP>(const ChunkParams&, bool, int, cudaStream_t);         \
  template int launch_v_new<T, KP>(const ChunkParams&, cudaStream_t);                   \
  template int launch_grad<T, KP>(const ChunkParams&, cudaStream_t);

}  // namespace comba::cuda::chunk
