// Tiling of the RMSNorm kernels: one warp per row, each lane Vec adjacent elements per
// access (16 bytes). The forward block holds kFwdWarps rows. The backward runs a fixed
// grid of at most kBwdMaxBlocks blocks of kBwdWarps warps striding over the rows; each warp
// accumulates its weight-grad in its own shared-memory row (lanes own columns, so no
// atomics), the block adds its warps in order into one partial row, and a column sum
// adds the blocks in order: the same bits every run.
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

struct RMSNormTraits {
  static constexpr int kFwdWarps = 8;
  static constexpr int kBwdWarps = 4;
  static constexpr int kBwdMaxBlocks = 1024;
  // Largest dim: the backward keeps kBwdWarps x dim fp32 sums in shared memory (128 KiB).
  static constexpr int kMaxDim = 8192;
  // Bytes per vector access.
  static constexpr int kVecBytes = 16;
};

inline int64_t rms_norm_bwd_blocks(int64_t rows) {
  const int64_t wanted = (rows + RMSNormTraits::kBwdWarps - 1) / RMSNormTraits::kBwdWarps;
  return wanted < RMSNormTraits::kBwdMaxBlocks ? (wanted > 0 ? wanted : 1) : RMSNormTraits::kBwdMaxBlocks;
}

}  // namespace comba::nn::cuda
