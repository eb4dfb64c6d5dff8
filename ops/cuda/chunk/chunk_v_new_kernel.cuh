// V' = Tu V - W S for every chunk at once: one CTA per (chunk, value head) walks the state
// columns in slices of 64, from the prep kernel's Tu and W (loaded once) and the states a
// forward scan kept (each slice's S and V loaded one slice ahead). The backward of a
// forward that kept only the states (KeptWorkspace::kStates) forms V' here instead of
// keeping it, from the operands the forward scan's own V' had (the same 16-bit W, Tu, V
// and S; fp32 accumulation). Bound by reading the states: K V 16-bit values per chunk.
#pragma once
#include "chunk_common.cuh"

namespace comba::cuda::chunk {

template <typename T, int KP>
struct VNewLayout {
  static constexpr int BV = 64;  // state columns per slice
  static constexpr int LDK = KP + kPad, LDC = kChunk + kPad, LDV = BV + kPad;
  // A slice's stage: S [KP x BV], V [64 x BV].
  using Stage = SmemCarve<KP * LDV * sizeof(T), kChunk * LDV * sizeof(T)>;
  static constexpr int kAtV = Stage::at(1);
  // W [64 x KP], Tu [64 x 64], two stages.
  using Carve = SmemCarve<kChunk * LDK * sizeof(T), kChunk * LDC * sizeof(T), 2 * Stage::kBytes>;
  static constexpr int kAtTu = Carve::at(1), kAtStages = Carve::at(2);
  static constexpr int kBytes = Carve::kBytes;
};

template <typename T, int KP>
__global__ void __launch_bounds__(kThreads, 2) chunk_v_new_kernel(const ChunkParams p) {
  using L = VNewLayout<T, KP>;
  constexpr int C = kChunk, BV = L::BV;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sW = reinterpret_cast<T*>(smem);
  T* sTu = reinterpret_cast<T*>(smem + L::kAtTu);

  const long long c = blockIdx.x;
  const int hv = blockIdx.y, V = p.value_dim, slices = (V + BV - 1) / BV;
  const long long slot = c * p.value_heads + hv, v_ld = static_cast<long long>(p.value_heads) * V;
  const ChunkLoc loc = locate_chunk(p, c);
  const T* states = static_cast<const T*>(p.states) + slot * KP * V;
  const T* v = static_cast<const T*>(p.v) + loc.tok0 * v_ld + static_cast<long long>(hv) * V;
  T* v_new = static_cast<T*>(p.v_new) + slot * C * V;
  const auto stage = [&](int s) { return smem + L::kAtStages + (s & 1) * L::Stage::kBytes; };
  const auto load_slice = [&](int s) {
    const int v0 = s * BV;
    unsigned char* st = stage(s);
    tile::load_tile_async<T, kThreads, KP, BV>(reinterpret_cast<T*>(st), L::LDV, states + v0, V, KP, V - v0);
    tile::load_tile_async<T, kThreads, C, BV>(reinterpret_cast<T*>(st + L::kAtV), L::LDV, v + v0, v_ld, loc.len,
                                              V - v0);
    tile::cp_async_commit();
  };
  constexpr int kLdW = workspace_ld(KP), kLdTu = workspace_ld(C);
  tile::load_tile_async<T, kThreads, C, KP>(sW, L::LDK, static_cast<const T*>(p.w) + slot * C * kLdW, kLdW, C, KP);
  tile::load_tile_async<T, kThreads, C, C>(sTu, L::LDC, static_cast<const T*>(p.tu) + slot * C * kLdTu, kLdTu, C, C);
  load_slice(0);  // one group with W and Tu

  // Warp tile: rows m0 .. m0 + 16, columns n0 .. n0 + 32 of the slice (rows past a short
  // chunk are zero in Tu, V and W, so V' is zero there too).
  const int warp = threadIdx.x >> 5, m0 = (warp & 3) * 16, n0 = (warp >> 2) * (BV / 2);
  for (int s = 0; s < slices; ++s) {
    if (s + 1 < slices) {
      load_slice(s + 1);  // into the stage slice s - 1 used: freed by the barrier below
      tile::cp_async_wait<1>();
    } else {
      tile::cp_async_wait<0>();
    }
    __syncthreads();  // slice s (and W, Tu) landed for every thread
    const T* sS = reinterpret_cast<const T*>(stage(s));
    const T* sV = reinterpret_cast<const T*>(stage(s) + L::kAtV);
    tile::Acc<1, BV / 16> ws, u;
    ws.zero();
    u.zero();
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(ws, sW, L::LDK, sS, L::LDV, m0, n0, KP);
    tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(u, sTu, L::LDC, sV, L::LDV, m0, n0, C);
#pragma unroll
    for (int nt = 0; nt < BV / 16; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) u.v[0][nt][i] -= ws.v[0][nt][i];
    acc_to_global<T>(u, v_new + s * BV, V, m0, n0, C, V - s * BV);
    __syncthreads();  // every thread is done with this stage before slice s + 2 refills it
  }
}

}  // namespace comba::cuda::chunk
