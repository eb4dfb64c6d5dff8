// Device helpers shared by the chunked kernels: where a chunk's tokens are, per-row
// reductions over the accumulator layout, the gate loads. No torch headers.
#pragma once
#include "../common.cuh"
#include "../smem_carve.h"
#include "chunk_params.h"
#include "chunk_traits.h"
#include "tile_mma.cuh"

namespace comba::cuda::chunk {

// Row and column of element idx of a row-major walk over a tile kCols wide, by shift and
// mask (kCols a power of two; the walks' indices are never negative).
template <int kCols>
struct RowWalk {
  static_assert(kCols > 0 && (kCols & (kCols - 1)) == 0, "RowWalk needs a power-of-two width");
  static constexpr int kShift = log2_exact(kCols);
  __device__ __forceinline__ static int row(int idx) { return idx >> kShift; }
  __device__ __forceinline__ static int col(int idx) { return idx & (kCols - 1); }
};
static_assert(RowWalk<kChunk>::kShift == kChunkLog2, "a chunk row walk shifts by kChunkLog2");

struct ChunkLoc {
  long long tok0;  // first token (row of the [B * T] or packed token axis)
  int len;         // tokens in this chunk, 1..64
  int seq;
};

__device__ __forceinline__ ChunkLoc locate_chunk(const ChunkParams& p, long long c) {
  ChunkLoc loc;
  if (p.cu_seqlens == nullptr) {
    const long long per_seq = (p.seq_len + kChunk - 1) / kChunk;
    const long long s = c / per_seq, i = c - s * per_seq;
    loc.seq = static_cast<int>(s);
    loc.tok0 = s * p.seq_len + i * kChunk;
    loc.len = static_cast<int>(p.seq_len - i * kChunk < kChunk ? p.seq_len - i * kChunk : kChunk);
  } else {  // the last sequence whose first chunk is <= c (skips empty sequences)
    int lo = 0, hi = p.num_seqs - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (p.chunk_offsets[mid] <= c) lo = mid; else hi = mid - 1;
    }
    loc.seq = lo;
    loc.tok0 = p.cu_seqlens[lo] + (c - p.chunk_offsets[lo]) * kChunk;
    loc.len = static_cast<int>(p.cu_seqlens[lo + 1] - loc.tok0 < kChunk ? p.cu_seqlens[lo + 1] - loc.tok0 : kChunk);
  }
  return loc;
}

// The chunks [first, first + count) of sequence `seq`.
__device__ __forceinline__ void sequence_chunks(const ChunkParams& p, int seq, long long& first,
                                                long long& count) {
  if (p.cu_seqlens == nullptr) {
    const long long per_seq = (p.seq_len + kChunk - 1) / kChunk;
    first = seq * per_seq;
    count = per_seq;
  } else {
    first = p.chunk_offsets[seq];
    count = p.chunk_offsets[seq + 1] - first;
  }
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Row sums over a 64-row tile split by columns between two warp halves (warp >> 2), in
// a fixed order (deterministic). p0, p1: this thread's partials for its rows
// m0 + lane / 4 and m0 + lane / 4 + 8; on return, the rows' totals. All threads call it.
__device__ __forceinline__ void block_row_sums(float& p0, float& p1, float* red, int m0) {
  const int lane = threadIdx.x & 31, half = threadIdx.x >> 7;
  p0 += __shfl_xor_sync(0xffffffffu, p0, 1);
  p0 += __shfl_xor_sync(0xffffffffu, p0, 2);
  p1 += __shfl_xor_sync(0xffffffffu, p1, 1);
  p1 += __shfl_xor_sync(0xffffffffu, p1, 2);
  const int r = m0 + (lane >> 2);
  if ((lane & 3) == 0) {
    red[half * kChunk + r] = p0;
    red[half * kChunk + r + 8] = p1;
  }
  __syncthreads();
  p0 = red[r] + red[kChunk + r];
  p1 = red[r + 8] + red[kChunk + r + 8];
  __syncthreads();
}

// Multiplies each row r of an accumulator tile (rows m0 ..) by f[r].
template <int NT>
__device__ __forceinline__ void scale_rows(tile::Acc<1, NT>& a, const float* f, int m0) {
  const int lane = threadIdx.x & 31;
  const float f0 = f[m0 + tile::acc_row(lane, 0)], f1 = f[m0 + tile::acc_row(lane, 2)];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) a.v[0][nt][i] *= i < 2 ? f0 : f1;
}

// fn(row, col, x0, x1) for every pair of adjacent elements this lane holds of a 16-row
// accumulator tile placed at (m0, n0): x0, x1 (references into the tile) sit at columns
// col and col + 1.
template <typename AccTile, typename Fn>
__device__ __forceinline__ void for_each_acc_pair(AccTile& a, int m0, int n0, Fn&& fn) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int nt = 0; nt < AccTile::kColTiles; ++nt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = m0 + tile::acc_row(lane, 2 * half), col = n0 + nt * 8 + tile::acc_col(lane, 2 * half);
      fn(r, col, a.v[0][nt][2 * half], a.v[0][nt][2 * half + 1]);
    }
}

// Accumulator tile -> 16-bit shared tile (row stride ld), optionally negated.
template <typename T, int NT>
__device__ __forceinline__ void acc_to_smem(const tile::Acc<1, NT>& a, T* s, int ld, int m0, int n0,
                                            float sign = 1.f) {
  for_each_acc_pair(a, m0, n0, [&](int r, int col, float x0, float x1) {
    tile::store_pair(s + r * ld + col, sign * x0, sign * x1);
  });
}

// Accumulator tile -> global rows of stride ld (only rows < rows, columns < cols).
template <typename T, int NT>
__device__ __forceinline__ void acc_to_global(const tile::Acc<1, NT>& a, T* g, long long ld, int m0,
                                              int n0, int rows, int cols) {
  for_each_acc_pair(a, m0, n0, [&](int r, int col, float x0, float x1) {
    if (r < rows && col < cols) tile::store_pair(g + r * ld + col, x0, x1);
  });
}

// Row dot products of a [64 x n] accumulator tile (rows m0 + lane / 4 and + 8, columns
// n0 ..) with a 16-bit shared tile of the same layout, summed over the two warp halves:
// on return p0, p1 hold the full row sums for this thread's rows. All threads call it.
template <typename T, int NT>
__device__ __forceinline__ void block_row_dots(const tile::Acc<1, NT>& a, const T* s, int ld,
                                               int m0, int n0, float* red, float& p0, float& p1) {
  const int lane = threadIdx.x & 31, r0 = m0 + (lane >> 2), r1 = r0 + 8;
  p0 = 0.f;
  p1 = 0.f;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int col = n0 + nt * 8 + tile::acc_col(lane, i);
      (i < 2 ? p0 : p1) += a.v[0][nt][i] * to_float(s[(i < 2 ? r0 : r1) * ld + col]);
    }
  block_row_sums(p0, p1, red, m0);
}

// Whether this thread writes per-row results for its rows (one writer per row).
__device__ __forceinline__ bool row_owner() {
  return (threadIdx.x >> 7) == 0 && (threadIdx.x & 3) == 0;
}

// Loads the chunk's q, k, p tiles (raw, zero-padded to 64 x KP) with cp.async (not
// committed) and its gates into shared memory (0 past the chunk's end).
template <typename T, int KP>
__device__ __forceinline__ void load_qkp_gates(const ChunkParams& p, const ChunkLoc& loc, int hv,
                                               T* sQ, T* sK, T* sP, float* s_g, float* s_beta) {
  constexpr int LDK = KP + kPad;
  const int h = hv / (p.value_heads / p.heads);
  const long long ld = static_cast<long long>(p.heads) * p.key_dim;
  const long long off = loc.tok0 * ld + static_cast<long long>(h) * p.key_dim;
  tile::load_tile_async<T, kThreads, kChunk, KP>(sQ, LDK, static_cast<const T*>(p.q) + off, ld, loc.len, p.key_dim);
  tile::load_tile_async<T, kThreads, kChunk, KP>(sK, LDK, static_cast<const T*>(p.k) + off, ld, loc.len, p.key_dim);
  tile::load_tile_async<T, kThreads, kChunk, KP>(sP, LDK, static_cast<const T*>(p.p) + off, ld, loc.len, p.key_dim);
  const int t = threadIdx.x;
  if (t < kChunk) {
    float g = 0.f, b = 0.f;
    if (t < loc.len) {
      const long long idx = (loc.tok0 + t) * p.value_heads + hv;
      g = load_either<T>(p.g, idx, p.g_fp32);
      b = p.beta ? load_either<T>(p.beta, idx, p.beta_fp32) : 1.f;
    }
    s_g[t] = g;
    s_beta[t] = b;
  }
}

// Row reciprocal norms (l2norm) of q, k, p, and the in-chunk inclusive / exclusive
// cumulative sums of g. Call after the loads have landed; ends with a barrier.
template <typename T, int KP>
__device__ __forceinline__ void norms_and_decay(const ChunkParams& p, const T* sQ, const T* sK,
                                                const T* sP, const float* s_g, float* s_rq,
                                                float* s_rk, float* s_rp, float* s_G,
                                                float* s_G0) {
  constexpr int LDK = KP + kPad, kQuarter = KP / 4, kVec = kVec16;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  {  // four threads per row, 16-byte loads
    const int r = threadIdx.x >> 2, quarter = threadIdx.x & 3;
#pragma unroll
    for (int which = 0; which < 3; ++which) {
      const T* row = (which == 0 ? sQ : which == 1 ? sK : sP) + r * LDK + quarter * kQuarter;
      float ss = 0.f;
#pragma unroll
      for (int c = 0; c < kQuarter; c += kVec) {
        const uint4 u = *reinterpret_cast<const uint4*>(row + c);
        const T* x = reinterpret_cast<const T*>(&u);
#pragma unroll
        for (int e = 0; e < kVec; ++e) ss += to_float(x[e]) * to_float(x[e]);
      }
      ss += __shfl_xor_sync(0xffffffffu, ss, 1);
      ss += __shfl_xor_sync(0xffffffffu, ss, 2);
      if (quarter == 0) {
        float* out = which == 0 ? s_rq : which == 1 ? s_rk : s_rp;
        out[r] = p.use_l2norm ? rsqrtf(ss + static_cast<float>(kL2NormEps)) : 1.f;
      }
    }
  }
  if (warp == 0) {
    const float a = s_g[2 * lane], b = s_g[2 * lane + 1];
    float s = a + b;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float t = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s += t;
    }
    const float before = s - (a + b);
    s_G0[2 * lane] = before;
    s_G[2 * lane] = before + a;
    s_G0[2 * lane + 1] = before + a;
    s_G[2 * lane + 1] = before + a + b;
  }
  __syncthreads();
}

// T = (I + A)^-1 for a strictly lower-triangular 64 x 64 A (fp32 sA, row stride ldf).
// The 16 x 16 diagonal blocks are solved in fp32 (one column per thread, in registers);
// the blocks below them by doubling on tensor cores, with
//   inv([[X, 0], [C, Y]]) = [[X^-1, 0], [-Y^-1 C X^-1, Y^-1]]
// first for 16 -> 32 (two warps), then 32 -> 64 (four warps). Writes T in fp32 (sT) and
// as a 16-bit operand (sTo, row stride ldc); both must be zeroed before. sAo: room for A
// as 16-bit [64 x ldc]; scratch: kInvScratchElems 16-bit elements. Ends with a barrier.
template <typename T>
__device__ __forceinline__ void unit_lower_inverse(const float* sA, T* sAo, float* sT, T* sTo,
                                                   T* scratch, int ldf, int ldc) {
  constexpr int B = kInvBlock;
  using ChunkRow = RowWalk<kChunk>;
  using BlockRow = RowWalk<B>;
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
  for (int idx = t; idx < kChunk * kChunk; idx += kThreads) {
    const int i = ChunkRow::row(idx), j = ChunkRow::col(idx);
    sAo[i * ldc + j] = from_float<T>(sA[i * ldf + j]);
  }
  if (t < kChunk) {  // column j of its diagonal block
    const int j = t, b0 = BlockRow::row(j) << BlockRow::kShift, jj = j - b0;
    float col[B];
#pragma unroll
    for (int i = 0; i < B; ++i) {
      float s = 0.f;
#pragma unroll
      for (int m = 0; m < i; ++m) s += sA[(b0 + i) * ldf + b0 + m] * col[m];
      col[i] = i < jj ? 0.f : (i == jj ? 1.f : -s);
    }
#pragma unroll
    for (int i = 0; i < B; ++i) {
      sT[(b0 + i) * ldf + j] = col[i];
      sTo[(b0 + i) * ldc + j] = from_float<T>(col[i]);
    }
  }
  __syncthreads();
  // Writes -acc (a 16 x 16 block at rows r0, columns c0) into T.
  auto store_block = [&](const tile::Acc<1, 2>& acc, int r0, int c0) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = r0 + tile::acc_row(lane, i), c = c0 + nt * 8 + tile::acc_col(lane, i);
        sT[r * ldf + c] = -acc.v[0][nt][i];
        sTo[r * ldc + c] = from_float<T>(-acc.v[0][nt][i]);
      }
  };
  auto store_scratch = [&](const tile::Acc<1, 2>& acc, T* dst, int ld) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = tile::acc_row(lane, 2 * half), c = nt * 8 + tile::acc_col(lane, 2 * half);
        tile::store_pair(dst + r * ld + c, acc.v[0][nt][2 * half], acc.v[0][nt][2 * half + 1]);
      }
  };
  constexpr int H = 2 * B;  // the half of the chunk the second step fills
  if (warp < 2) {  // 16 -> 32: blocks (2w + 1, 2w) = -T11 A10 T00
    const int b0 = warp * H, b1 = b0 + B;
    T* x = scratch + warp * B * kInvLdBlock;
    tile::Acc<1, 2> acc;
    acc.zero();
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(acc, sAo + b1 * ldc + b0, ldc, sTo + b0 * ldc + b0, ldc, 0, 0, B);
    store_scratch(acc, x, kInvLdBlock);
    __syncwarp();
    acc.zero();
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(acc, sTo + b1 * ldc + b1, ldc, x, kInvLdBlock, 0, 0, B);
    store_block(acc, b1, b0);
  }
  __syncthreads();
  const int rw = warp >> 1, cw = warp & 1;
  tile::Acc<1, 2> acc;
  if (warp < 4) {  // 32 -> 64: X = A[32:, :32] T[:32, :32], one 16 x 16 block per warp
    acc.zero();
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(acc, sAo + (H + B * rw) * ldc, ldc, sTo + B * cw, ldc, 0, 0, H);
    store_scratch(acc, scratch + (B * rw) * kInvLdHalf + B * cw, kInvLdHalf);
  }
  __syncthreads();
  if (warp < 4) {  // T[32:, :32] = -T[32:, 32:] X
    acc.zero();
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(acc, sTo + (H + B * rw) * ldc + H, ldc, scratch + B * cw, kInvLdHalf, 0, 0, H);
    store_block(acc, H + B * rw, B * cw);
  }
  __syncthreads();
}

}  // namespace comba::cuda::chunk
