// Host-side invariants of the fused recurrent kernels, checked without a GPU:
// every head-dim pair the kernels accept maps to a compiled tile (else the launch fails
// at run time), the backward's per-thread state fits its register budget, and the state
// checkpoints of packed sequences never share a slot and stay inside the allocation.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <utility>
#include <vector>

#include "../../ops/cuda/recurrent/recurrent_params.h"
#include "../../ops/cuda/recurrent/recurrent_traits.h"

namespace comba::cuda {
namespace {

std::set<std::pair<int, int>> compiled_tiles() {
  std::set<std::pair<int, int>> tiles;
#define COMBA_TEST_TILE(ROWS, VEC) tiles.insert({ROWS, VEC});
  COMBA_RECURRENT_TILES(COMBA_TEST_TILE)
#undef COMBA_TEST_TILE
  return tiles;
}

TEST(RecurrentTiling, EveryHeadDimPairHasACompiledTile) {
  const auto tiles = compiled_tiles();
  for (int k = 1; k <= kRecurrentMaxKeyDim; ++k) {
    for (int v = 1; v <= 512; ++v) {
      const RecurrentTile fwd = recurrent_tile(k, v), bwd = recurrent_bwd_tile(k, v);
      ASSERT_TRUE(tiles.count({fwd.rows, fwd.vec})) << "forward K=" << k << " V=" << v;
      ASSERT_TRUE(tiles.count({bwd.rows, bwd.vec})) << "backward K=" << k << " V=" << v;
      // The warps' row slabs cover K; Vec columns per lane divide V (vector accesses).
      EXPECT_GE(fwd.rows * RecurrentTraits::kWarps, k);
      EXPECT_EQ(v % fwd.vec, 0) << "K=" << k << " V=" << v;
      EXPECT_EQ(v % bwd.vec, 0) << "K=" << k << " V=" << v;
      EXPECT_LE(fwd.rows * fwd.vec, RecurrentTraits::kMaxStatePerThread);
      EXPECT_LE(bwd.rows * bwd.vec, RecurrentTraits::kMaxBwdStatePerThread);
    }
  }
}

// The decode step's tile: compiled and in budget for every head-dim pair and grid size,
// and the measured choices at the model's K = V = 128 on 132 SMs.
TEST(RecurrentTiling, DecodeTileIsCompiledAndFillsTheGpu) {
  const auto tiles = compiled_tiles();
  for (int k = 1; k <= kRecurrentMaxKeyDim; k += 7) {
    for (int v = 1; v <= 512; v += 3) {
      for (const long long pairs : {1LL, 4LL, 40LL, 4096LL}) {
        const RecurrentTile t = recurrent_decode_tile(k, v, pairs, 132);
        ASSERT_TRUE(tiles.count({t.rows, t.vec})) << "K=" << k << " V=" << v << " pairs=" << pairs;
        EXPECT_EQ(v % t.vec, 0) << "K=" << k << " V=" << v;
        EXPECT_LE(t.rows * t.vec, RecurrentTraits::kMaxStatePerThread);
      }
    }
  }
  EXPECT_EQ(recurrent_decode_tile(128, 128, 16, 132).vec, 1);    // B1 H16: 64 CTAs
  EXPECT_EQ(recurrent_decode_tile(128, 128, 64, 132).vec, 2);    // B4 H16: 128 CTAs
  EXPECT_EQ(recurrent_decode_tile(128, 128, 4096, 132).vec, 4);  // B256 H16
  // State buffers aligned to fewer bytes than a 4-column vector cap the columns per lane.
  for (const int max_vec : {1, 2}) {
    for (const long long pairs : {1LL, 4096LL}) {
      const RecurrentTile t = recurrent_decode_tile(128, 128, pairs, 132, max_vec);
      EXPECT_LE(t.vec, max_vec);
      EXPECT_TRUE(tiles.count({t.rows, t.vec}));
    }
  }
}

// Packed sequences of random lengths (empty ones included): the slots of all segments of
// all sequences are distinct and below recurrent_checkpoint_slots.
TEST(RecurrentCheckpoints, SlotsAreDistinctAndInsideTheAllocation) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 40);
    std::vector<int64_t> lengths(n);
    for (auto& len : lengths) len = rng() % 4 == 0 ? 0 : static_cast<int64_t>(rng() % 200);
    int64_t bos = 0, total = 0;
    for (const auto len : lengths) total += len;
    const int64_t slots = recurrent_checkpoint_slots(total, n);
    std::set<int64_t> used;
    for (int seq = 0; seq < n; ++seq) {
      const int64_t segments = (lengths[seq] + kRecurrentSegment - 1) / kRecurrentSegment;
      for (int64_t s = 0; s < segments; ++s) {
        const int64_t slot = recurrent_first_slot(bos, seq) + s;
        ASSERT_LT(slot, slots) << "trial " << trial << " sequence " << seq;
        ASSERT_TRUE(used.insert(slot).second) << "trial " << trial << " sequence " << seq;
      }
      bos += lengths[seq];
    }
  }
}

// Dense batches are the packed case with equal lengths.
TEST(RecurrentCheckpoints, DenseBatchesFit) {
  for (const int64_t t : {1, 31, 32, 33, 64, 2048}) {
    const int64_t batch = 8, segments = (t + kRecurrentSegment - 1) / kRecurrentSegment;
    const int64_t last = recurrent_first_slot((batch - 1) * t, batch - 1) + segments - 1;
    EXPECT_LT(last, recurrent_checkpoint_slots(batch * t, batch)) << "T=" << t;
  }
}

}  // namespace
}  // namespace comba::cuda
