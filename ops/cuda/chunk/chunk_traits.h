// Tile constants of the chunked kernels (one place): the chunk length, the CTA shape, the
// key tiles, the row padding of shared tiles, the blocks of the unit-lower inverse, and the
// scans' state-column split. Plain C++: host launchers and kernels include the same file.
#pragma once
#include <algorithm>
#include <initializer_list>
#include <vector>

namespace comba::cuda {

// log2 of a power of two (compile-time shifts that replace divisions).
constexpr int log2_exact(int n) {
  int shift = 0;
  while ((1 << shift) < n) ++shift;
  return shift;
}

// Tokens per chunk. The kernels build in that it is 64: a CTA's 8 warps cover its rows as
// 4 x 16 (mma tiles), the gate prefix sum gives warp 0's lanes two tokens each, the norms
// four threads per row, and index walks over a chunk's rows shift by kChunkLog2.
inline constexpr int kChunk = 64;
inline constexpr int kChunkLog2 = log2_exact(kChunk);
static_assert(kChunk == 64 && (1 << kChunkLog2) == kChunk, "the chunked kernels' tiling assumes chunks of 64 tokens");

// Largest key head dim the chunked kernels take (KP in {64, 128, 256}).
inline constexpr int kChunkMaxKeyDim = 256;
inline int chunk_padded_key_dim(int key_dim) { return key_dim <= 64 ? 64 : key_dim <= 128 ? 128 : 256; }

// Wider key tiles are walked in halves of kChunkKeyHalf columns by the gradient kernel
// (its [64 x K] accumulators would not fit the registers). It then writes the q / k / p
// gradients in fp32 per value head and before the l2norm, which the host applies.
inline constexpr int kChunkKeyHalf = 128;
inline constexpr bool chunk_key_split(int kp) { return kp > kChunkKeyHalf; }

namespace chunk {

inline constexpr int kThreads = 256;  // 8 warps in every chunked kernel
inline constexpr int kPad = 8;        // 16 bytes of row padding: conflict-free ldmatrix
static_assert(kThreads == 4 * kChunk, "norms_and_decay gives each chunk row four threads");
static_assert(kChunk == 2 * 32, "the gate prefix sum gives each lane of one warp two tokens");

// 16-bit elements per 16-byte vector (cp.async, uint4 copies).
inline constexpr int kVec16 = 8;

// Row stride of the prep kernel's W [64 x KP], Mqk and Tu [64 x 64] tiles in the
// workspace: padded as in the scans' shared memory, so that one bulk copy moves a tile.
inline constexpr int workspace_ld(int cols) { return cols + kPad; }

// The unit-lower inverse of a chunk: kInvBlock x kInvBlock diagonal blocks (one mma tile)
// solved per thread, then doubled 16 -> 32 -> 64 on tensor cores. Its scratch holds
// 16-bit products with rows padded by kPad: two 16 x 16 blocks (row stride kInvLdBlock)
// in the first step, one 32 x 32 (row stride kInvLdHalf) in the second.
inline constexpr int kInvBlock = 16;
inline constexpr int kInvLdBlock = kInvBlock + kPad;      // 24
inline constexpr int kInvLdHalf = 2 * kInvBlock + kPad;   // 40
inline constexpr int kInvScratchElems = 2 * kInvBlock * kInvLdHalf;  // 32 x 40
static_assert(2 * kInvBlock * kInvLdBlock <= kInvScratchElems, "two 16 x 16 blocks must fit the scratch");
static_assert(4 * kInvBlock == kChunk, "the inverse doubles 16 -> 32 -> 64");

}  // namespace chunk

struct ChunkTraits {
  static constexpr int kWidestScanColumns = 64;
  // The scans run one CTA per (sequence, value head, BV columns), one CTA per SM (their
  // shared memory): the widest slice that still fills half the GPU, narrower ones when
  // there are too few (sequence, head) pairs. A second wave of narrow slices costs more
  // than idle SMs under one wave of wide ones (H100, bf16 forward: B2 T2048 H8 K256 V512
  // 0.36 ms with 128 CTAs of 64 columns, 0.50 with 256 of 32; B4 T4096 H6 V256 0.37
  // with 96 CTAs of 64, 0.50 with 192 of 32).
  static int scan_columns(long long seqs_x_heads, int value_dim, int num_sms) {
    for (int bv : {kWidestScanColumns, 32}) {
      if (2 * seqs_x_heads * ((value_dim + bv - 1) / bv) >= num_sms) return bv;
    }
    return 16;
  }

  // Packed sequences of very different lengths. A scan CTA walks its sequences' chunks one
  // after another, so one long document among many short ones sets the scan's time, and
  // the width chosen for all of them (wide: there are many) leaves the long one's few CTAs
  // long serial walks. The scans then run in two launches, each CTA z walking the
  // sequences order[walks[z], walks[z + 1]) in turn:
  //  - first the short sequences, binned into as many walks as fill one wave at 64 columns
  //    (balanced by chunks, longest first). One CTA per one-chunk sequence would pay a
  //    stage load and a launch slot per chunk; a walk prefetches across its sequences.
  //  - then the long ones (at least half the longest's chunks), one walk each, at the
  //    width their count picks: narrow when they are few.
  // No plan (order empty): one launch over all sequences in order does as well: every
  // sequence is long (or all are empty), or both groups would get the same width.
  struct ScanPlan {
    std::vector<int> order;  // sequence ids, walk after walk
    std::vector<int> walks;  // [W + 1] offsets into order
    int short_walks = 0;     // the first launch's walks; the rest are the long sequences
  };
  static ScanPlan plan_scans(const std::vector<int>& chunks_per_seq, long long value_heads, int value_dim,
                             int num_sms) {
    ScanPlan plan;
    const int most = chunks_per_seq.empty() ? 0 : *std::max_element(chunks_per_seq.begin(), chunks_per_seq.end());
    auto is_long = [&](int chunks) { return 2 * chunks >= most && chunks > 0; };
    const int all = static_cast<int>(chunks_per_seq.size());
    const int long_count = static_cast<int>(std::count_if(chunks_per_seq.begin(), chunks_per_seq.end(), is_long));
    if (long_count == 0 || long_count == all ||
        scan_columns(static_cast<long long>(long_count) * value_heads, value_dim, num_sms) ==
            scan_columns(static_cast<long long>(all) * value_heads, value_dim, num_sms)) {
      return plan;
    }
    std::vector<int> shorts;
    for (int seq = 0; seq < all; ++seq) {
      if (!is_long(chunks_per_seq[seq])) shorts.push_back(seq);
    }
    const long long ctas_per_walk = value_heads * ((value_dim + kWidestScanColumns - 1) / kWidestScanColumns);
    const int walks = static_cast<int>(std::clamp<long long>(num_sms / ctas_per_walk, 1, static_cast<long long>(shorts.size())));
    // Longest first onto the least loaded walk (ties: the lower walk).
    std::stable_sort(shorts.begin(), shorts.end(),
                     [&](int a, int b) { return chunks_per_seq[a] > chunks_per_seq[b]; });
    std::vector<std::vector<int>> bins(walks);
    std::vector<long long> load(walks, 0);
    for (const int seq : shorts) {
      const auto w = std::min_element(load.begin(), load.end()) - load.begin();
      bins[w].push_back(seq);
      load[w] += chunks_per_seq[seq];
    }
    plan.walks.push_back(0);
    for (const auto& bin : bins) {
      plan.order.insert(plan.order.end(), bin.begin(), bin.end());
      plan.walks.push_back(static_cast<int>(plan.order.size()));
    }
    plan.short_walks = walks;
    for (int seq = 0; seq < all; ++seq) {
      if (is_long(chunks_per_seq[seq])) {
        plan.order.push_back(seq);
        plan.walks.push_back(static_cast<int>(plan.order.size()));
      }
    }
    return plan;
  }
};

}  // namespace comba::cuda
