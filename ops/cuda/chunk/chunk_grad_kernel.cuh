// Per-chunk gradients: one CTA per (chunk, value head), every chunk independent, given
// the scans' per-chunk S (state entering), V' = U - W S, dS (gradient of the end state)
// and dV', and the prep kernel's T = (I + A)^-1. With hats for the l2-normalised rows:
//   phase A (over V): dQs = dO S^T, dMqk = dO V'^T
//       dQ^ = scale e^G dQs + F K^,  F = dMqk * scale e^(G_i - G_j) (j <= i)
//   phase B (over V): dKd = V' dS^T, dW = -dV' S^T, dTa = dV' V^T, dV = beta T^T dV'
//       dT = dTa diag(beta) + dW P^T diag(beta e^G0 r_p),  dA = -T^T dT T^T (j < i)
//       dP^ = beta e^G0 T^T dW + E K^,  dK^ = e^(G_last - G) dKd + F^T Q^ + E^T P^,
//       E = dA * beta_i e^(G0_i - G_j)
// g's gradient is collected as range weights R[hi][lo] (the weight of every term
// exp(g_lo + ... + g_hi)), dg_t = sum over lo <= t <= hi, so that no large cancelling
// pairs are formed under strong decay; beta's from its three uses.
// The [64 x K] products (dQ, dK, dP, dW) are walked in key halves of KH columns when
// KP = 256 (registers); the 64 x 64 ones accumulate over all of K at once.
#pragma once
#include "chunk_common.cuh"

namespace comba::cuda::chunk {

// The key columns of the [64 x K] products: kHalves halves of KH (one half up to KP = 128).
template <int KP>
struct GradKeyTiles {
  static constexpr int KH = KP > kChunkKeyHalf ? kChunkKeyHalf : KP, kHalves = KP / KH;
  static constexpr bool kSplit = kHalves > 1;
};

template <typename T, int KP>
struct GradLayout : GradKeyTiles<KP> {
  using Keys = GradKeyTiles<KP>;
  static constexpr int KH = Keys::KH, kHalves = Keys::kHalves;
  static constexpr bool kSplit = Keys::kSplit;
  // The value-column slices of both phases stream through kStages buffers of BV columns:
  // the next kStages - 1 slices load while one is used (one CTA per SM: nothing else hides
  // a slice's load). H200, against one 64-column buffer loaded when needed: 6% faster at
  // 3 stages, 3% at 2. Split key tiles (KP = 256) leave room for one stage only.
  static constexpr int kStages = kSplit ? 1 : 3;
  static constexpr int BV = 32;
  static constexpr int LDK = KP + kPad, LDC = kChunk + kPad, LDF = kChunk + 1, LDV = BV + kPad;
  // Tiles: [64 x KP] and [64 x 64] 16-bit, [64 x 64] fp32 (odd row stride), [64 x BV] and
  // [KH x BV] 16-bit.
  static constexpr int kTileK = kChunk * LDK * sizeof(T), kTileC = kChunk * LDC * sizeof(T),
                       kTileF = kChunk * LDF * sizeof(float), kTileV = kChunk * LDV * sizeof(T),
                       kTileS = KH * LDV * sizeof(T);
  // g, beta, G, G0, r_q, r_k, r_p, red [2], dgamma partials, dbeta (11 used, one spare).
  static constexpr int kVectorRows = 12;
  // The shared region in turns: kStages slice stages (dO or V, V', dV' [64 x BV], S and dS
  // rows of one key half [KH x BV]), then the epilogue's dTa (fp32) and dT, later Z over
  // dTa, and last Ek, Ep over both.
  using Stage = SmemCarve<kTileV, kTileV, kTileV, kTileS, kTileS>;
  using Epilogue = SmemCarve<kTileF, kTileC>;
  static_assert(SmemCarve<kTileC, kTileC>::kBytes <= Epilogue::kBytes, "Ek, Ep must fit the epilogue");
  // q, k, p [64 x KP]; the vectors; T; Fk, Fq; R (fp32); -dW (from phase B to the end);
  // the region.
  using Carve = SmemCarve<3 * kTileK, kVectorRows * kChunk * sizeof(float), kTileC, 2 * kTileC,
                          kTileF, kTileK, smem_max(kStages * Stage::kBytes, Epilogue::kBytes)>;
  static constexpr int kAtVectors = Carve::at(1), kAtTo = Carve::at(2), kAtF = Carve::at(3),
                       kAtR = Carve::at(4), kAtDW = Carve::at(5), kAtRegion = Carve::at(6);
  // Inside a stage, and inside the epilogue.
  static constexpr int kAtVn = Stage::at(1), kAtDVn = Stage::at(2), kAtS = Stage::at(3),
                       kAtDS = Stage::at(4), kAtDT = Epilogue::at(1);
  static constexpr int kBytes = Carve::kBytes;
  static_assert(sizeof(T) * kVec16 == 16, "16-bit element types only");
};

// One slice stage's tiles (GradLayout::Stage).
template <typename T>
struct GradSlice {
  T* x;   // dO (phase A) / V (phase B) [64 x BV]
  T* vn;  // V' [64 x BV]
  T* dvn; // dV' [64 x BV]
  T* s;   // S rows of one key half [KH x BV]
  T* ds;  // dS rows of one key half
};

// Where the q / k / p gradient elements of this CTA's chunk live: fp32 per value head
// when the host sums a GVA group or the key tile is split, else the input dtype per query
// head. Element (r, col) of the chunk is base + r * row_stride + col.
template <typename T, int KP>
struct QkpGradOut {
  bool fp32;
  long long base, row_stride;
  __device__ QkpGradOut(const ChunkParams& p, const ChunkLoc& loc, int hv)
      : fp32(GradKeyTiles<KP>::kSplit || p.dqkp_fp32) {
    const int heads = fp32 ? p.value_heads : p.heads;
    const int head = fp32 ? hv : hv / (p.value_heads / p.heads);
    row_stride = static_cast<long long>(heads) * p.key_dim;
    base = loc.tok0 * row_stride + static_cast<long long>(head) * p.key_dim;
  }
  __device__ long long index(int r, int col) const { return base + r * row_stride + col; }
};

// Finishes a [64 x KH] gradient tile in registers (columns kc + n0 .. of the key): the
// l2norm backward dx = r (dx^ - x^ (x^ . dx^)) unless the key tile is split (the host
// applies it then), and the store of rows < len, columns < K. sX: the tile's x at column kc.
template <typename T, int KP, int NT>
__device__ __forceinline__ void finish_qkp_grad(const ChunkParams& p, tile::Acc<1, NT>& d, const T* sX,
                                                const float* s_r, float* red, void* out,
                                                const ChunkLoc& loc, int hv, int m0, int n0, int kc) {
  constexpr int LDK = KP + kPad;
  const int lane = threadIdx.x & 31;
  const int r0 = m0 + (lane >> 2), r1 = r0 + 8;
  if (!GradKeyTiles<KP>::kSplit && p.use_l2norm) {
    float p0, p1;
    block_row_dots(d, sX, LDK, m0, n0, red, p0, p1);
    const float c0 = p0 * s_r[r0], c1 = p1 * s_r[r1];  // x^ . dx^
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i < 2 ? r0 : r1, col = n0 + nt * 8 + tile::acc_col(lane, i);
        const float xh = s_r[r] * to_float(sX[r * LDK + col]);
        d.v[0][nt][i] = s_r[r] * (d.v[0][nt][i] - xh * (i < 2 ? c0 : c1));
      }
  }
  const QkpGradOut<T, KP> dst(p, loc, hv);
  for_each_acc_pair(d, m0, kc + n0, [&](int r, int col, float a, float b) {
    if (r >= loc.len || col >= p.key_dim) return;
    if (dst.fp32) {
      *reinterpret_cast<float2*>(static_cast<float*>(out) + dst.index(r, col)) = make_float2(a, b);
    } else {
      tile::store_pair(static_cast<T*>(out) + dst.index(r, col), a, b);
    }
  });
}

// d += the fp32 partial that finish_qkp_grad stored earlier for the same tile (split key
// tiles keep dK there between phase B and the epilogue; the same thread wrote it).
template <typename T, int KP, int NT>
__device__ __forceinline__ void add_stored_grad(const ChunkParams& p, tile::Acc<1, NT>& d, const void* out,
                                                const ChunkLoc& loc, int hv, int m0, int n0, int kc) {
  const QkpGradOut<T, KP> src(p, loc, hv);
  for_each_acc_pair(d, m0, kc + n0, [&](int r, int col, float& a, float& b) {
    if (r >= loc.len || col >= p.key_dim) return;
    const float2 v = *reinterpret_cast<const float2*>(static_cast<const float*>(out) + src.index(r, col));
    a += v.x;
    b += v.y;
  });
}

template <typename T, int KP>
__global__ void __launch_bounds__(kThreads, 1) chunk_grad_kernel(const ChunkParams p) {
  using L = GradLayout<T, KP>;
  constexpr int C = kChunk, LDK = L::LDK, LDC = L::LDC, LDF = L::LDF, LDV = L::LDV, BV = L::BV;
  constexpr int KH = L::KH, NTK = KH / 16;  // [64 x KH] warp tiles: 16 rows x KH / 2 columns
  extern __shared__ __align__(16) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + C * LDK;
  T* sP = sK + C * LDK;
  float* s_g = reinterpret_cast<float*>(smem + L::kAtVectors);
  float* s_beta = s_g + C;
  float* s_G = s_beta + C;
  float* s_G0 = s_G + C;
  float* s_rq = s_G0 + C;
  float* s_rk = s_rq + C;
  float* s_rp = s_rk + C;
  float* red = s_rp + C;     // [2][64]
  float* s_misc = red + 2 * C;  // [64]: dgamma partials
  float* s_dbeta = s_misc + C;  // [64]
  T* sTo = reinterpret_cast<T*>(smem + L::kAtTo);
  T* sFk = reinterpret_cast<T*>(smem + L::kAtF);
  T* sFq = sFk + C * LDC;
  float* sR = reinterpret_cast<float*>(smem + L::kAtR);
  T* sdW = reinterpret_cast<T*>(smem + L::kAtDW);
  unsigned char* region = smem + L::kAtRegion;
  // epilogue (after the last slice)
  float* sdTa = reinterpret_cast<float*>(region);
  T* sdT = reinterpret_cast<T*>(region + L::kAtDT);
  T* sZ = reinterpret_cast<T*>(region);
  T* sEk = reinterpret_cast<T*>(region);
  T* sEp = sEk + C * LDC;

  const long long c = blockIdx.x;
  const int hv = blockIdx.y, HV = p.value_heads, V = p.value_dim;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const ChunkLoc loc = locate_chunk(p, c);
  const long long slot = c * HV + hv;
  const int m0 = (warp & 3) * 16, nc = (warp >> 2) * 32, nk = (warp >> 2) * (KH / 2),
            nv = (warp >> 2) * (BV / 2);
  const int r0 = m0 + (lane >> 2), r1 = r0 + 8;

  const long long o_ld = static_cast<long long>(HV) * V;
  const T* g_do = static_cast<const T*>(p.grad_o) + loc.tok0 * o_ld + static_cast<long long>(hv) * V;
  const T* g_v = static_cast<const T*>(p.v) + loc.tok0 * o_ld + static_cast<long long>(hv) * V;
  const T* g_S = static_cast<const T*>(p.states) + slot * KP * V;
  const T* g_dS = static_cast<const T*>(p.d_states) + slot * KP * V;
  const T* g_vn = static_cast<const T*>(p.v_new) + slot * C * V;
  const T* g_dvn = static_cast<const T*>(p.dv_new) + slot * C * V;

  // The slices, phase A then phase B, each kHalves x ceil(V / BV): A reads dO and S (and
  // V' in the first half), B reads V', dV', S, dS (and V in the first half).
  const int per_half = (V + BV - 1) / BV, per_phase = L::kHalves * per_half, slices = 2 * per_phase;
  auto slice_at = [&](int s) {
    unsigned char* st = region + (s % L::kStages) * L::Stage::kBytes;
    return GradSlice<T>{reinterpret_cast<T*>(st), reinterpret_cast<T*>(st + L::kAtVn),
                        reinterpret_cast<T*>(st + L::kAtDVn), reinterpret_cast<T*>(st + L::kAtS),
                        reinterpret_cast<T*>(st + L::kAtDS)};
  };
  // Issues slice s's loads as one cp.async group (an empty group past the last slice, so
  // that the waits count the same everywhere).
  auto issue_slice = [&](int s) {
    if (s < slices) {
      const bool b = s >= per_phase;
      const int i = b ? s - per_phase : s, h = i / per_half, v0 = (i - h * per_half) * BV, kc = h * KH;
      const GradSlice<T> t = slice_at(s);
      if (!b || h == 0) tile::load_tile_async<T, kThreads, C, BV>(t.x, LDV, (b ? g_v : g_do) + v0, o_ld, loc.len, V - v0);
      tile::load_tile_async<T, kThreads, KH, BV>(t.s, LDV, g_S + kc * V + v0, V, KH, V - v0);
      if (b || h == 0) tile::load_tile_async<T, kThreads, C, BV>(t.vn, LDV, g_vn + v0, V, C, V - v0);
      if (b) {
        tile::load_tile_async<T, kThreads, C, BV>(t.dvn, LDV, g_dvn + v0, V, C, V - v0);
        tile::load_tile_async<T, kThreads, KH, BV>(t.ds, LDV, g_dS + kc * V + v0, V, KH, V - v0);
      }
    }
    tile::cp_async_commit();
  };
  // Slice s's tiles, landed and visible to every thread; slice s + kStages - 1 in flight.
  // The caller ends its use of the slice with a barrier (the next issue reuses its stage).
  auto acquire_slice = [&](int s) {
    issue_slice(s + L::kStages - 1);
    tile::cp_async_wait<L::kStages - 1>();
    __syncthreads();
    return slice_at(s);
  };

  load_qkp_gates<T, KP>(p, loc, hv, sQ, sK, sP, s_g, s_beta);
  tile::load_tile_async<T, kThreads, kChunk, kChunk>(sTo, LDC, static_cast<const T*>(p.t_inv) + slot * C * C, C, C, C);
  tile::cp_async_commit();
#pragma unroll
  for (int s = 0; s + 1 < L::kStages; ++s) issue_slice(s);
  for (int i = tid; i < C * LDF; i += kThreads) sR[i] = 0.f;
  if (tid < C) s_dbeta[tid] = 0.f;
  tile::cp_async_wait<L::kStages - 1>();
  __syncthreads();
  norms_and_decay<T, KP>(p, sQ, sK, sP, s_g, s_rq, s_rk, s_rp, s_G, s_G0);
  const float g_last = s_G[C - 1];
  int slice = 0;

  // ---- phase A: dQs (per key half), dMqk ----
  tile::Acc<1, 4> dm;
  dm.zero();
#pragma unroll 1
  for (int h = 0; h < L::kHalves; ++h) {
    const int kc = h * KH;  // the half's first key column
    tile::Acc<1, NTK> dq;
    dq.zero();
    for (int v0 = 0; v0 < V; v0 += BV, ++slice) {
      const GradSlice<T> t = acquire_slice(slice);
      tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(dq, t.x, LDV, t.s, LDV, m0, nk, BV);
      if (h == 0) tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(dm, t.x, LDV, t.vn, LDV, m0, nc, BV);
      __syncthreads();
    }
    // Qs = scale e^G r_q q: range [0, i] gets sum_k dQs Qs.
    float p0, p1;
    block_row_dots(dq, sQ + kc, LDK, m0, nk, red, p0, p1);
    const float f0 = p.scale * __expf(s_G[r0]), f1 = p.scale * __expf(s_G[r1]);
    if (row_owner()) {
      sR[r0 * LDF] += p0 * f0 * s_rq[r0];
      sR[r1 * LDF] += p1 * f1 * s_rq[r1];
    }
#pragma unroll
    for (int nt = 0; nt < NTK; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) dq.v[0][nt][i] *= i < 2 ? f0 : f1;

    if (h == 0) {  // F from dMqk, over all of K
      tile::Acc<1, 4> qk;
      qk.zero();
      tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(qk, sQ, LDK, sK, LDK, m0, nc, KP);
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int r = m0 + tile::acc_row(lane, i), j = nc + nt * 8 + tile::acc_col(lane, i);
          const float f = j <= r ? dm.v[0][nt][i] * p.scale * __expf(s_G[r] - s_G[j]) : 0.f;
          if (j < r) sR[r * LDF + j + 1] += f * qk.v[0][nt][i] * s_rq[r] * s_rk[j];
          sFk[r * LDC + j] = from_float<T>(f * s_rk[j]);
          sFq[r * LDC + j] = from_float<T>(f * s_rq[r]);
        }
      __syncthreads();
    }
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(dq, sFk, LDC, sK + kc, LDK, m0, nk, C);
    finish_qkp_grad<T, KP>(p, dq, sQ + kc, s_rq, red, p.dq, loc, hv, m0, nk, kc);
  }

  // ---- phase B: dKd and dW (per key half), dTa, dV ----
  tile::Acc<1, NTK> dk;  // the last half's dKd (the only one unless the key tile is split)
  tile::Acc<1, 4> dta;
  dta.zero();
  float db0 = 0.f, db1 = 0.f, dgam = 0.f;
  T* g_dv = static_cast<T*>(p.dv) + loc.tok0 * o_ld + static_cast<long long>(hv) * V;
#pragma unroll 1
  for (int h = 0; h < L::kHalves; ++h) {
    const int kc = h * KH;
    tile::Acc<1, NTK> dwn;
    dk.zero();
    dwn.zero();
    for (int v0 = 0; v0 < V; v0 += BV, ++slice) {
      const GradSlice<T> t = acquire_slice(slice);
      tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(dk, t.vn, LDV, t.ds, LDV, m0, nk, BV);
      tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(dwn, t.dvn, LDV, t.s, LDV, m0, nk, BV);
      if (h == 0) {
        tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(dta, t.dvn, LDV, t.x, LDV, m0, nc, BV);
        tile::Acc<1, BV / 16> y;  // T^T dV' [64 x BV]: 16 rows x BV / 2 columns per warp
        y.zero();
        tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(y, sTo, LDC, t.dvn, LDV, m0, nv, C);
#pragma unroll
        for (int nt = 0; nt < BV / 16; ++nt)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int r = half ? r1 : r0, col = nv + nt * 8 + tile::acc_col(lane, 2 * half);
            const float a = y.v[0][nt][2 * half], b = y.v[0][nt][2 * half + 1];
            (half ? db1 : db0) += a * to_float(t.x[r * LDV + col]) + b * to_float(t.x[r * LDV + col + 1]);
            if (r < loc.len && v0 + col < V) {
              tile::store_pair(g_dv + r * o_ld + v0 + col, s_beta[r] * a, s_beta[r] * b);
            }
          }
      }
      for (int idx = tid; idx < KH * BV / kVec16; idx += kThreads) {  // <S, dS> on 16-byte vectors
        const int kd = idx / (BV / kVec16), col = (idx - kd * (BV / kVec16)) * kVec16;
        const uint4 a = *reinterpret_cast<const uint4*>(t.s + kd * LDV + col);
        const uint4 b = *reinterpret_cast<const uint4*>(t.ds + kd * LDV + col);
        const T* x = reinterpret_cast<const T*>(&a);
        const T* y = reinterpret_cast<const T*>(&b);
#pragma unroll
        for (int e = 0; e < kVec16; ++e) dgam += to_float(x[e]) * to_float(y[e]);
      }
      __syncthreads();
    }
    // Kd = e^(G_last - G) r_k k: range [j + 1, last] gets sum_k dKd Kd
    float p0, p1;
    block_row_dots(dk, sK + kc, LDK, m0, nk, red, p0, p1);
    const float e0 = __expf(g_last - s_G[r0]), e1 = __expf(g_last - s_G[r1]);
    if (row_owner()) {
      if (r0 < C - 1) sR[(C - 1) * LDF + r0 + 1] += p0 * e0 * s_rk[r0];
      if (r1 < C - 1) sR[(C - 1) * LDF + r1 + 1] += p1 * e1 * s_rk[r1];
    }
#pragma unroll
    for (int nt = 0; nt < NTK; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) dk.v[0][nt][i] *= i < 2 ? e0 : e1;
    acc_to_smem<T>(dwn, sdW, LDK, m0, kc + nk, -1.f);  // dW = -dWn as a 16-bit operand
    if (L::kSplit) finish_qkp_grad<T, KP>(p, dk, sK + kc, s_rk, red, p.dk, loc, hv, m0, nk, kc);
  }
  {
    // gamma = e^G_last: range [0, last]
    dgam = warp_sum(dgam);
    if (lane == 0) s_misc[warp] = dgam;
    // The slice stages are dead (the last slice ended on a barrier, and every group past
    // it is empty): dTa goes over them.
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = m0 + tile::acc_row(lane, i), j = nc + nt * 8 + tile::acc_col(lane, i);
        sdTa[r * LDF + j] = dta.v[0][nt][i];
      }
    __syncthreads();  // publishes s_misc, dW, dTa
    if (tid == 0) {
      float total = 0.f;
      for (int w = 0; w < kThreads / 32; ++w) total += s_misc[w];
      sR[(C - 1) * LDF] += total * __expf(g_last);
    }
  }
  {
    // dT = dTa diag(beta) + (dW P^T) diag(beta e^G0 r_p)
    tile::Acc<1, 4> x2;
    x2.zero();
    tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(x2, sdW, LDK, sP, LDK, m0, nc, KP);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = half ? r1 : r0, j = nc + nt * 8 + tile::acc_col(lane, 2 * half);
        float d[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          d[e] = sdTa[r * LDF + j + e] * s_beta[j + e] +
                 x2.v[0][nt][2 * half + e] * s_beta[j + e] * __expf(s_G0[j + e]) * s_rp[j + e];
        }
        tile::store_pair(sdT + r * LDC + j, d[0], d[1]);
      }
    __syncthreads();  // dT complete; dTa dead (Z goes over it)
    // Z = T^T dT, dA = -Z T^T on the strict lower triangle
    tile::Acc<1, 4> z;
    z.zero();
    tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(z, sTo, LDC, sdT, LDC, m0, nc, C);
    acc_to_smem<T>(z, sZ, LDC, m0, nc);
    __syncthreads();
    tile::Acc<1, 4> da, pk;
    da.zero();
    pk.zero();
    tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(da, sZ, LDC, sTo, LDC, m0, nc, C);
    tile::warp_mma<T, tile::RowMajor, tile::ColMajor>(pk, sP, LDK, sK, LDK, m0, nc, KP);
    __syncthreads();  // Z read: Ek, Ep go over it
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = m0 + tile::acc_row(lane, i), j = nc + nt * 8 + tile::acc_col(lane, i);
        float ek = 0.f, ep = 0.f;
        if (j < r) {
          const float d_a = -da.v[0][nt][i];
          const float e = __expf(s_G0[r] - s_G[j]);
          const float pkn = pk.v[0][nt][i] * s_rp[r] * s_rk[j];
          const float E = d_a * s_beta[r] * e;
          (i < 2 ? db0 : db1) += d_a * pkn * e;
          if (j < r - 1) sR[(r - 1) * LDF + j + 1] += E * pkn;
          ek = E * s_rk[j];
          ep = E * s_rp[r];
        }
        sEk[r * LDC + j] = from_float<T>(ek);
        sEp[r * LDC + j] = from_float<T>(ep);
      }
    __syncthreads();
  }
  const float w0 = __expf(s_G0[r0]), w1 = __expf(s_G0[r1]);
#pragma unroll 1
  for (int h = 0; h < L::kHalves; ++h) {
    const int kc = h * KH;
    // Y = T^T dW: dP^ = beta e^G0 Y + E K^; beta and the range [0, i - 1] get e^G0 (Y . P^)
    tile::Acc<1, NTK> dp;
    dp.zero();
    tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(dp, sTo, LDC, sdW + kc, LDK, m0, nk, C);
    float p0, p1;
    block_row_dots(dp, sP + kc, LDK, m0, nk, red, p0, p1);
    p0 *= s_rp[r0] * w0;
    p1 *= s_rp[r1] * w1;
    if (row_owner()) {
      s_dbeta[r0] += p0;
      s_dbeta[r1] += p1;
      if (r0 > 0) sR[(r0 - 1) * LDF] += s_beta[r0] * p0;
      sR[(r1 - 1) * LDF] += s_beta[r1] * p1;
    }
#pragma unroll
    for (int nt = 0; nt < NTK; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) dp.v[0][nt][i] *= i < 2 ? s_beta[r0] * w0 : s_beta[r1] * w1;
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(dp, sEk, LDC, sK + kc, LDK, m0, nk, C);
    finish_qkp_grad<T, KP>(p, dp, sP + kc, s_rp, red, p.dp, loc, hv, m0, nk, kc);
  }
#pragma unroll 1
  for (int h = 0; h < L::kHalves; ++h) {
    const int kc = h * KH;
    // dK^ = e^(G_last - G) dKd + F^T Q^ + E^T P^ (a split key tile's dKd is in p.dk)
    if (L::kSplit) {
      dk.zero();
      add_stored_grad<T, KP>(p, dk, p.dk, loc, hv, m0, nk, kc);
    }
    tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(dk, sFq, LDC, sQ + kc, LDK, m0, nk, C);
    tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(dk, sEp, LDC, sP + kc, LDK, m0, nk, C);
    finish_qkp_grad<T, KP>(p, dk, sK + kc, s_rk, red, p.dk, loc, hv, m0, nk, kc);
  }

  // beta: the U and A terms (per thread, rows r0 / r1) plus the W term in s_dbeta.
  block_row_sums(db0, db1, red, m0);
  if (row_owner()) {
    s_dbeta[r0] += db0;
    s_dbeta[r1] += db1;
  }
  __syncthreads();
  // dg_t = sum over hi >= t of sum over lo <= t of R[hi][lo]: four threads per row of R
  // for its prefix sums (in place), then four per column t for the sum over rows hi >= t,
  // each over a quarter of 16 (chains of 16 adds, not 64). H200: 1.5% off the kernel.
  constexpr int Q = C / 4;
  const int line = tid >> 2, quarter = tid & 3;  // a row, then a column of R
  {
    float* x = sR + line * LDF + quarter * Q;
    float run[Q];
#pragma unroll
    for (int i = 0; i < Q; ++i) run[i] = x[i];
#pragma unroll
    for (int i = 1; i < Q; ++i) run[i] += run[i - 1];
    float upto = run[Q - 1];  // inclusive over the row's quarters (scan of four lanes)
    float from = __shfl_up_sync(0xffffffffu, upto, 1, 4);
    if (quarter >= 1) upto += from;
    from = __shfl_up_sync(0xffffffffu, upto, 2, 4);
    if (quarter >= 2) upto += from;
    const float before = upto - run[Q - 1];
#pragma unroll
    for (int i = 0; i < Q; ++i) x[i] = run[i] + before;
  }
  __syncthreads();
  float dg = 0.f;
#pragma unroll
  for (int i = 0; i < Q; ++i) {
    const int hi = quarter * Q + i;
    if (hi >= line) dg += sR[hi * LDF + line];
  }
  dg += __shfl_xor_sync(0xffffffffu, dg, 1);
  dg += __shfl_xor_sync(0xffffffffu, dg, 2);
  if (quarter == 0 && line < loc.len) {
    const long long idx = (loc.tok0 + line) * HV + hv;
    p.dg[idx] = dg;
    p.dbeta[idx] = s_dbeta[line];
  }
}

}  // namespace comba::cuda::chunk
