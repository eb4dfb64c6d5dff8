// Host-side facts of the kernel folder (ops/cuda), checked without a GPU: the shared-memory
// carve-out helper lays regions end to end, the chunk family's named tile constants keep
// the values the kernels were written for, both kernel families' parameters start with the
// one input struct, and (with the CUDA toolkit) the one dispatch idiom picks exactly the
// compiled instantiation.
#include <gtest/gtest.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../../ops/cuda/chunk/chunk_params.h"
#include "../../ops/cuda/chunk/chunk_traits.h"
#include "../../ops/cuda/recurrent/recurrent_params.h"
#include "../../ops/cuda/recurrent/recurrent_traits.h"
#include "../../ops/cuda/smem_carve.h"
#if defined(COMBA_TEST_DISPATCH)
#include "../../ops/cuda/dispatch.cuh"
#endif

namespace comba::cuda {
namespace {

TEST(SmemCarve, LaysRegionsEndToEnd) {
  using Carve = SmemCarve<16, 32, 48>;
  static_assert(Carve::kRegions == 3);
  EXPECT_EQ(Carve::at(0), 0);
  EXPECT_EQ(Carve::at(1), 16);
  EXPECT_EQ(Carve::at(2), 48);
  EXPECT_EQ(Carve::at(3), 96);
  EXPECT_EQ(Carve::kBytes, 96);
  EXPECT_EQ(smem_max(96, 112), 112);
  EXPECT_EQ(SmemCarve<kMaxSmemBytes>::kBytes, 227 * 1024);
}

TEST(ChunkTraits, NamedConstantsKeepTheTiling) {
  EXPECT_EQ(kChunk, 64);
  EXPECT_EQ(1 << kChunkLog2, kChunk);
  EXPECT_EQ(log2_exact(1), 0);
  EXPECT_EQ(log2_exact(8), 3);
  EXPECT_EQ(log2_exact(256), 8);
  // The unit-lower inverse's scratch: 16 x 16 blocks at row stride 24, a 32 x 32 product
  // at row stride 40, in 32 x 40 16-bit elements.
  EXPECT_EQ(chunk::kInvLdBlock, 24);
  EXPECT_EQ(chunk::kInvLdHalf, 40);
  EXPECT_EQ(chunk::kInvScratchElems, 32 * 40);
  EXPECT_EQ(chunk::kThreads, 256);
  EXPECT_EQ(chunk::kVec16 * 2, 16);
  for (int k = 1; k <= kChunkMaxKeyDim; ++k) {
    const int kp = chunk_padded_key_dim(k);
    EXPECT_GE(kp, k);
    EXPECT_EQ(chunk_key_split(kp), kp > kChunkKeyHalf);
  }
}

// Packed sequences: the scans split off the long ones only where that changes their width,
// and the order holds every sequence once, short ones first.
// Every sequence in exactly one walk, the walk offsets increasing from 0 to N.
void expect_plan_covers(const ChunkTraits::ScanPlan& plan, size_t sequences) {
  ASSERT_EQ(plan.order.size(), sequences);
  ASSERT_FALSE(plan.walks.empty());
  EXPECT_EQ(plan.walks.front(), 0);
  EXPECT_EQ(plan.walks.back(), static_cast<int>(sequences));
  EXPECT_TRUE(std::is_sorted(plan.walks.begin(), plan.walks.end()));
  std::vector<int> sorted = plan.order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < static_cast<int>(sorted.size()); ++i) EXPECT_EQ(sorted[i], i);
}

TEST(ChunkTraits, ScanPlanWalksShortSequencesInOneWaveAndLongOnesAlone) {
  constexpr int kSms = 132;
  // Dense-like: every sequence long (within 2x of the longest): no plan, one launch.
  EXPECT_TRUE(ChunkTraits::plan_scans({32, 32, 20, 17}, 16, 128, kSms).order.empty());
  // One long document among 60 one-chunk ones, 16 heads: the short ones fill the GPU at 64
  // columns, the long one alone picks 16.
  std::vector<int> chunks(61, 1);
  chunks[7] = 469;
  chunks[0] = 0;  // an empty sequence is a short one
  ASSERT_EQ(ChunkTraits::scan_columns(61 * 16, 128, kSms), 64);
  ASSERT_EQ(ChunkTraits::scan_columns(16, 128, kSms), 16);
  const auto plan = ChunkTraits::plan_scans(chunks, 16, 128, kSms);
  expect_plan_covers(plan, chunks.size());
  // 16 heads x 2 slices of 64 columns = 32 CTAs a walk: 4 walks fill 132 SMs once.
  ASSERT_EQ(plan.short_walks, 4);
  ASSERT_EQ(plan.walks.size(), 4u + 1u + 1u);
  EXPECT_EQ(plan.order.back(), 7);  // the long one: the second launch's one walk
  EXPECT_EQ(plan.walks[4], 60);
  EXPECT_EQ(ChunkTraits::scan_columns(4 * 16, 128, kSms), 64);
  // 59 chunks over 4 walks: 15, 15, 15, 14.
  for (int w = 0; w < 4; ++w) {
    int walk_chunks = 0;
    for (int j = plan.walks[w]; j < plan.walks[w + 1]; ++j) walk_chunks += chunks[plan.order[j]];
    EXPECT_GE(walk_chunks, 14) << "walk " << w;
    EXPECT_LE(walk_chunks, 15) << "walk " << w;
  }
  // Uneven short ones are balanced by chunks, longest first: {9, 8, 1, 1, 1} over 3
  // walks (one head, V = 64, 3 SMs: the long one alone picks 32 columns) gives 9, 8 and
  // 1 + 1 + 1.
  const std::vector<int> uneven = {1, 9, 1, 8, 1, 40};
  const auto three = ChunkTraits::plan_scans(uneven, 1, 64, 3);
  expect_plan_covers(three, uneven.size());
  ASSERT_EQ(three.short_walks, 3);
  EXPECT_EQ(three.walks, (std::vector<int>{0, 1, 2, 5, 6}));
  EXPECT_EQ(three.order, (std::vector<int>{1, 3, 0, 2, 4, 5}));
  // More walks than short sequences are never made.
  const auto few = ChunkTraits::plan_scans({1, 0, 300}, 32, 64, kSms);
  expect_plan_covers(few, 3);
  EXPECT_EQ(few.short_walks, 2);
  // Many long ones pick the same width as all: no plan.
  std::vector<int> many(200, 1);
  for (int i = 0; i < 100; ++i) many[i] = 50;
  EXPECT_TRUE(ChunkTraits::plan_scans(many, 16, 128, kSms).order.empty());
  // All empty: nothing to plan.
  EXPECT_TRUE(ChunkTraits::plan_scans({0, 0, 0}, 4, 64, kSms).order.empty());
}

TEST(KernelInputs, BothFamiliesStartWithTheOneInputStruct) {
  static_assert(std::is_base_of_v<CombaKernelInputs, ChunkParams>);
  static_assert(std::is_base_of_v<CombaKernelInputs, RecurrentFwdParams>);
  static_assert(std::is_base_of_v<CombaKernelInputs, RecurrentDecodeParams>);
  // The recurrent forward's size, hence every RecurrentBwdParams offset, is unchanged.
  EXPECT_EQ(sizeof(RecurrentFwdParams), 144u);
  RecurrentFwdParams r;
  CombaKernelInputs& in = r;
  in.key_dim = 96;
  in.use_l2norm = true;
  EXPECT_EQ(r.key_dim, 96);
  EXPECT_TRUE(r.use_l2norm);
  EXPECT_EQ(r.o, nullptr);
}

TEST(RecurrentTraits, CompiledTilesAreKnownAtCompileTime) {
  static_assert(recurrent_tile_compiled(16, 2));
  static_assert(!recurrent_tile_compiled(32, 4));
  EXPECT_EQ(RecurrentTraits::kThreads, RecurrentTraits::kWarps * RecurrentTraits::kLanes);
  EXPECT_EQ(kRecurrentSegment % kRecurrentSubSegment, 0);
}

#if defined(COMBA_TEST_DISPATCH)
TEST(KernelDispatch, ValuePicksTheCompiledConstantOnly) {
  std::vector<int> seen;
  auto record = [&](auto v) {
    seen.push_back(decltype(v)::value);
    return decltype(v)::value + 1;
  };
  EXPECT_EQ((dispatch_value<64, 128, 256>(128, record)), 129);
  EXPECT_EQ((dispatch_value<64, 128, 256>(256, record)), 257);
  EXPECT_EQ((dispatch_value<64, 128, 256>(96, record)), kNotCompiled);
  EXPECT_EQ(seen, (std::vector<int>{128, 256}));
}

TEST(KernelDispatch, DtypePicksTheCompiledElementTypeOnly) {
  auto bytes = [](auto tag) { return static_cast<int>(sizeof(tag)) + 100; };
  using core::ElementType;
  EXPECT_EQ((dispatch_dtype<__nv_bfloat16, __half>(ElementType::kBFloat16, bytes)), 102);
  EXPECT_EQ((dispatch_dtype<__nv_bfloat16, __half>(ElementType::kFloat16, bytes)), 102);
  EXPECT_EQ((dispatch_dtype<__nv_bfloat16, __half>(ElementType::kFloat32, bytes)), kNotCompiled);
  EXPECT_EQ((dispatch_dtype<float, __half, __nv_bfloat16>(ElementType::kFloat32, bytes)), 104);
  // The bf16 tag is the bf16 type (not only a 2-byte one).
  EXPECT_EQ((dispatch_dtype<__nv_bfloat16>(ElementType::kBFloat16,
                                          [](auto tag) { return std::is_same_v<decltype(tag), __nv_bfloat16> ? 1 : 0; })),
            1);
}
#endif

}  // namespace
}  // namespace comba::cuda
