// Pieces shared by the fused recurrent forward and backward kernels: the per-lane state
// columns, the sequence a CTA walks, the state checkpoints a training forward leaves for
// the backward, and a warp reduction over lanes. No torch headers.
#pragma once
#include <cuda_runtime.h>

#include "../common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

template <int Vec>
struct StateVec;  // Vec adjacent fp32 state columns, loaded and stored in one access
template <>
struct StateVec<1> {
  float x[1];
  __device__ void load(const float* p) { x[0] = *p; }
  __device__ void store(float* p) const { *p = x[0]; }
};
template <>
struct StateVec<2> {
  float x[2];
  __device__ void load(const float* p) {
    const float2 f = *reinterpret_cast<const float2*>(p);
    x[0] = f.x, x[1] = f.y;
  }
  __device__ void store(float* p) const { *reinterpret_cast<float2*>(p) = make_float2(x[0], x[1]); }
};
template <>
struct StateVec<4> {
  float x[4];
  __device__ void load(const float* p) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    x[0] = f.x, x[1] = f.y, x[2] = f.z, x[3] = f.w;
  }
  __device__ void store(float* p) const {
    *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
  }
};

// The tokens [bos, bos + len) of sequence n: dense rows of seq_len, or a cu_seqlens segment.
struct SequenceSpan {
  long long bos, len;
  __device__ SequenceSpan(const RecurrentFwdParams& p, int n) {
    bos = static_cast<long long>(n) * p.seq_len;
    len = p.seq_len;
    if (p.cu_seqlens != nullptr) {
      bos = p.cu_seqlens[n];
      len = p.cu_seqlens[n + 1] - bos;
    }
  }
  // Checkpoint slot of the state entering segment 0 of this sequence.
  __device__ long long first_slot(int n) const { return recurrent_first_slot(bos, n); }
};

// A Rows x Vec slice of one [K, V] fp32 matrix (rows row0.., columns col0..), zeros where
// the source is null or the slice leaves the matrix.
template <int Rows, int Vec>
__device__ __forceinline__ void load_slice(StateVec<Vec> (&dst)[Rows], const float* src,
                                           int K, int V, int row0, int col0, bool cols_ok) {
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    if (src != nullptr && row0 + i < K && cols_ok) {
      dst[i].load(src + static_cast<long long>(row0 + i) * V + col0);
    } else {
#pragma unroll
      for (int c = 0; c < Vec; ++c) dst[i].x[c] = 0.f;
    }
  }
}

template <int Rows, int Vec>
__device__ __forceinline__ void store_slice(const StateVec<Vec> (&src)[Rows], float* dst, int K,
                                            int V, int row0, int col0, bool cols_ok) {
  if (!cols_ok) return;
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    if (row0 + i < K) src[i].store(dst + static_cast<long long>(row0 + i) * V + col0);
  }
}

namespace detail {
// One halving step of warp_reduce_scatter: lanes with `Mask` set keep the upper half of
// the first 2 * Half entries, the others the lower half, each adding its partner's copy.
template <int Half, int Mask, int N>
__device__ __forceinline__ void scatter_step(float (&x)[N], int lane) {
  const bool upper = (lane & Mask) != 0;
#pragma unroll
  for (int j = 0; j < Half; ++j) {
    const float send = upper ? x[j] : x[j + Half];
    const float keep = upper ? x[j + Half] : x[j];
    x[j] = keep + __shfl_xor_sync(0xffffffffu, send, Mask);
  }
  if constexpr (Half > 1) scatter_step<Half / 2, Mask / 2>(x, lane);
}
}  // namespace detail

// Sums x[i] (i < N, N a power of two <= 32) over the 32 lanes of a warp with
// N - 1 + log2(32 / N) shuffles instead of 5 N: each step hands half of the remaining
// entries to the partner lane (x is clobbered). Returns, in every lane, the total of
// entry lane / (32 / N).
template <int N>
__device__ __forceinline__ float warp_reduce_scatter(float (&x)[N], int lane) {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "N must be a power of two <= 32");
  if constexpr (N > 1) detail::scatter_step<N / 2, 16>(x, lane);
  float total = x[0];
#pragma unroll
  for (int mask = 16 / N; mask >= 1; mask /= 2) total += __shfl_xor_sync(0xffffffffu, total, mask);
  return total;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int mask = 16; mask >= 1; mask /= 2) x += __shfl_xor_sync(0xffffffffu, x, mask);
  return x;
}

// 1 / ||x|| over the K elements of x (the l2norm's factor, eps kL2NormEps), in every lane; 1
// when not `enabled`.
template <typename E>
__device__ __forceinline__ float warp_inverse_norm(const E* x, int K, int lane, bool enabled = true) {
  if (!enabled) return 1.f;
  float ss = 0.f;
  for (int r = lane; r < K; r += 32) {
    const float e = to_float(x[r]);
    ss += e * e;
  }
  return rsqrtf(warp_sum(ss) + static_cast<float>(kL2NormEps));
}

// This warp's share of S^T x over its Rows state rows: out[c] = sum_i x(i) S[i][c]
// (x(i): the entry of x at the warp's i-th row); the CTA adds the warps' shares.
template <int Rows, int Vec, typename RowEntry>
__device__ __forceinline__ void warp_rows_product(const StateVec<Vec> (&S)[Rows], RowEntry&& x,
                                                  float (&out)[Vec]) {
#pragma unroll
  for (int c = 0; c < Vec; ++c) out[c] = 0.f;
#pragma unroll
  for (int i = 0; i < Rows; ++i) {
    const float xi = x(i);
#pragma unroll
    for (int c = 0; c < Vec; ++c) out[c] += xi * S[i].x[c];
  }
}


// One segment of kRecurrentSegment tokens staged in shared memory as fp32, so the serial
// per-token loop reads shared memory only: q, k, p rows as given, their l2 norms'
// inverses (1 without l2norm; one warp per vector), v and do for the CTA's columns,
// alpha = exp(g) and beta. Only the segment's `steps` tokens are written; columns past V
// are zeros.
struct SegmentSmem {
  float* q;      // [kRecurrentSegment][K]
  float* k;
  float* p;
  float* v;      // [kRecurrentSegment][Columns]
  float* d_o;
  float* alpha;  // [kRecurrentSegment]
  float* beta;
  float* inv_q;  // [kRecurrentSegment]
  float* inv_k;
  float* inv_p;

  // q, k, p rows; v and do columns; alpha, beta and the three inverse norms.
  static constexpr int kVectors = 5;
  static constexpr int floats(int key_dim, int columns) {
    return kRecurrentSegment * (3 * key_dim + 2 * columns + kVectors);
  }
  __device__ SegmentSmem(float* base, int key_dim, int columns)
      : q(base),
        k(q + kRecurrentSegment * key_dim),
        p(k + kRecurrentSegment * key_dim),
        v(p + kRecurrentSegment * key_dim),
        d_o(v + kRecurrentSegment * columns),
        alpha(d_o + kRecurrentSegment * columns),
        beta(alpha + kRecurrentSegment),
        inv_q(beta + kRecurrentSegment),
        inv_k(inv_q + kRecurrentSegment),
        inv_p(inv_k + kRecurrentSegment) {}

  // Loads tokens [first, first + steps) (query/key head h, value head hv, columns from
  // col_base); grad_o may be null (forward). The inverse norms are written after the
  // last barrier here: the caller's next barrier publishes them.
  template <typename T, int Columns, int Warps>
  __device__ void stage(const RecurrentFwdParams& in, const void* grad_o, long long first,
                        int steps, int h, int hv, int col_base) {
    const int K = in.key_dim, V = in.value_dim, HV = in.value_heads;
    const T* qs = static_cast<const T*>(in.q);
    const T* ks = static_cast<const T*>(in.k);
    const T* ps = static_cast<const T*>(in.p);
    const T* vs = static_cast<const T*>(in.v);
    const T* dos = static_cast<const T*>(grad_o);
    // kBatch loads per array in flight per thread before the first store: the segment
    // is loaded in a few memory round trips, not one per element.
    constexpr int kBatch = 4;
    const long long qk_base = (first * in.heads + h) * K;  // token t's row: + t * heads * K
    const int qk_total = steps * K;
    for (int base = threadIdx.x; base < qk_total; base += kBatch * blockDim.x) {
      float rq[kBatch], rk[kBatch], rp[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = base + b * blockDim.x;
        if (idx < qk_total) {
          const long long at = qk_base + static_cast<long long>(idx / K) * (in.heads - 1) * K + idx;
          rq[b] = to_float(qs[at]);
          rk[b] = to_float(ks[at]);
          rp[b] = to_float(ps[at]);
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = base + b * blockDim.x;
        if (idx < qk_total) {
          q[idx] = rq[b];
          k[idx] = rk[b];
          p[idx] = rp[b];
        }
      }
    }
    const int v_total = steps * Columns;
    for (int base = threadIdx.x; base < v_total; base += kBatch * blockDim.x) {
      float rv[kBatch], rd[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = base + b * blockDim.x;
        const int col = col_base + idx % Columns;
        const long long at = ((first + idx / Columns) * HV + hv) * V + col;
        const bool ok = idx < v_total && col < V;
        rv[b] = ok ? to_float(vs[at]) : 0.f;
        rd[b] = ok && dos != nullptr ? to_float(dos[at]) : 0.f;
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = base + b * blockDim.x;
        if (idx < v_total) {
          v[idx] = rv[b];
          d_o[idx] = rd[b];
        }
      }
    }
    if (threadIdx.x < steps) {
      const int s = threadIdx.x;
      const long long gate = (first + s) * HV + hv;
      alpha[s] = __expf(load_either<T>(in.g, gate, in.g_fp32));
      beta[s] = in.beta != nullptr ? load_either<T>(in.beta, gate, in.beta_fp32) : 1.f;
      if (!in.use_l2norm) inv_q[s] = inv_k[s] = inv_p[s] = 1.f;
    }
    __syncthreads();
    if (in.use_l2norm) {
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      for (int job = warp; job < 3 * steps; job += Warps) {
        const int s = job / 3, which = job % 3;
        const float inv = warp_inverse_norm((which == 0 ? q : which == 1 ? k : p) + s * K, K, lane);
        if (lane == 0) (which == 0 ? inv_q : which == 1 ? inv_k : inv_p)[s] = inv;
      }
    }
  }
};


// Launches a recurrent kernel (forward or backward, whose arguments are `params`) over
// (column blocks, HV, N) with its staged segment in dynamic shared memory, opted in once
// per device for the tile's largest K. `sizes`: the problem's dims.
template <auto Kernel, int Rows, int Vec, typename Params>
int launch_segment_kernel(const Params& params, const RecurrentFwdParams& sizes, cudaStream_t stream) {
  constexpr int kColumns = RecurrentTraits::kLanes * Vec;
  constexpr int kFloatBytes = sizeof(float);
  const int most = SegmentSmem::floats(RecurrentTraits::kWarps * Rows, kColumns) * kFloatBytes;
  if (const int err = allow_dynamic_smem<Kernel>(most); err != 0) return err;
  const dim3 grid((sizes.value_dim + kColumns - 1) / kColumns, sizes.value_heads, sizes.num_seqs);
  const int bytes = SegmentSmem::floats(sizes.key_dim, kColumns) * kFloatBytes;
  const auto kernel = Kernel;
  kernel<<<grid, RecurrentTraits::kThreads, bytes, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace comba::cuda
