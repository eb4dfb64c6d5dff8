// Tiling of the fused recurrent kernel. A CTA owns kWarps warps and 32 * Vec state
// columns of one (sequence, value head): each lane keeps Vec adjacent columns (16-byte
// state accesses when Vec = 4) and each warp a slab of Rows state rows, so the fp32
// state lives in registers and a warp touches whole 128- or 512-byte lines. Reductions
// over K go through shared memory across warps.
#pragma once

namespace comba::cuda {

struct RecurrentTraits {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  // Largest Rows * Vec kept per thread without spilling (registers for the state).
  static constexpr int kMaxStatePerThread = 64;
};

struct RecurrentTile {
  int rows;  // state rows per thread: K / kWarps rounded up to a compiled size
  int vec;   // adjacent state columns per lane: 4 when V allows it, else 1
};

inline RecurrentTile recurrent_tile(int key_dim, int value_dim) {
  const int need = (key_dim + RecurrentTraits::kWarps - 1) / RecurrentTraits::kWarps;
  int rows = -1;
  for (int r : {2, 4, 8, 16, 32}) {
    if (need <= r) {
      rows = r;
      break;
    }
  }
  const bool wide = value_dim % 4 == 0 && rows * 4 <= RecurrentTraits::kMaxStatePerThread;
  return {rows, wide ? 4 : 1};
}

}  // namespace comba::cuda
