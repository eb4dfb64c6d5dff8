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
TEST(ChunkTraits, ScanSplitsLongSequencesOffOnlyWhenTheirWidthDiffers) {
  constexpr int kSms = 132;
  std::vector<int> order;
  // Dense-like: every sequence long (within 2x of the longest): one launch.
  EXPECT_EQ(ChunkTraits::split_scan_sequences({32, 32, 20, 17}, 16, 128, kSms, order), 0);
  EXPECT_TRUE(order.empty());
  // One long document among 60 one-chunk ones, 16 heads: the short ones fill the GPU at 64
  // columns, the long one alone picks 16.
  std::vector<int> chunks(61, 1);
  chunks[7] = 469;
  chunks[0] = 0;  // an empty sequence is a short one
  ASSERT_EQ(ChunkTraits::scan_columns(61 * 16, 128, kSms), 64);
  ASSERT_EQ(ChunkTraits::scan_columns(16, 128, kSms), 16);
  const int short_count = ChunkTraits::split_scan_sequences(chunks, 16, 128, kSms, order);
  EXPECT_EQ(short_count, 60);
  ASSERT_EQ(order.size(), chunks.size());
  EXPECT_EQ(order.back(), 7);
  std::vector<int> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < static_cast<int>(sorted.size()); ++i) EXPECT_EQ(sorted[i], i);
  for (int i = 0; i < short_count; ++i) EXPECT_LT(2 * chunks[order[i]], 469);
  // Many long ones pick the same width as all: one launch.
  std::vector<int> many(200, 1);
  for (int i = 0; i < 100; ++i) many[i] = 50;
  EXPECT_EQ(ChunkTraits::split_scan_sequences(many, 16, 128, kSms, order), 0);
  // All empty: nothing to split.
  EXPECT_EQ(ChunkTraits::split_scan_sequences({0, 0, 0}, 4, 64, kSms, order), 0);
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
