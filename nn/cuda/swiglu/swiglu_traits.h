// Tiling of the SwiGLU kernels: a flat grid-stride loop over vectors of Vec adjacent
// elements of one row (16 bytes per access), kThreads per block, at most kMaxBlocks blocks.
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

struct SwiGLUTraits {
  static constexpr int kThreads = 256;
  static constexpr int64_t kMaxBlocks = 65536;
  // Bytes per vector access.
  static constexpr int kVecBytes = 16;
};

inline int64_t swiglu_blocks(int64_t vectors) {
  const int64_t wanted = (vectors + SwiGLUTraits::kThreads - 1) / SwiGLUTraits::kThreads;
  return wanted < SwiGLUTraits::kMaxBlocks ? (wanted > 0 ? wanted : 1) : SwiGLUTraits::kMaxBlocks;
}

}  // namespace comba::nn::cuda
