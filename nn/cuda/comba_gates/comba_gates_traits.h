// Tiling of the Comba gate kernels. The forward is a flat grid-stride loop over vectors of
// kVec elements (the head of each element from its flat index). The backward runs a fixed
// grid of at most kBwdMaxBlocks blocks of kThreads threads: a block covers kThreads / heads
// rows per pass, thread t always owns head t % heads, so its dA_log / ddt_bias sums stay in
// registers; the block adds its threads in order into one partial row and a column sum adds
// the blocks in order: the same bits every run.
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

struct CombaGatesTraits {
  static constexpr int kThreads = 256;
  static constexpr int64_t kFwdMaxBlocks = 65536;
  static constexpr int64_t kBwdMaxBlocks = 1024;
  // Most heads the backward takes (one row per pass at least).
  static constexpr int kMaxHeads = kThreads;
  // Elements per forward access (4 fp32 outputs = 16 bytes).
  static constexpr int kVec = 4;
  // torch's softplus threshold (beta 1): above it softplus(z) = z.
  static constexpr float kSoftplusThreshold = 20.f;
};

inline int64_t comba_gates_fwd_blocks(int64_t vectors) {
  const int64_t wanted = (vectors + CombaGatesTraits::kThreads - 1) / CombaGatesTraits::kThreads;
  return wanted < CombaGatesTraits::kFwdMaxBlocks ? (wanted > 0 ? wanted : 1) : CombaGatesTraits::kFwdMaxBlocks;
}

inline int64_t comba_gates_bwd_blocks(int64_t rows, int heads) {
  const int64_t rows_per_pass = CombaGatesTraits::kThreads / (heads > 0 ? heads : 1);
  const int64_t wanted = (rows + rows_per_pass - 1) / rows_per_pass;
  return wanted < CombaGatesTraits::kBwdMaxBlocks ? (wanted > 0 ? wanted : 1) : CombaGatesTraits::kBwdMaxBlocks;
}

}  // namespace comba::nn::cuda
