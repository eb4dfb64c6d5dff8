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
  // The scans run one CTA per (sequence, value head, BV columns), one CTA per SM (their
  // shared memory): the widest slice that still fills half the GPU, narrower ones when
  // there are too few (sequence, head) pairs. A second wave of narrow slices costs more
  // than idle SMs under one wave of wide ones (H100, bf16 forward: B2 T2048 H8 K256 V512
  // 0.36 ms with 128 CTAs of 64 columns, 0.50 with 256 of 32; B4 T4096 H6 V256 0.37
  // with 96 CTAs of 64, 0.50 with 192 of 32).
  static int scan_columns(long long seqs_x_heads, int value_dim, int num_sms) {
    for (int bv : {64, 32}) {
      if (2 * seqs_x_heads * ((value_dim + bv - 1) / bv) >= num_sms) return bv;
    }
    return 16;
  }

  // Packed sequences: a scan CTA walks its sequence's chunks one after another, so one
  // long document among many short ones sets the scan's time, and the columns chosen for
  // all of them (wide: there are many) leave its few CTAs long serial walks. The scans then
  // run in two launches: first the short sequences at the width their count picks, then
  // the long ones (at least half the longest's chunks) at theirs: narrow when they are few.
  // Returns the short sequences' count, with `order` = the sequence ids, short ones first;
  // 0 (order empty) when one launch in the natural order does as well: every sequence is
  // long (or all are empty), or both groups would get the same width.
  static int split_scan_sequences(const std::vector<int>& chunks_per_seq, long long value_heads,
                                  int value_dim, int num_sms, std::vector<int>& order) {
    order.clear();
    const int most = chunks_per_seq.empty() ? 0 : *std::max_element(chunks_per_seq.begin(), chunks_per_seq.end());
    auto is_long = [&](int chunks) { return 2 * chunks >= most && chunks > 0; };
    const long long long_count = std::count_if(chunks_per_seq.begin(), chunks_per_seq.end(), is_long);
    const long long all = static_cast<long long>(chunks_per_seq.size());
    if (long_count == 0 || long_count == all ||
        scan_columns(long_count * value_heads, value_dim, num_sms) == scan_columns(all * value_heads, value_dim, num_sms)) {
      return 0;
    }
    for (int pass = 0; pass < 2; ++pass) {
      for (int seq = 0; seq < static_cast<int>(all); ++seq) {
        if (is_long(chunks_per_seq[seq]) == (pass == 1)) order.push_back(seq);
      }
    }
    return static_cast<int>(all - long_count);
  }
};

}  // namespace comba::cuda
