// Short-convolution kernels: grid (token blocks, channel blocks) of kThreadsC x kRows
// threads, one run of kTileLen tokens x Vec channels per thread (short_conv_tile.cuh).
// The backward sums each block's weight/bias grads over its runs in shared memory in a
// fixed order and writes one partial row per token block. Included by the per-dtype .cu
// files only.
#pragma once
#include <cuda_runtime.h>

#include "short_conv_tile.cuh"

namespace comba::nn::cuda {

template <typename T, int Vec>
__global__ void __launch_bounds__(ShortConvTraits::kThreads)
    short_conv_fwd_kernel(const ShortConvParams params) {
  using Tr = ShortConvTraits;
  const int c0 = (blockIdx.y * Tr::kThreadsC + threadIdx.x) * Vec;
  const int64_t t0 = (static_cast<int64_t>(blockIdx.x) * Tr::kRows + threadIdx.y) * Tr::kTileLen;
  if (c0 >= params.channels || t0 >= params.tokens) return;
  const int64_t t1 = t0 + Tr::kTileLen < params.tokens ? t0 + Tr::kTileLen : params.tokens;
  short_conv_fwd_run<T, Vec>(params, c0, t0, t1);
}

template <typename T, int Vec>
__global__ void __launch_bounds__(ShortConvTraits::kThreads)
    short_conv_bwd_kernel(const ShortConvParams params) {
  using Tr = ShortConvTraits;
  constexpr int W = Tr::kMaxTaps;
  constexpr int kBlockChannels = Tr::kThreadsC * Vec;
  // [run row][tap slot, then bias][channel in block]
  __shared__ float sums[Tr::kRows][W + 1][kBlockChannels];
  const int c0 = (blockIdx.y * Tr::kThreadsC + threadIdx.x) * Vec;
  const int64_t t0 = (static_cast<int64_t>(blockIdx.x) * Tr::kRows + threadIdx.y) * Tr::kTileLen;
  float dw[W][Vec], db[Vec];
#pragma unroll
  for (int v = 0; v < Vec; ++v) {
    db[v] = 0.f;
#pragma unroll
    for (int j = 0; j < W; ++j) dw[j][v] = 0.f;
  }
  if (c0 < params.channels && t0 < params.tokens) {
    const int64_t t1 = t0 + Tr::kTileLen < params.tokens ? t0 + Tr::kTileLen : params.tokens;
    short_conv_bwd_run<T, Vec>(params, c0, t0, t1, dw, db);
  }
#pragma unroll
  for (int v = 0; v < Vec; ++v) {
#pragma unroll
    for (int j = 0; j < W; ++j) sums[threadIdx.y][j][threadIdx.x * Vec + v] = dw[j][v];
    sums[threadIdx.y][W][threadIdx.x * Vec + v] = db[v];
  }
  __syncthreads();
  const int tid = threadIdx.y * Tr::kThreadsC + threadIdx.x;
  for (int i = tid; i < (W + 1) * kBlockChannels; i += Tr::kThreads) {
    const int slot = i / kBlockChannels, local_c = i % kBlockChannels;
    const int c = blockIdx.y * kBlockChannels + local_c;
    if (c >= params.channels) continue;
    float total = 0.f;
#pragma unroll
    for (int r = 0; r < Tr::kRows; ++r) total += sums[r][slot][local_c];
    params.dw_partial[(static_cast<int64_t>(blockIdx.x) * (W + 1) + slot) * params.channels + c] = total;
  }
}

inline dim3 short_conv_grid(const ShortConvParams& params, int vec) {
  const int block_channels = ShortConvTraits::kThreadsC * vec;
  return dim3(static_cast<unsigned>(short_conv_blocks_for(params.tokens)),
              static_cast<unsigned>((params.channels + block_channels - 1) / block_channels));
}

template <typename T, int Vec>
int launch_short_conv_fwd_typed(const ShortConvParams& params, cudaStream_t stream) {
  const dim3 block(ShortConvTraits::kThreadsC, ShortConvTraits::kRows);
  short_conv_fwd_kernel<T, Vec><<<short_conv_grid(params, Vec), block, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int Vec>
int launch_short_conv_bwd_typed(const ShortConvParams& params, cudaStream_t stream) {
  const dim3 block(ShortConvTraits::kThreadsC, ShortConvTraits::kRows);
  short_conv_bwd_kernel<T, Vec><<<short_conv_grid(params, Vec), block, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launchers for one dtype: vectorised (kVec channels) and scalar.
#define COMBA_INSTANTIATE_SHORT_CONV(T)                                                           \
  template int launch_short_conv_fwd_typed<T, ShortConvTraits::kVec>(const ShortConvParams&,     \
                                                                     cudaStream_t);              \
  template int launch_short_conv_fwd_typed<T, 1>(const ShortConvParams&, cudaStream_t);          \
  template int launch_short_conv_bwd_typed<T, ShortConvTraits::kVec>(const ShortConvParams&,     \
                                                                     cudaStream_t);              \
  template int launch_short_conv_bwd_typed<T, 1>(const ShortConvParams&, cudaStream_t);

}  // namespace comba::nn::cuda
