// Tiling of the RMSNorm kernels: one warp per row, each lane Vec adjacent elements per
// access (16 bytes).
//
// Register kernels (rows of up to kRegMaxChunks chunks, chunk = 32 x Vec columns, vectorised
// accesses): each lane keeps its columns of the weight (and, backward, its weight-grad sums)
// in registers, and a warp takes rms_norm_reg_rows(chunks) rows per pass so that about
// kRegChunksInFlight chunks of every operand are loaded at once, over a fixed grid of at most
// kRegMaxBlocks blocks of kRegWarps warps.
//
// Looping kernels (the rest: scalar accesses or longer rows): the forward block holds
// kFwdWarps rows; the backward runs a fixed grid of at most kBwdMaxBlocks blocks of
// kBwdWarps warps striding over the rows, each warp summing its weight-grad in its own
// shared-memory row.
//
// Either backward: lanes own columns (no atomics), the block adds its warps in order into
// one partial row, and a column sum adds the blocks in order: the same bits every run.
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

struct RMSNormTraits {
  static constexpr int kFwdWarps = 8;
  static constexpr int kBwdWarps = 4;
  static constexpr int kBwdMaxBlocks = 1024;
  // Largest dim: the looping backward keeps kBwdWarps x dim fp32 sums in shared memory (128 KiB).
  static constexpr int kMaxDim = 8192;
  // Bytes per vector access.
  static constexpr int kVecBytes = 16;

  // Register kernels: compiled for 1, 2 and kRegMaxChunks chunks per row (powers of two; the
  // dispatch and COMBA_INSTANTIATE_RMS_NORM list them).
  static constexpr int kRegMaxChunks = 4;
  static constexpr int kRegChunksInFlight = 4;
  // No shared memory per warp during the loop, so larger blocks than the looping backward.
  static constexpr int kRegWarps = 8;
  static constexpr int kRegMaxBlocks = 1024;
};

// Rows a warp of the register kernels takes per pass.
constexpr int rms_norm_reg_rows(int chunks) {
  return chunks >= RMSNormTraits::kRegChunksInFlight ? 1 : RMSNormTraits::kRegChunksInFlight / chunks;
}
// The same as a constant device code can read.
template <int Chunks>
inline constexpr int kRMSNormRegRows = rms_norm_reg_rows(Chunks);

// Chunks of the register kernels for rows of `dim` at `vec` elements per lane access: the
// smallest compiled count that covers the row, 0 when it takes the looping kernels.
inline int rms_norm_reg_chunks(int64_t dim, int vec) {
  const int64_t needed = (dim + 32 * vec - 1) / (32 * vec);
  for (int chunks = 1; chunks <= RMSNormTraits::kRegMaxChunks; chunks *= 2) {
    if (needed <= chunks) return chunks;
  }
  return 0;
}

// Grid of the register kernels (forward and backward).
inline int64_t rms_norm_reg_blocks(int64_t rows, int chunks) {
  const int64_t per_block = static_cast<int64_t>(RMSNormTraits::kRegWarps) * rms_norm_reg_rows(chunks);
  const int64_t wanted = (rows + per_block - 1) / per_block;
  return wanted < RMSNormTraits::kRegMaxBlocks ? (wanted > 0 ? wanted : 1) : RMSNormTraits::kRegMaxBlocks;
}

// Blocks of the backward, hence rows of its weight-grad partials: `chunks` as dispatched
// (0: the looping kernel).
inline int64_t rms_norm_bwd_blocks(int64_t rows, int chunks) {
  if (chunks > 0) return rms_norm_reg_blocks(rows, chunks);
  const int64_t wanted = (rows + RMSNormTraits::kBwdWarps - 1) / RMSNormTraits::kBwdWarps;
  return wanted < RMSNormTraits::kBwdMaxBlocks ? (wanted > 0 ? wanted : 1) : RMSNormTraits::kBwdMaxBlocks;
}

}  // namespace comba::nn::cuda
