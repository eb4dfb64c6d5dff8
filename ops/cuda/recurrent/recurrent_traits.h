// Tiling of the fused recurrent kernels (one place). A CTA owns kWarps warps and kLanes * Vec state
// columns of one (sequence, value head): each lane keeps Vec adjacent columns (8- or
// 16-byte state accesses when Vec = 2 or 4) and each warp a slab of Rows state rows, so
// the fp32 state lives in registers and a warp touches whole 128- or 512-byte lines.
// Reductions over K go through shared memory across warps, over V through shuffles.
#pragma once
#include <initializer_list>

namespace comba::cuda {

// Tokens per checkpoint segment: a training forward stores the state entering every
// segment, and the backward recomputes one segment's states at a time.
inline constexpr int kRecurrentSegment = 32;
// The backward keeps the state entering every kRecurrentSubSegment tokens of a segment
// and recomputes the states in between (a power of two dividing kRecurrentSegment).
inline constexpr int kRecurrentSubSegment = 8;
static_assert((kRecurrentSubSegment & (kRecurrentSubSegment - 1)) == 0 &&
                  kRecurrentSegment % kRecurrentSubSegment == 0,
              "a sub-segment is a power of two dividing the segment");

struct RecurrentTraits {
  static constexpr int kWarps = 8;
  static constexpr int kLanes = 32;  // a warp's lanes: a CTA covers kLanes * Vec state columns
  static constexpr int kThreads = kWarps * kLanes;
  // Largest Rows * Vec kept per thread without spilling: the forward holds the state,
  // the backward the state and its gradient.
  static constexpr int kMaxStatePerThread = 64;
  static constexpr int kMaxBwdStatePerThread = 32;
};

// Every (Rows, Vec) tile recurrent_tile or recurrent_bwd_tile can pick, as X(ROWS, VEC):
// the one list the instantiations and the dispatch are generated from.
#define COMBA_RECURRENT_TILES(X) \
  X(2, 1) X(4, 1) X(8, 1) X(16, 1) X(32, 1) X(16, 2) X(2, 4) X(4, 4) X(8, 4) X(16, 4)

struct RecurrentTile {
  int rows;  // state rows per thread: K / kWarps rounded up to a compiled size
  int vec;   // adjacent state columns per lane
};

inline int recurrent_rows(int key_dim) {
  const int need = (key_dim + RecurrentTraits::kWarps - 1) / RecurrentTraits::kWarps;
  for (int r : {2, 4, 8, 16, 32}) {
    if (need <= r) return r;
  }
  return -1;
}

// Forward: 4 columns per lane when V allows it, else 1. (Narrower tiles for small
// grids measured slower: 4.45 against 3.14 ms at fp32 B8 T2048 H16 on an H100.)
inline RecurrentTile recurrent_tile(int key_dim, int value_dim) {
  const int rows = recurrent_rows(key_dim);
  const bool wide = value_dim % 4 == 0 && rows * 4 <= RecurrentTraits::kMaxStatePerThread;
  return {rows, wide ? 4 : 1};
}

constexpr bool recurrent_tile_compiled(int rows, int vec) {
#define COMBA_IS_TILE(ROWS, VEC) \
  if (rows == ROWS && vec == VEC) return true;
  COMBA_RECURRENT_TILES(COMBA_IS_TILE)
#undef COMBA_IS_TILE
  return false;
}

// Decode step (T = 1): one state read and write per CTA, so what counts is enough CTAs.
// The widest columns per lane whose CTAs still fill half the GPU, else 1 (H100, bf16,
// H16 K=V=128, kernel time: B1 4.5 us with 64 CTAs of 1 column per lane against 6.3
// with 16 of 4; B4 5.1 us with 2 columns against 6.6 with 4; from B16 on 4 columns).
// max_vec: the most columns per lane the state buffers' alignment allows.
inline RecurrentTile recurrent_decode_tile(int key_dim, int value_dim, long long seqs_x_heads,
                                           int num_sms, int max_vec = 4) {
  const int rows = recurrent_rows(key_dim);
  for (int vec : {4, 2}) {
    const int columns = RecurrentTraits::kLanes * vec;
    const long long ctas = seqs_x_heads * ((value_dim + columns - 1) / columns);
    if (vec <= max_vec && value_dim % vec == 0 && rows * vec <= RecurrentTraits::kMaxStatePerThread &&
        recurrent_tile_compiled(rows, vec) && 2 * ctas >= num_sms) {
      return {rows, vec};
    }
  }
  return {rows, 1};
}

// Backward: 4 columns per lane when V and the registers allow it, 2 for the 16-row tile
// (K in (64, 128]), else 1.
inline RecurrentTile recurrent_bwd_tile(int key_dim, int value_dim) {
  const int rows = recurrent_rows(key_dim);
  if (value_dim % 4 == 0 && rows * 4 <= RecurrentTraits::kMaxBwdStatePerThread) return {rows, 4};
  if (value_dim % 2 == 0 && rows == 16) return {rows, 2};
  return {rows, 1};
}

}  // namespace comba::cuda
