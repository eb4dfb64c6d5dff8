// Tiling of the decay / correction kernels. The forward is a flat grid-stride loop over
// vectors (the head of each vector from its flat index). The backward gives every vector
// slot of a row (heads x dim / Vec slots) one thread, and a block kRowsPerPass(slots) rows
// per pass over a fixed grid of at most kBwdMaxBlocks blocks: a thread always owns the same
// slot, so its two sums stay in registers; the block adds its threads per head in order into
// one partial row and a column sum adds the blocks in order: the same bits every run.
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

struct DecayCorrectionTraits {
  static constexpr int kThreads = 256;  // forward block; the backward's target size
  static constexpr int64_t kFwdMaxBlocks = 65536;
  static constexpr int64_t kBwdMaxBlocks = 1024;
  static constexpr int kMaxSlots = 1024;  // vector slots per row the backward takes
  static constexpr int kVecBytes = 16;
};

// Vector slots of one row in the backward (one thread each): heads x dim / vec.
inline int decay_correction_slots(int64_t heads, int64_t dim, int vec) { return static_cast<int>(heads * dim / vec); }

inline int decay_correction_rows_per_pass(int slots) {
  const int rows = DecayCorrectionTraits::kThreads / (slots > 0 ? slots : 1);
  return rows > 0 ? rows : 1;
}

inline int64_t decay_correction_fwd_blocks(int64_t vectors) {
  const int64_t wanted = (vectors + DecayCorrectionTraits::kThreads - 1) / DecayCorrectionTraits::kThreads;
  return wanted < DecayCorrectionTraits::kFwdMaxBlocks ? (wanted > 0 ? wanted : 1)
                                                       : DecayCorrectionTraits::kFwdMaxBlocks;
}

inline int64_t decay_correction_bwd_blocks(int64_t rows, int slots) {
  const int64_t per_pass = decay_correction_rows_per_pass(slots);
  const int64_t wanted = (rows + per_pass - 1) / per_pass;
  return wanted < DecayCorrectionTraits::kBwdMaxBlocks ? (wanted > 0 ? wanted : 1)
                                                       : DecayCorrectionTraits::kBwdMaxBlocks;
}

}  // namespace comba::nn::cuda
