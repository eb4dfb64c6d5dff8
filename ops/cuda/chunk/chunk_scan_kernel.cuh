// The sequential part of the chunked algorithm: one CTA per (sequence, value head, BV
// state columns) walks the sequence's chunks with its state slice in registers (fp32
// MMA accumulators); only the prep kernel's per-chunk operands stream in, double
// buffered: W, Tu, Mqk and the row factors as one bulk copy each (stored padded as here,
// landing on the stage's mbarrier), the q, k and x rows with cp.async. Packed short
// sequences share a CTA: it walks them one after another (ChunkTraits::plan_scans), its
// loads running ahead across their boundaries.
//
// Forward, per chunk (S = state entering the chunk):
//   V' = Tu V - W S,  O = Qs S + Mqk V',  S <- gamma S + Kd^T V'
// with Qs = diag(qf) Q and Kd = diag(kf) K formed from the raw q, k tiles (row factors
// applied to accumulators or to V', never to a copy of q or k).
// optionally saving S and V' per chunk for the backward.
// Backward, chunks in reverse (dS = gradient of the chunk's end state):
//   dV' = Mqk^T dO + Kd dS,  dS <- gamma dS + Q^T (diag(qf) dO) - W^T dV'
// saving dS and dV' per chunk; the gradient of the initial state is the last dS.
// The forward's products split their k steps over two HMMA chains where a warp has only
// one or two 16 x 8 tiles (narrow slices, long sequences): 1 x 32768 H16, 16 columns,
// 1050 -> 990 us on an H200. The reverse scan did not gain (894 -> 902 us) and keeps one.
#pragma once
#include "../bulk_copy.cuh"
#include "chunk_common.cuh"

namespace comba::cuda::chunk {

template <typename T, int KP, int BV>
struct ScanLayout {
  static constexpr int LDK = KP + kPad, LDC = kChunk + kPad, LDV = BV + kPad;
  static constexpr int kTileK = kChunk * LDK * sizeof(T), kTileC = kChunk * LDC * sizeof(T),
                       kTileV = kChunk * LDV * sizeof(T);
  // One pipeline stage: W, Q, K [64 x KP], Mqk, Tu [64 x 64], V or dO [64 x BV], and the
  // row factors qf, kf (fp32, 64 each).
  using Stage = SmemCarve<kTileK, kTileK, kTileK, kTileC, kTileC, kTileV, 2 * kChunk * sizeof(float)>;
  static constexpr int kStage = Stage::kBytes / sizeof(T);  // elements
  // Where each operand starts in a stage, in elements.
  static constexpr int kAtQ = Stage::at(1) / sizeof(T), kAtK = Stage::at(2) / sizeof(T),
                       kAtM = Stage::at(3) / sizeof(T), kAtTu = Stage::at(4) / sizeof(T),
                       kAtX = Stage::at(5) / sizeof(T), kAtF = Stage::at(6) / sizeof(T);
  // After the stages: the state as an operand [KP x BV], V' and a row-scaled copy (kf V'
  // or qf dO), each [64 x BV].
  static constexpr int kStateBytes = KP * LDV * sizeof(T);
  // Double-buffered where two stages fit (KP <= 128); at KP = 256 one stage, refilled
  // once the chunk's last product has read it.
  // Last, one mbarrier per stage (8 bytes each) for its bulk copies.
  static constexpr int kBarBytes = 16;
  static constexpr int kStages =
      2 * Stage::kBytes + kStateBytes + 2 * kTileV + kBarBytes <= kMaxSmemBytes ? 2 : 1;
  using Carve = SmemCarve<kStages * Stage::kBytes, kStateBytes, kTileV, kTileV, kBarBytes>;
  static constexpr int kAtState = Carve::at(1), kAtVn = Carve::at(2), kAtVk = Carve::at(3),
                       kAtBar = Carve::at(4);
  static constexpr int kBytes = Carve::kBytes;
  // The workspace tiles are copied whole, padding included: the same row strides.
  static_assert(LDK == workspace_ld(KP) && LDC == workspace_ld(kChunk), "scan tiles and workspace rows differ");
};

template <typename T, int KP, int BV>
struct ScanStage {
  T *w, *q, *k, *m, *tu, *x;
  float *qf, *kf;
  __device__ ScanStage(T* base) {
    using L = ScanLayout<T, KP, BV>;
    w = base;
    q = base + L::kAtQ;
    k = base + L::kAtK;
    m = base + L::kAtM;
    tu = base + L::kAtTu;
    x = base + L::kAtX;
    qf = reinterpret_cast<float*>(base + L::kAtF);
    kf = qf + kChunk;
  }
};

// Issues the loads of chunk `c`'s operands into a stage: thread 0 the workspace tiles as
// bulk copies on `bar` (W, Mqk, Tu only forward, qf, kf: contiguous, rows padded as here),
// every thread its cp.async share of q, k and x = V (forward) or dO (backward), in the
// caller's layout (x already offset to this CTA's first column), zero-filled past the
// chunk's end and past K; committed as one group.
template <typename T, int KP, int BV>
__device__ __forceinline__ void load_scan_stage(const ChunkParams& p, const ScanStage<T, KP, BV>& s, uint64_t* bar,
                                                long long slot, const ChunkLoc& loc, int hv, const T* x_src,
                                                long long x_ld, int x_cols, bool with_tu) {
  using L = ScanLayout<T, KP, BV>;
  constexpr int C = kChunk;
  constexpr uint32_t kBytesW = L::kTileK, kBytesC = L::kTileC, kBytesF = C * sizeof(float);
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, kBytesW + (with_tu ? 2 : 1) * kBytesC + 2 * kBytesF);
    bulk_copy_g2s(s.w, static_cast<const T*>(p.w) + slot * C * L::LDK, kBytesW, bar);
    bulk_copy_g2s(s.m, static_cast<const T*>(p.mqk) + slot * C * L::LDC, kBytesC, bar);
    if (with_tu) bulk_copy_g2s(s.tu, static_cast<const T*>(p.tu) + slot * C * L::LDC, kBytesC, bar);
    bulk_copy_g2s(s.qf, p.qf + slot * C, kBytesF, bar);
    bulk_copy_g2s(s.kf, p.kf + slot * C, kBytesF, bar);
  }
  const long long qk_ld = static_cast<long long>(p.heads) * p.key_dim;
  const long long qk_off = loc.tok0 * qk_ld + static_cast<long long>(hv / (p.value_heads / p.heads)) * p.key_dim;
  tile::load_tile_async<T, kThreads, C, KP>(s.q, L::LDK, static_cast<const T*>(p.q) + qk_off, qk_ld, loc.len, p.key_dim);
  tile::load_tile_async<T, kThreads, C, KP>(s.k, L::LDK, static_cast<const T*>(p.k) + qk_off, qk_ld, loc.len, p.key_dim);
  tile::load_tile_async<T, kThreads, C, BV>(s.x, L::LDV, x_src, x_ld, loc.len, x_cols);
  tile::cp_async_commit();
}

// A scan's pipeline stages and their mbarriers: which stage walk step n uses (n % kStages),
// loading it, and waiting for it (its bulk copies complete phase n / kStages of the
// stage's barrier; its cp.async group is the only one in flight).
template <typename T, int KP, int BV>
struct ScanStages {
  using L = ScanLayout<T, KP, BV>;
  T* base;
  uint64_t* bars;
  __device__ explicit ScanStages(unsigned char* smem)
      : base(reinterpret_cast<T*>(smem)), bars(reinterpret_cast<uint64_t*>(smem + L::kAtBar)) {}
  // Before any load, by all threads (ends with a barrier).
  __device__ void init() const {
    if (threadIdx.x == 0) {
      for (int i = 0; i < L::kStages; ++i) mbar_init(bars + i, 1);
      fence_barrier_init();
    }
    __syncthreads();
  }
  __device__ static int index(long long step) { return L::kStages == 2 ? static_cast<int>(step & 1) : 0; }
  __device__ ScanStage<T, KP, BV> at(long long step) const { return ScanStage<T, KP, BV>(base + index(step) * L::kStage); }
  __device__ uint64_t* bar(long long step) const { return bars + index(step); }
  // Until step's operands have landed: this thread's cp.async and every bulk copy (a
  // barrier must follow before other threads' cp.async data is read).
  __device__ void wait(long long step) const {
    tile::cp_async_wait<0>();
    mbar_wait(bar(step), static_cast<uint32_t>((L::kStages == 2 ? step >> 1 : step) & 1));
  }
};

// The state slice in registers <-> fp32 [K, V] in global memory (rows >= K, columns >= V
// of the slice are zero / not stored).
template <int NT>
__device__ __forceinline__ void load_state(tile::Acc<1, NT>& s, const float* src, int K, int V,
                                           int v0, int m0, int n0) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = m0 + tile::acc_row(lane, i), col = v0 + n0 + nt * 8 + tile::acc_col(lane, i);
      s.v[0][nt][i] = (src != nullptr && r < K && col < V) ? src[static_cast<long long>(r) * V + col] : 0.f;
    }
}
template <int NT>
__device__ __forceinline__ void store_state(const tile::Acc<1, NT>& s, float* dst, int K, int V,
                                            int v0, int m0, int n0) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = m0 + tile::acc_row(lane, i), col = v0 + n0 + nt * 8 + tile::acc_col(lane, i);
      if (r < K && col < V) dst[static_cast<long long>(r) * V + col] = s.v[0][nt][i];
    }
}

// A shared [rows x BV] tile -> global [rows x V] slice at column v0 (16-byte stores).
template <typename T, int BV>
__device__ __forceinline__ void smem_tile_to_global(const T* s, int ld_s, T* g, int V, int v0, int rows) {
  constexpr int kVec = 16 / sizeof(T), kPerRow = BV / kVec;
  for (int idx = threadIdx.x; idx < rows * kPerRow; idx += kThreads) {
    const int r = idx / kPerRow, c = (idx - r * kPerRow) * kVec;
    if (v0 + c < V) {
      *reinterpret_cast<uint4*>(g + static_cast<long long>(r) * V + v0 + c) =
          *reinterpret_cast<const uint4*>(s + r * ld_s + c);
    }
  }
}

// One sequence of a scan CTA's walk: its chunks [first, first + count), its tokens
// [tok_begin, tok_end) and the offset of its [K, V] slice of the initial / final state
// tensors. Where a chunk's tokens lie follows from these (no search of the chunk offsets,
// no 64-bit division on the serial path).
struct WalkSequence {
  int id;
  long long first, count, tok_begin, tok_end, state_off;
  __device__ ChunkLoc at(long long c) const {
    ChunkLoc loc;
    loc.seq = id;
    loc.tok0 = tok_begin + (c - first) * kChunk;
    loc.len = static_cast<int>(tok_end - loc.tok0 < kChunk ? tok_end - loc.tok0 : kChunk);
    return loc;
  }
};

// Which slice a scan CTA owns and its warp tiles: [64 x BV] outputs at (m0, n0), split
// 4 (rows) x 2 (columns), kNT n-tiles each; the [KP x BV] state in 16-row blocks, split
// kRowGroups (rows) x kColSplit (columns) over the warps, kStateNT n-tiles each: a warp
// holds kStateBlocks blocks, at rows state_row(b) and columns ns; the sequences it walks,
// [walk_begin, walk_end) in the launch's walk order (ChunkParams::scan_walks).
template <int KP, int BV>
struct ScanCta {
  static constexpr int kWarps = kThreads / 32, kRowBlocks = KP / 16;
  static constexpr int kStateBlocks = kRowBlocks > kWarps ? kRowBlocks / kWarps : 1;
  static constexpr int kRowGroups = kRowBlocks / kStateBlocks, kColSplit = kWarps / kRowGroups;
  static constexpr int kNT = BV / 16, kStateNT = BV / 8 / kColSplit;
  int v0, hv, m0, n0, ms, ns, walk_begin, walk_end;
  __device__ explicit ScanCta(const ChunkParams& p) {
    const int warp = threadIdx.x >> 5;
    v0 = blockIdx.x * BV, hv = blockIdx.y;
    m0 = (warp & 3) * 16, n0 = (warp >> 2) * (BV / 2);
    ms = (warp % kRowGroups) * 16, ns = (warp / kRowGroups) * (BV / kColSplit);
    const int z = static_cast<int>(blockIdx.z);
    walk_begin = p.scan_walks != nullptr ? p.scan_walks[z] : z;
    walk_end = p.scan_walks != nullptr ? p.scan_walks[z + 1] : z + 1;
  }
  __device__ int state_row(int b) const { return ms + b * 16 * kRowGroups; }
  __device__ WalkSequence sequence(const ChunkParams& p, int j) const {
    const int seq = p.scan_seqs != nullptr ? p.scan_seqs[j] : j;
    WalkSequence s;
    s.id = seq;
    sequence_chunks(p, seq, s.first, s.count);
    s.tok_begin = p.cu_seqlens != nullptr ? p.cu_seqlens[seq] : static_cast<long long>(seq) * p.seq_len;
    s.tok_end = p.cu_seqlens != nullptr ? p.cu_seqlens[seq + 1] : s.tok_begin + p.seq_len;
    s.state_off = (static_cast<long long>(seq) * p.value_heads + hv) * p.key_dim * p.value_dim;
    return s;
  }
};

// The chunks a scan CTA loads, in its walk's order: sequence after sequence (empty ones
// skipped), each first to last or, backward, last to first. The stage loads run one chunk
// ahead of the products, across the walk's sequence boundaries too.
template <typename Cta>
struct WalkCursor {
  WalkSequence seq;  // the sequence being loaded
  int j;             // its walk position
  long long done;    // its chunks already loaded
  bool reverse;
  __device__ WalkCursor(const ChunkParams& p, const Cta& cta, bool backward)
      : j(cta.walk_begin - 1), done(0), reverse(backward) {
    seq.count = 0;
    next_sequence(p, cta);
  }
  __device__ bool more() const { return done < seq.count; }
  __device__ long long chunk() const { return reverse ? seq.first + seq.count - 1 - done : seq.first + done; }
  __device__ void advance(const ChunkParams& p, const Cta& cta) {
    if (++done == seq.count) next_sequence(p, cta);
  }
  __device__ void next_sequence(const ChunkParams& p, const Cta& cta) {
    while (done == seq.count && ++j < cta.walk_end) {
      seq = cta.sequence(p, j);
      done = 0;
    }
  }
};

// Issues the loads of the cursor's next chunk for walk step `step` and moves the cursor
// on; x is V (forward, with Tu) or dO (backward), [tokens, HV, V].
template <typename T, int KP, int BV, typename Cta>
__device__ __forceinline__ void load_next_stage(const ChunkParams& p, const Cta& cta, WalkCursor<Cta>& ahead,
                                                const ScanStages<T, KP, BV>& stages, long long step, const void* x,
                                                bool forward) {
  const long long c = ahead.chunk(), slot = c * p.value_heads + cta.hv;
  const ChunkLoc loc = ahead.seq.at(c);
  const long long x_ld = static_cast<long long>(p.value_heads) * p.value_dim;
  const T* x_cta = static_cast<const T*>(x) + loc.tok0 * x_ld + static_cast<long long>(cta.hv) * p.value_dim + cta.v0;
  load_scan_stage<T, KP, BV>(p, stages.at(step), stages.bar(step), slot, loc, cta.hv, x_cta, x_ld,
                             p.value_dim - cta.v0, forward);
  ahead.advance(p, cta);
}

// One warp's part of the CTA's [KP x BV] state (or state gradient): kStateBlocks
// accumulator blocks at rows cta.state_row(b), columns cta.ns.
template <int KP, int BV>
struct StateSlice {
  using Cta = ScanCta<KP, BV>;
  tile::Acc<1, Cta::kStateNT> block[Cta::kStateBlocks];

  // From / to the fp32 [K, V] matrix at src / dst (zeros from a null src; no store to a null dst).
  __device__ void load(const Cta& cta, const float* src, int K, int V) {
#pragma unroll
    for (int b = 0; b < Cta::kStateBlocks; ++b) load_state(block[b], src, K, V, cta.v0, cta.state_row(b), cta.ns);
  }
  __device__ void store(const Cta& cta, float* dst, int K, int V) const {
    if (dst == nullptr) return;
#pragma unroll
    for (int b = 0; b < Cta::kStateBlocks; ++b) store_state(block[b], dst, K, V, cta.v0, cta.state_row(b), cta.ns);
  }
  // As the 16-bit [KP x BV] operand in shared memory (row stride ld).
  template <typename T>
  __device__ void to_smem(const Cta& cta, T* s, int ld) const {
#pragma unroll
    for (int b = 0; b < Cta::kStateBlocks; ++b) acc_to_smem<T>(block[b], s, ld, cta.state_row(b), cta.ns);
  }
};

template <typename T, int KP, int BV>
__global__ void __launch_bounds__(kThreads, 1) chunk_scan_fwd_kernel(const ChunkParams p) {
  using L = ScanLayout<T, KP, BV>;
  constexpr int C = kChunk, LDV = L::LDV;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sS = reinterpret_cast<T*>(smem + L::kAtState);  // [KP x BV] state as an operand
  T* sVn = reinterpret_cast<T*>(smem + L::kAtVn);    // [64 x BV] V'
  T* sVk = reinterpret_cast<T*>(smem + L::kAtVk);    // [64 x BV] diag(kf) V'

  using Cta = ScanCta<KP, BV>;
  const Cta cta(p);
  const int v0 = cta.v0, hv = cta.hv, HV = p.value_heads, V = p.value_dim, K = p.key_dim;
  const int m0 = cta.m0, n0 = cta.n0, ns = cta.ns;
  const long long o_ld = static_cast<long long>(HV) * V;

  WalkCursor<Cta> ahead(p, cta, /*backward=*/false);
  const ScanStages<T, KP, BV> stages(smem);
  stages.init();
  auto issue_ahead = [&](long long at_step) { load_next_stage<T, KP, BV>(p, cta, ahead, stages, at_step, p.v, true); };
  if (ahead.more()) issue_ahead(0);
  long long step = 0;  // chunks walked: the stage parity
  for (int j = cta.walk_begin; j < cta.walk_end; ++j) {
    const WalkSequence seq = cta.sequence(p, j);
    StateSlice<KP, BV> S;
    S.load(cta, p.initial_state ? p.initial_state + seq.state_off : nullptr, K, V);
    for (long long it = 0; it < seq.count; ++it, ++step) {
      const ScanStage<T, KP, BV> st = stages.at(step);
      const long long c = seq.first + it, slot = c * HV + hv;
      const float gamma = p.gamma[slot];  // needed at the end: load early
      stages.wait(step);
      S.to_smem(cta, sS, LDV);
      __syncthreads();  // every thread is done with the previous chunk: refill its stage
      if (L::kStages == 2 && ahead.more()) issue_ahead(step + 1);

      tile::Acc<1, Cta::kNT> vn, u;
      vn.zero();
      u.zero();
      tile::warp_mma_two_chains<T, tile::RowMajor, tile::RowMajor>(vn, st.w, L::LDK, sS, LDV, m0, n0, KP);
      tile::warp_mma_two_chains<T, tile::RowMajor, tile::RowMajor>(u, st.tu, L::LDC, st.x, LDV, m0, n0, C);
#pragma unroll
      for (int nt = 0; nt < Cta::kNT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) vn.v[0][nt][i] = u.v[0][nt][i] - vn.v[0][nt][i];
      acc_to_smem<T>(vn, sVn, LDV, m0, n0);
      scale_rows(vn, st.kf, m0);
      acc_to_smem<T>(vn, sVk, LDV, m0, n0);
      if (p.states != nullptr) {
        smem_tile_to_global<T, BV>(sS, LDV, static_cast<T*>(p.states) + slot * KP * V, V, v0, KP);
      }
      tile::Acc<1, Cta::kNT> o;
      o.zero();
      if (p.o != nullptr) {
        tile::warp_mma_two_chains<T, tile::RowMajor, tile::RowMajor>(o, st.q, L::LDK, sS, LDV, m0, n0, KP);
        scale_rows(o, st.qf, m0);
      }
      __syncthreads();  // V' complete

      if (p.v_new != nullptr) {
        smem_tile_to_global<T, BV>(sVn, LDV, static_cast<T*>(p.v_new) + slot * C * V, V, v0, C);
      }
      if (p.o != nullptr) {
        tile::warp_mma_two_chains<T, tile::RowMajor, tile::RowMajor>(o, st.m, L::LDC, sVn, LDV, m0, n0, C);
        const ChunkLoc loc = seq.at(c);
        acc_to_global<T>(o, static_cast<T*>(p.o) + loc.tok0 * o_ld + static_cast<long long>(hv) * V + v0,
                         o_ld, m0, n0, loc.len, V - v0);
      }
#pragma unroll
      for (int b = 0; b < Cta::kStateBlocks; ++b) {
        S.block[b].scale(gamma);
        tile::warp_mma_two_chains<T, tile::ColMajor, tile::RowMajor>(S.block[b], st.k, L::LDK, sVk, LDV,
                                                                     cta.state_row(b), ns, C);
      }
      if (L::kStages == 1 && ahead.more()) {
        __syncthreads();  // the one stage is read: refill it
        issue_ahead(step + 1);
      }
    }
    S.store(cta, p.final_state ? p.final_state + seq.state_off : nullptr, K, V);
  }
}

template <typename T, int KP, int BV>
__global__ void __launch_bounds__(kThreads, 1) chunk_scan_bwd_kernel(const ChunkParams p) {
  using L = ScanLayout<T, KP, BV>;
  constexpr int C = kChunk, LDV = L::LDV;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sdS = reinterpret_cast<T*>(smem + L::kAtState);  // [KP x BV] dS as an operand
  T* sdVn = reinterpret_cast<T*>(smem + L::kAtVn);    // [64 x BV] -dV'
  T* sdOq = reinterpret_cast<T*>(smem + L::kAtVk);    // [64 x BV] diag(qf) dO

  using Cta = ScanCta<KP, BV>;
  const Cta cta(p);
  const int v0 = cta.v0, hv = cta.hv, HV = p.value_heads, V = p.value_dim, K = p.key_dim;
  const int m0 = cta.m0, n0 = cta.n0, ns = cta.ns;

  WalkCursor<Cta> ahead(p, cta, /*backward=*/true);
  const ScanStages<T, KP, BV> stages(smem);
  stages.init();
  auto issue_ahead = [&](long long at_step) { load_next_stage<T, KP, BV>(p, cta, ahead, stages, at_step, p.grad_o, false); };
  if (ahead.more()) issue_ahead(0);
  long long step = 0;  // chunks walked: the stage parity
  for (int j = cta.walk_begin; j < cta.walk_end; ++j) {
    const WalkSequence seq = cta.sequence(p, j);
    StateSlice<KP, BV> dS;
    dS.load(cta, p.grad_final ? p.grad_final + seq.state_off : nullptr, K, V);
    for (long long it = 0; it < seq.count; ++it, ++step) {
      const ScanStage<T, KP, BV> st = stages.at(step);
      const long long c = seq.first + seq.count - 1 - it, slot = c * HV + hv;
      const float gamma = p.gamma[slot];
      stages.wait(step);
      dS.to_smem(cta, sdS, LDV);
      __syncthreads();  // every thread is done with the previous chunk: refill its stage
      if (L::kStages == 2 && ahead.more()) issue_ahead(step + 1);
      smem_tile_to_global<T, BV>(sdS, LDV, static_cast<T*>(p.d_states) + slot * KP * V, V, v0, KP);

      for (int idx = threadIdx.x; idx < C * BV / 2; idx += kThreads) {  // read after the next barrier
        const int r = idx / (BV / 2), col = (idx % (BV / 2)) * 2;
        const float f = st.qf[r];
        tile::store_pair(sdOq + r * LDV + col, f * to_float(st.x[r * LDV + col]),
                         f * to_float(st.x[r * LDV + col + 1]));
      }
      tile::Acc<1, Cta::kNT> dvn, kds;
      dvn.zero();
      kds.zero();
      tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(dvn, st.m, L::LDC, st.x, LDV, m0, n0, C);
      tile::warp_mma<T, tile::RowMajor, tile::RowMajor>(kds, st.k, L::LDK, sdS, LDV, m0, n0, KP);
      scale_rows(kds, st.kf, m0);
#pragma unroll
      for (int nt = 0; nt < Cta::kNT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) dvn.v[0][nt][i] += kds.v[0][nt][i];
      acc_to_global<T>(dvn, static_cast<T*>(p.dv_new) + slot * C * V + v0, V, m0, n0, C, V - v0);
      acc_to_smem<T>(dvn, sdVn, LDV, m0, n0, -1.f);
      __syncthreads();

#pragma unroll
      for (int b = 0; b < Cta::kStateBlocks; ++b) {
        const int rows = cta.state_row(b);
        dS.block[b].scale(gamma);
        tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(dS.block[b], st.q, L::LDK, sdOq, LDV, rows, ns, C);
        tile::warp_mma<T, tile::ColMajor, tile::RowMajor>(dS.block[b], st.w, L::LDK, sdVn, LDV, rows, ns, C);
      }
      if (L::kStages == 1 && ahead.more()) {
        __syncthreads();  // the one stage is read: refill it
        issue_ahead(step + 1);
      }
    }
    dS.store(cta, p.grad_initial ? p.grad_initial + seq.state_off : nullptr, K, V);
  }
}

}  // namespace comba::cuda::chunk
