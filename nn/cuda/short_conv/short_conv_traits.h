// Tiling of the short-convolution kernels. A thread owns kVec adjacent channels and a run
// of kTileLen consecutive tokens. A run inside one sequence loads all its rows (plus the
// kMaxTaps - 1 halo, mostly L2 hits) at once into registers: the kernels are bound by how
// many loads are in flight, and a run walking its rows one at a time kept one (measured:
// 32-token runs with a one-row prefetch moved ~1.1 TB/s). Runs that touch a sequence's
// ends slide a window of the last kMaxTaps inputs over their tokens instead.
// A block is kThreadsC threads along channels (one warp: 32 x kVec contiguous channels
// of a row per access) times kRows runs along tokens.
//
// Every kernel size up to kMaxTaps runs in the kMaxTaps-wide window: a conv of `taps`
// taps is the kMaxTaps conv whose first kMaxTaps - taps weights are zero, so one
// instantiation serves all sizes. Window slot j (0 = oldest) pairs with weight
// j - (kMaxTaps - taps).
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

struct ShortConvTraits {
  static constexpr int kMaxTaps = 4;   // fla's short convolutions use 4
  static constexpr int kVec = 4;       // channels per thread (8 bytes of bf16, 16 of fp32)
  static constexpr int kTileLen = 8;   // tokens per thread
  static constexpr int kThreadsC = 32;
  static constexpr int kRows = 4;
  static constexpr int kThreads = kThreadsC * kRows;
  static constexpr int kTokensPerBlock = kTileLen * kRows;
  static_assert(kThreadsC == 32, "a warp spans the channels of one row");
};

inline int64_t short_conv_blocks_for(int64_t tokens) {
  return (tokens + ShortConvTraits::kTokensPerBlock - 1) / ShortConvTraits::kTokensPerBlock;
}

}  // namespace comba::nn::cuda
