// Chunk preparation (SPEC section 2, steps 1-2 and the per-chunk operands of 3-4): one
// CTA per (chunk, value head), every chunk independent. From q, k, p, v, g, beta it forms
// the decay sums, A, T = (I + A)^-1, and writes the operands of the state scan:
//   W = T diag(beta e^G0) P^,  Tu = T diag(beta),  Mqk = scale (Q^ K^T) e^(G_i - G_j),
//   the row factors of Qs = scale e^G Q^ and Kd = e^(G_last - G) K^,  gamma = e^G_last.
// The l2norm of q, k, p enters only as row factors (r_q, r_k, r_p), so the tiles stay as
// loaded and every product runs on the raw 16-bit inputs.
#pragma once
#include "chunk_common.cuh"

namespace comba::cuda::chunk {

template <typename T, int KP>
struct PrepLayout {
  static constexpr int LDK = KP + kPad, LDC = kChunk + kPad, LDF = kChunk + 1;
  // [64 x 64] tiles: 16-bit operands, and fp32 (odd row stride).
  static constexpr int kTileC = kChunk * LDC * sizeof(T), kTileF = kChunk * LDF * sizeof(float);
  // One region in two turns: A (fp32, then its 16-bit copy) early, then the column-scaled
  // T operands Tw, Tu.
  using RegionA = SmemCarve<kTileF, kTileC>;
  using RegionB = SmemCarve<kTileC, kTileC>;
  static constexpr int kVectorRows = 10;  // g, beta, G, G0, r_q, r_k, r_p, qf, kf, wf
  // q, k, p [64 x KP]; T (fp32, 16-bit); the region; the inverse's scratch; the vectors.
  using Carve = SmemCarve<3 * kChunk * LDK * sizeof(T), kTileF, kTileC,
                          smem_max(RegionA::kBytes, RegionB::kBytes), kInvScratchElems * sizeof(T),
                          kVectorRows * kChunk * sizeof(float)>;
  static constexpr int kAtT = Carve::at(1), kAtTo = Carve::at(2), kAtRegion = Carve::at(3),
                       kAtScratch = Carve::at(4), kAtVectors = Carve::at(5);
  static constexpr int kAtAo = RegionA::at(1), kAtTu = RegionB::at(1);  // inside the region
  static constexpr int kBytes = Carve::kBytes;
  static_assert(sizeof(T) * kVec16 == 16, "16-bit element types only");
};

// Zeroes the kPad-element padding after `cols` in each of a workspace tile's 64 rows (row
// stride ld): every 32-byte sector of the tile is then written whole, which spares the
// memory a read-modify-write of half-written sectors (prep 14% slower without, H200).
template <typename T>
__device__ __forceinline__ void write_row_pads(T* tile, int ld, int cols) {
  static_assert(kPad * sizeof(T) == sizeof(uint4), "one 16-byte store per row pad");
  if (threadIdx.x < kChunk) *reinterpret_cast<uint4*>(tile + threadIdx.x * ld + cols) = make_uint4(0, 0, 0, 0);
}

template <typename T, int KP>
__global__ void __launch_bounds__(kThreads, 2) chunk_prep_kernel(const ChunkParams p) {
  using L = PrepLayout<T, KP>;
  constexpr int C = kChunk, LDK = L::LDK, LDC = L::LDC, LDF = L::LDF;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + C * LDK;
  T* sP = sK + C * LDK;
  float* sT = reinterpret_cast<float*>(smem + L::kAtT);
  T* sTo = reinterpret_cast<T*>(smem + L::kAtTo);
  unsigned char* region = smem + L::kAtRegion;
  float* sA = reinterpret_cast<float*>(region);
  T* sAo = reinterpret_cast<T*>(region + L::kAtAo);
  T* sTw = reinterpret_cast<T*>(region);
  T* sTu = reinterpret_cast<T*>(region + L::kAtTu);
  T* scratch = reinterpret_cast<T*>(smem + L::kAtScratch);
  float* s_g = reinterpret_cast<float*>(smem + L::kAtVectors);
  float* s_beta = s_g + C;
  float* s_G = s_beta + C;
  float* s_G0 = s_G + C;
  float* s_rq = s_G0 + C;
  float* s_rk = s_rq + C;
  float* s_rp = s_rk + C;
  float* s_qf = s_rp + C;  // per-row factors of Qs, Kd^T and W's T columns
  float* s_kf = s_qf + C;
  float* s_wf = s_kf + C;

  const long long c = blockIdx.x;
  const int hv = blockIdx.y, HV = p.value_heads;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const ChunkLoc loc = locate_chunk(p, c);
  const long long slot = c * HV + hv;

  load_qkp_gates<T, KP>(p, loc, hv, sQ, sK, sP, s_g, s_beta);
  tile::cp_async_commit();
  for (int i = tid; i < C * LDF; i += kThreads) sT[i] = 0.f;
  for (int i = tid; i < C * LDC; i += kThreads) sTo[i] = from_float<T>(0.f);
  tile::cp_async_wait<0>();
  __syncthreads();
  norms_and_decay<T, KP>(p, sQ, sK, sP, s_g, s_rq, s_rk, s_rp, s_G, s_G0);
  if (tid < C) {
    s_qf[tid] = p.scale * s_rq[tid] * __expf(s_G[tid]);
    s_kf[tid] = s_rk[tid] * __expf(s_G[C - 1] - s_G[tid]);
    s_wf[tid] = s_beta[tid] * __expf(s_G0[tid]) * s_rp[tid];
  }

  // A and Mqk: 64 x 64 over KP. Warp tile: rows m0 .. m0 + 16, columns n0 .. n0 + 32.
  const int m0 = (warp & 3) * 16, n0 = (warp >> 2) * 32;
  {
    tile::Acc<1, 4> pk, qk;
    pk.zero();
    qk.zero();
    tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(pk, sP, LDK, sK, LDK, m0, n0, KP);
    tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(qk, sQ, LDK, sK, LDK, m0, n0, KP);
    constexpr int kLdM = workspace_ld(C);
    T* g_mqk = static_cast<T*>(p.mqk) + slot * C * kLdM;
    write_row_pads(g_mqk, kLdM, C);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = m0 + tile::acc_row(lane, 2 * half);
        float m[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 2 * half + e;
          const int j = n0 + nt * 8 + tile::acc_col(lane, i);
          sA[r * LDF + j] = j < r ? s_beta[r] * s_rp[r] * s_rk[j] * pk.v[0][nt][i] *
                                        __expf(s_G0[r] - s_G[j])
                                  : 0.f;
          m[e] = j <= r ? p.scale * s_rq[r] * s_rk[j] * qk.v[0][nt][i] * __expf(s_G[r] - s_G[j])
                        : 0.f;
        }
        tile::store_pair(g_mqk + r * kLdM + n0 + nt * 8 + tile::acc_col(lane, 2 * half), m[0], m[1]);
      }
    }
  }
  __syncthreads();
  unit_lower_inverse<T>(sA, sAo, sT, sTo, scratch, LDF, LDC);

  using VecRow = RowWalk<C / kVec16>;  // 16-byte vectors of a 64-wide 16-bit row
  using PairRow = RowWalk<C / 2>;       // element pairs of a 64-wide row
  {  // T itself, for the gradient kernel
    T* g_t = static_cast<T*>(p.t_inv) + slot * C * C;
    for (int idx = tid; idx < C * C / kVec16; idx += kThreads) {
      const int i = VecRow::row(idx), j0 = VecRow::col(idx) * kVec16;
      *reinterpret_cast<uint4*>(g_t + i * C + j0) = *reinterpret_cast<const uint4*>(sTo + i * LDC + j0);
    }
  }
  // Column-scaled T as 16-bit operands (A is dead: same region).
  for (int idx = tid; idx < C * C / 2; idx += kThreads) {
    const int i = PairRow::row(idx), j = PairRow::col(idx) * 2;
    const float t0 = sT[i * LDF + j], t1 = sT[i * LDF + j + 1];
    tile::store_pair(sTw + i * LDC + j, t0 * s_wf[j], t1 * s_wf[j + 1]);
    tile::store_pair(sTu + i * LDC + j, t0 * s_beta[j], t1 * s_beta[j + 1]);
  }
  __syncthreads();

  {  // W = (T diag(beta e^G0 r_p)) P, at most 64 columns per warp at a time (registers)
    constexpr int kWarpCols = KP / 2, kPiece = kWarpCols < 64 ? kWarpCols : 64, NT = kPiece / 8;
    constexpr int kLdW = workspace_ld(KP);
    T* g_w = static_cast<T*>(p.w) + slot * C * kLdW;
    write_row_pads(g_w, kLdW, KP);
#pragma unroll 1
    for (int piece = 0; piece < kWarpCols / kPiece; ++piece) {
      const int nk = (warp >> 2) * kWarpCols + piece * kPiece;
      tile::Acc<1, NT> w;
      w.zero();
      tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(w, sTw, LDC, sP, LDK, m0, nk, C);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = m0 + tile::acc_row(lane, 2 * half);
          const int col = nk + nt * 8 + tile::acc_col(lane, 2 * half);
          tile::store_pair(g_w + r * kLdW + col, w.v[0][nt][2 * half], w.v[0][nt][2 * half + 1]);
        }
    }
  }

  if (tid < C) {  // the scans apply these row factors to the raw q and k tiles
    p.qf[slot * C + tid] = s_qf[tid];
    p.kf[slot * C + tid] = s_kf[tid];
    if (tid == 0) p.gamma[slot] = __expf(s_G[C - 1]);
  }

  {  // Tu = T diag(beta): the scan forms U = Tu V itself
    constexpr int kLdTu = workspace_ld(C);
    static_assert(kLdTu == LDC, "Tu's workspace rows are its shared rows, padding included");
    T* g_tu = static_cast<T*>(p.tu) + slot * C * kLdTu;
    for (int idx = tid; idx < C * kLdTu / kVec16; idx += kThreads) {
      *reinterpret_cast<uint4*>(g_tu + idx * kVec16) = *reinterpret_cast<const uint4*>(sTu + idx * kVec16);
    }
  }
}

}  // namespace comba::cuda::chunk
