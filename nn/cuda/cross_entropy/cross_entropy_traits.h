// Tiling of the cross-entropy row kernels: one block of kThreads threads per row, each
// thread Vec adjacent logits per access (16 bytes).
//
// Register form (vectorised rows of up to kThreads x Vec x kMaxHeld logits): a thread
// loads its Held vectors of the row at once and keeps them, so the row is read from memory
// once and written once (the gradient in place). Looping form (the rest): the row is read
// twice (the softmax sums, then the gradient), one vector at a time.
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

struct CrossEntropyTraits {
  static constexpr int kThreads = 512;
  static constexpr int kVecBytes = 16;
  // Register form compiled for Held = 2, 4, 8 and kMaxHeld vectors per thread.
  static constexpr int kMaxHeld = 16;
};

// Vectors per thread of the register form for rows of `vocab` at `vec` elements per access:
// the smallest compiled count that covers the row, 0 for the looping form.
inline int cross_entropy_held(int64_t vocab, int vec) {
  const int64_t per_pass = static_cast<int64_t>(CrossEntropyTraits::kThreads) * vec;
  const int64_t needed = (vocab + per_pass - 1) / per_pass;
  for (int held = 2; held <= CrossEntropyTraits::kMaxHeld; held *= 2) {
    if (needed <= held) return held;
  }
  return 0;
}

}  // namespace comba::nn::cuda
