// Warp-level tile products on tensor cores (mma.sync m16n8k16, fp32 accumulation) with
// operands in shared memory, and the cp.async tile loader. 16-bit element types only
// (__nv_bfloat16, __half). Every operand may sit in either orientation: ldmatrix (or its
// .trans form) turns both into the fragment layout, so a kernel never transposes a tile
// by hand. No torch headers.
//
// Accumulator fragments: a warp owns MT x NT tiles of 16 x 8; element i (0..3) of tile
// (mt, nt) sits at row 16 mt + acc_row(lane, i), column 8 nt + acc_col(lane, i).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "../shared_address.cuh"

namespace comba::cuda::tile {

// Where element (r, c) of a logical matrix lives, for leading dimension ld.
struct RowMajor {};  // r * ld + c
struct ColMajor {};  // c * ld + r

__device__ __forceinline__ int acc_row(int lane, int i) { return (lane >> 2) + ((i >> 1) << 3); }
__device__ __forceinline__ int acc_col(int lane, int i) { return ((lane & 3) << 1) + (i & 1); }

template <int MT, int NT>
struct Acc {
  static constexpr int kRowTiles = MT, kColTiles = NT;
  float v[MT][NT][4];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) v[m][n][i] = 0.f;
  }
  __device__ __forceinline__ void scale(float s) {
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) v[m][n][i] *= s;
  }
};

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(p)));
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2]);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                         const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// A fragment of the 16 x 16 block at (m0, k0) of A.
template <typename T, typename Layout>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* A, int lda, int m0, int k0,
                                       int lane) {
  const int mat = lane >> 3, r = lane & 7;
  if constexpr (std::is_same_v<Layout, RowMajor>) {
    ldmatrix_x4(a, A + (m0 + (mat & 1) * 8 + r) * lda + k0 + (mat >> 1) * 8);
  } else {  // stored [k][m]
    ldmatrix_x4_trans(a, A + (k0 + (mat >> 1) * 8 + r) * lda + m0 + (mat & 1) * 8);
  }
}

// B fragment of the 16 x 8 block at (k0, n0) of B.
template <typename T, typename Layout>
__device__ __forceinline__ void load_b(uint32_t (&b)[2], const T* B, int ldb, int k0, int n0,
                                       int lane) {
  const int mat = (lane >> 3) & 1, r = lane & 7;
  if constexpr (std::is_same_v<Layout, RowMajor>) {  // stored [k][n]
    ldmatrix_x2_trans(b, B + (k0 + mat * 8 + r) * ldb + n0);
  } else {  // stored [n][k]
    ldmatrix_x2(b, B + (n0 + r) * ldb + k0 + mat * 8);
  }
}

// acc += A[m0 .. m0 + 16 MT, k0 .. k0 + 16) * B[k0 .. k0 + 16, n0 .. n0 + 8 NT): one k step.
template <typename T, typename LA, typename LB, int MT, int NT>
__device__ __forceinline__ void warp_mma_k_step(Acc<MT, NT>& acc, const T* A, int lda, const T* B,
                                                int ldb, int m0, int n0, int k0, int lane) {
  uint32_t a[MT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m) load_a<T, LA>(a[m], A, lda, m0 + 16 * m, k0, lane);
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    uint32_t b[2];
    load_b<T, LB>(b, B, ldb, k0, n0 + 8 * n, lane);
#pragma unroll
    for (int m = 0; m < MT; ++m) mma_16816<T>(acc.v[m][n], a[m], b);
  }
}

// acc += A[m0 .. m0 + 16 MT, 0 .. kdim) * B[0 .. kdim, n0 .. n0 + 8 NT), kdim % 16 == 0.
template <typename T, typename LA, typename LB, int MT, int NT>
__device__ __forceinline__ void warp_mma(Acc<MT, NT>& acc, const T* A, int lda, const T* B,
                                         int ldb, int m0, int n0, int kdim) {
  const int lane = threadIdx.x & 31;
  // Fully unrolled where kdim is a constant (every caller): the fragment loads of all k
  // steps can issue ahead of the dependent HMMA chain. Unrolled by 2 instead, the 32k scans
  // ran 9-12% slower (H200, same call); no kernel spills either way.
#pragma unroll
  for (int k0 = 0; k0 < kdim; k0 += 16) warp_mma_k_step<T, LA, LB>(acc, A, lda, B, ldb, m0, n0, k0, lane);
}

// As warp_mma, for a warp with at most two 16 x 8 tiles: each tile's HMMAs are then one
// dependent chain of kdim / 16 products, the serial scans' critical path at narrow column
// slices. Here the even and odd k steps go to two accumulators (two chains of half the
// length, added at the end). Wider warps have independent tiles to interleave already and
// take warp_mma.
template <typename T, typename LA, typename LB, int MT, int NT>
__device__ __forceinline__ void warp_mma_two_chains(Acc<MT, NT>& acc, const T* A, int lda, const T* B,
                                                    int ldb, int m0, int n0, int kdim) {
  if constexpr (MT * NT > 2) {
    warp_mma<T, LA, LB>(acc, A, lda, B, ldb, m0, n0, kdim);
  } else {
    const int lane = threadIdx.x & 31;
    Acc<MT, NT> odd;
    odd.zero();
#pragma unroll
    for (int k0 = 0; k0 < kdim; k0 += 16) {
      warp_mma_k_step<T, LA, LB>((k0 / 16) % 2 == 0 ? acc : odd, A, lda, B, ldb, m0, n0, k0, lane);
    }
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc.v[m][n][i] += odd.v[m][n][i];
  }
}

// 16-byte asynchronous copy global -> shared; src_bytes < 16 zero-fills the rest.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Copies a ROWS x COLS tile (COLS % 8 == 0) of 16-bit elements from global (row stride
// g_ld elements) into shared (row stride s_ld), zero-filling rows >= valid_rows and
// columns >= valid_cols. All threads of the block take part; cp.async, not committed.
template <typename T, int THREADS, int ROWS, int COLS>
__device__ __forceinline__ void load_tile_async(T* s, int s_ld, const T* g, long long g_ld,
                                                int valid_rows, int valid_cols) {
  constexpr int kVec = 16 / sizeof(T), kPerRow = COLS / kVec, kTotal = ROWS * kPerRow;
#pragma unroll
  for (int base = 0; base < kTotal; base += THREADS) {
    const int idx = base + static_cast<int>(threadIdx.x);
    if (kTotal % THREADS == 0 || idx < kTotal) {
      const int r = idx / kPerRow, c = (idx % kPerRow) * kVec;
      const bool ok = r < valid_rows && c < valid_cols;
      cp_async_16(s + r * s_ld + c, ok ? g + r * g_ld + c : g, ok ? 16 : 0);
    }
  }
}

// Stores two adjacent fp32 values as one 32-bit pair of T.
template <typename T>
__device__ __forceinline__ void store_pair(T* dst, float a, float b) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(a, b);
  } else {
    *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(a, b);
  }
}

}  // namespace comba::cuda::tile
