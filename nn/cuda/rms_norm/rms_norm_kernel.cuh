// RMSNorm / gated RMSNorm kernels (one warp per row, see rms_norm_traits.h): the register
// kernels for rows of up to RMSNormTraits::kRegMaxChunks chunks, the looping kernels for the
// rest. Included by the per-dtype .cu files only.
//
// Backward, with xhat = x rstd, s = sigmoid(gate) (1 without gate), u = dy s w:
//   dx = rstd u - x rstd^3 sum(u x) / dim,  dgate = dy xhat w s (1 - s),  dw = sum_rows dy s xhat.
#pragma once
#include <cuda_runtime.h>

#include <type_traits>

#include "../element.cuh"
#include "rms_norm_params.h"
#include "rms_norm_traits.h"

namespace comba::nn::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The forward's output element; the backward recomputes it with this same expression.
__host__ __device__ __forceinline__ float normed(float x, float rstd, float w, float s) { return x * rstd * w * s; }

// sigmoid(gate) for Vec elements at `offset` (ones without gate).
template <typename T, int Vec>
__device__ __forceinline__ void load_gate_sigmoid(const RMSNormParams& p, int64_t offset, float (&s)[Vec]) {
  if (p.gate == nullptr) {
#pragma unroll
    for (int v = 0; v < Vec; ++v) s[v] = 1.f;
    return;
  }
  if (p.gate_fp32) {
    load_vec<float, Vec>(static_cast<const float*>(p.gate) + offset, s);
  } else {
    load_vec<T, Vec>(static_cast<const T*>(p.gate) + offset, s);
  }
#pragma unroll
  for (int v = 0; v < Vec; ++v) s[v] = sigmoidf_(s[v]);
}

template <typename T, int Vec>
__global__ void __launch_bounds__(RMSNormTraits::kFwdWarps * 32) rms_norm_fwd_kernel(const RMSNormParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * RMSNormTraits::kFwdWarps + warp;
  if (row >= p.rows) return;
  const int64_t base = row * p.dim;
  const T* x = static_cast<const T*>(p.x) + base;
  float ss = 0.f;
  for (int c = lane * Vec; c < p.dim; c += 32 * Vec) {
    float xv[Vec];
    load_vec<T, Vec>(x + c, xv);
#pragma unroll
    for (int v = 0; v < Vec; ++v) ss += xv[v] * xv[v];
  }
  const float rstd = rsqrtf(warp_sum(ss) / static_cast<float>(p.dim) + p.eps);
  if (lane == 0) p.rstd[row] = rstd;
  T* y = static_cast<T*>(p.y) + base;
  for (int c = lane * Vec; c < p.dim; c += 32 * Vec) {
    float xv[Vec], wv[Vec], s[Vec], out[Vec];
    load_vec<T, Vec>(x + c, xv);
    load_vec<float, Vec>(p.weight + c, wv);
    load_gate_sigmoid<T, Vec>(p, base + c, s);
#pragma unroll
    for (int v = 0; v < Vec; ++v) out[v] = normed(xv[v], rstd, wv[v], s[v]);
    store_vec<T, Vec>(y + c, out);
  }
}

// The block's weight-grad partial row: every warp's sums (warp-major, `per_warp` floats each,
// lane-minor within a (chunk, slot)) added in warp order. Starts with the barrier that
// publishes them.
template <int Vec, int kWarps>
__device__ __forceinline__ void write_block_dw_partial(const RMSNormParams& p, const float* sums, int per_warp) {
  __syncthreads();
  for (int i = threadIdx.x; i < per_warp; i += kWarps * 32) {
    const int k = i / (Vec * 32), v = (i / 32) % Vec, l = i % 32;
    const int col = k * 32 * Vec + l * Vec + v;
    if (col >= p.dim) continue;
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += sums[w * per_warp + i];
    p.dw_partial[static_cast<int64_t>(blockIdx.x) * p.dim + col] = total;
  }
}

// Dynamic shared memory: kBwdWarps x chunks x Vec x 32 floats, chunk = 32 x Vec columns;
// a warp's sums are stored lane-minor ((chunk * Vec + v) * 32 + lane) to avoid bank conflicts.
template <typename T, int Vec>
__global__ void __launch_bounds__(RMSNormTraits::kBwdWarps * 32) rms_norm_bwd_kernel(const RMSNormParams p) {
  extern __shared__ float dw_sums[];
  constexpr int kWarps = RMSNormTraits::kBwdWarps;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int chunks = (p.dim + 32 * Vec - 1) / (32 * Vec);
  const int per_warp = chunks * Vec * 32;
  float* mine = dw_sums + warp * per_warp;
  for (int i = lane; i < per_warp; i += 32) mine[i] = 0.f;
  const float inv_dim = 1.f / static_cast<float>(p.dim);

  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp; row < p.rows;
       row += static_cast<int64_t>(gridDim.x) * kWarps) {
    const int64_t base = row * p.dim;
    const T* x = static_cast<const T*>(p.x) + base;
    const T* dy = static_cast<const T*>(p.dy) + base;
    const float rstd = p.rstd[row];
    float dot = 0.f;  // sum(u x)
    for (int c = lane * Vec; c < p.dim; c += 32 * Vec) {
      float xv[Vec], gv[Vec], wv[Vec], s[Vec];
      load_vec<T, Vec>(x + c, xv);
      load_vec<T, Vec>(dy + c, gv);
      load_vec<float, Vec>(p.weight + c, wv);
      load_gate_sigmoid<T, Vec>(p, base + c, s);
#pragma unroll
      for (int v = 0; v < Vec; ++v) dot += gv[v] * s[v] * wv[v] * xv[v];
    }
    const float m = warp_sum(dot) * rstd * rstd * rstd * inv_dim;
    T* dx = static_cast<T*>(p.dx) + base;
    for (int k = 0; k * 32 * Vec < p.dim; ++k) {
      const int c = k * 32 * Vec + lane * Vec;
      if (c >= p.dim) continue;
      float xv[Vec], gv[Vec], wv[Vec], s[Vec], out[Vec];
      load_vec<T, Vec>(x + c, xv);
      load_vec<T, Vec>(dy + c, gv);
      load_vec<float, Vec>(p.weight + c, wv);
      load_gate_sigmoid<T, Vec>(p, base + c, s);
#pragma unroll
      for (int v = 0; v < Vec; ++v) {
        const float a = gv[v] * s[v];  // dy s
        out[v] = rstd * a * wv[v] - xv[v] * m;
        mine[(k * Vec + v) * 32 + lane] += a * xv[v] * rstd;
      }
      store_vec<T, Vec>(dx + c, out);
      if (p.y != nullptr) {
        float yv[Vec];
#pragma unroll
        for (int v = 0; v < Vec; ++v) yv[v] = normed(xv[v], rstd, wv[v], s[v]);
        store_vec<T, Vec>(static_cast<T*>(p.y) + base + c, yv);
      }
      if (p.gate != nullptr) {
        float dg[Vec];
#pragma unroll
        for (int v = 0; v < Vec; ++v) dg[v] = gv[v] * xv[v] * rstd * wv[v] * s[v] * (1.f - s[v]);
        if (p.gate_fp32) {
          store_vec<float, Vec>(static_cast<float*>(p.d_gate) + base + c, dg);
        } else {
          store_vec<T, Vec>(static_cast<T*>(p.d_gate) + base + c, dg);
        }
      }
    }
  }
  write_block_dw_partial<Vec, kWarps>(p, dw_sums, per_warp);
}

template <int Vec>
inline size_t rms_norm_bwd_smem(int dim) {
  const int chunks = (dim + 32 * Vec - 1) / (32 * Vec);
  return sizeof(float) * RMSNormTraits::kBwdWarps * chunks * Vec * 32;
}

// ---------------------------------------------------------------------------------------
// Register kernels. A pass of a warp loads every vector of its R rows (x, dy, gate) before
// using any, so R x Chunks loads per operand are in flight per lane; the loops run over
// compile-time Chunks and R with predicates for columns >= dim and rows >= rows, so the
// arrays stay in registers. Same per-element expressions, in the same order, as the looping
// kernels.

// The gate's element type as a template argument (NoGate: s = 1, nothing loaded).
struct NoGate {};

// fn(G{}) with G the gate's element type: NoGate, float or T.
template <typename T, typename Fn>
__device__ __forceinline__ void with_gate_type(const RMSNormParams& p, Fn&& fn) {
  if (p.gate == nullptr) {
    fn(NoGate{});
  } else if (std::is_same_v<T, float> || p.gate_fp32) {
    fn(float{});
  } else {
    fn(T{});
  }
}

// warp_sum of R independent values, the shuffles interleaved (same order per value as warp_sum).
template <int R>
__device__ __forceinline__ void warp_sum_rows(float (&v)[R]) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
#pragma unroll
    for (int r = 0; r < R; ++r) v[r] += __shfl_xor_sync(0xffffffffu, v[r], offset);
  }
}

// The lane's weight columns (zeros past dim), loaded once per warp: every row uses them.
template <int Vec, int Chunks>
__device__ __forceinline__ void load_weight(const RMSNormParams& p, int lane, bool (&col_ok)[Chunks],
                                            float (&w)[Chunks][Vec]) {
#pragma unroll
  for (int k = 0; k < Chunks; ++k) {
    const int c = k * 32 * Vec + lane * Vec;
    col_ok[k] = c < p.dim;
    if (col_ok[k]) {
      load_vec<float, Vec>(p.weight + c, w[k]);
    } else {
#pragma unroll
      for (int v = 0; v < Vec; ++v) w[k][v] = 0.f;
    }
  }
}

// One pass's operands: R rows x Chunks vectors per lane, as loaded.
template <typename T, typename G, int Vec, int Chunks, int R, bool kWithDy>
struct RowTile {
  static constexpr bool kGate = !std::is_same_v<G, NoGate>;
  using GateElem = std::conditional_t<kGate, G, T>;  // unused without gate
  Words<T, Vec> x[R][Chunks];
  Words<T, Vec> dy[R][Chunks];  // backward only
  Words<GateElem, Vec> gate[R][Chunks];
  bool ok[R][Chunks];  // row < rows and column < dim
  int64_t at[R];       // row * dim + the lane's first column

  // Issues every load of rows row0 .. row0 + R - 1.
  __device__ __forceinline__ void load(const RMSNormParams& p, int64_t row0, int lane,
                                       const bool (&col_ok)[Chunks]) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const bool row_ok = row0 + r < p.rows;
      at[r] = (row0 + r) * p.dim + lane * Vec;
#pragma unroll
      for (int k = 0; k < Chunks; ++k) {
        ok[r][k] = row_ok && col_ok[k];
        const int64_t i = at[r] + k * 32 * Vec;
        x[r][k].load(static_cast<const T*>(p.x) + i, ok[r][k]);
        if constexpr (kWithDy) dy[r][k].load(static_cast<const T*>(p.dy) + i, ok[r][k]);
        if constexpr (kGate) gate[r][k].load(static_cast<const GateElem*>(p.gate) + i, ok[r][k]);
      }
    }
  }

  // See Words::hide: x and dy are converted again after this point rather than their fp32
  // values kept across the shuffles.
  __device__ __forceinline__ void hide(uint32_t zero) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int k = 0; k < Chunks; ++k) {
        x[r][k].hide(zero);
        if constexpr (kWithDy) dy[r][k].hide(zero);
      }
    }
  }

  // sigmoid(gate) of row r, chunk k (ones without gate), as load_gate_sigmoid.
  __device__ __forceinline__ void sigmoid(int r, int k, float (&s)[Vec]) const {
    if constexpr (kGate) {
      gate[r][k].unpack(s);
#pragma unroll
      for (int v = 0; v < Vec; ++v) s[v] = sigmoidf_(s[v]);
    } else {
#pragma unroll
      for (int v = 0; v < Vec; ++v) s[v] = 1.f;
    }
  }
};

template <typename T, typename G, int Vec, int Chunks>
__device__ __forceinline__ void rms_norm_fwd_regs_rows(const RMSNormParams& p) {
  constexpr int R = kRMSNormRegRows<Chunks>;
  constexpr int kWarps = RMSNormTraits::kRegWarps;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  bool col_ok[Chunks];
  float w[Chunks][Vec];
  load_weight<Vec, Chunks>(p, lane, col_ok, w);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps * R;
  for (int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * R; row0 < p.rows; row0 += stride) {
    RowTile<T, G, Vec, Chunks, R, /*kWithDy=*/false> t;
    t.load(p, row0, lane, col_ok);
    float rstd[R];  // sum(x^2), then rstd
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float ss = 0.f;
#pragma unroll
      for (int k = 0; k < Chunks; ++k) {
        float xv[Vec];
        t.x[r][k].unpack(xv);
#pragma unroll
        for (int v = 0; v < Vec; ++v) ss += xv[v] * xv[v];
      }
      rstd[r] = ss;
    }
    warp_sum_rows<R>(rstd);
    t.hide(p.dim < 0 ? ~0u : 0u);  // dim > 0: zero
#pragma unroll
    for (int r = 0; r < R; ++r) {
      rstd[r] = rsqrtf(rstd[r] / static_cast<float>(p.dim) + p.eps);
      if (lane == 0 && row0 + r < p.rows) p.rstd[row0 + r] = rstd[r];
#pragma unroll
      for (int k = 0; k < Chunks; ++k) {
        if (!t.ok[r][k]) continue;
        float xv[Vec], s[Vec], out[Vec];
        t.x[r][k].unpack(xv);
        t.sigmoid(r, k, s);
#pragma unroll
        for (int v = 0; v < Vec; ++v) out[v] = normed(xv[v], rstd[r], w[k][v], s[v]);
        store_vec<T, Vec>(static_cast<T*>(p.y) + t.at[r] + k * 32 * Vec, out);
      }
    }
  }
}

template <typename T, int Vec, int Chunks>
__global__ void __launch_bounds__(RMSNormTraits::kRegWarps * 32) rms_norm_fwd_regs_kernel(const RMSNormParams p) {
  with_gate_type<T>(p, [&](auto gate) { rms_norm_fwd_regs_rows<T, decltype(gate), Vec, Chunks>(p); });
}

// `sums`: kRegWarps x Chunks x Vec x 32 floats, a warp's lane-minor as in the looping kernel.
template <typename T, typename G, int Vec, int Chunks>
__device__ __forceinline__ void rms_norm_bwd_regs_rows(const RMSNormParams& p, float* sums) {
  constexpr int R = kRMSNormRegRows<Chunks>;
  constexpr int kWarps = RMSNormTraits::kRegWarps;
  constexpr int kPerWarp = Chunks * Vec * 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  bool col_ok[Chunks];
  float w[Chunks][Vec];
  load_weight<Vec, Chunks>(p, lane, col_ok, w);
  float dw[Chunks][Vec];
#pragma unroll
  for (int k = 0; k < Chunks; ++k) {
#pragma unroll
    for (int v = 0; v < Vec; ++v) dw[k][v] = 0.f;
  }
  const float inv_dim = 1.f / static_cast<float>(p.dim);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps * R;
  for (int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * R; row0 < p.rows; row0 += stride) {
    RowTile<T, G, Vec, Chunks, R, /*kWithDy=*/true> t;
    t.load(p, row0, lane, col_ok);
    float rstd[R];
#pragma unroll
    for (int r = 0; r < R; ++r) rstd[r] = row0 + r < p.rows ? p.rstd[row0 + r] : 0.f;
    float m[R];  // sum(u x), then rstd^3 sum(u x) / dim
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float dot = 0.f;
#pragma unroll
      for (int k = 0; k < Chunks; ++k) {
        float xv[Vec], gv[Vec], s[Vec];
        t.x[r][k].unpack(xv);
        t.dy[r][k].unpack(gv);
        t.sigmoid(r, k, s);
#pragma unroll
        for (int v = 0; v < Vec; ++v) dot += gv[v] * s[v] * w[k][v] * xv[v];
      }
      m[r] = dot;
    }
    warp_sum_rows<R>(m);
    t.hide(p.dim < 0 ? ~0u : 0u);  // dim > 0: zero
#pragma unroll
    for (int r = 0; r < R; ++r) {
      m[r] = m[r] * rstd[r] * rstd[r] * rstd[r] * inv_dim;
#pragma unroll
      for (int k = 0; k < Chunks; ++k) {
        if (!t.ok[r][k]) continue;
        const int64_t i = t.at[r] + k * 32 * Vec;
        float xv[Vec], gv[Vec], s[Vec], out[Vec];
        t.x[r][k].unpack(xv);
        t.dy[r][k].unpack(gv);
        t.sigmoid(r, k, s);
#pragma unroll
        for (int v = 0; v < Vec; ++v) {
          const float a = gv[v] * s[v];  // dy s
          out[v] = rstd[r] * a * w[k][v] - xv[v] * m[r];
          dw[k][v] += a * xv[v] * rstd[r];
        }
        store_vec<T, Vec>(static_cast<T*>(p.dx) + i, out);
        if (p.y != nullptr) {
#pragma unroll
          for (int v = 0; v < Vec; ++v) out[v] = normed(xv[v], rstd[r], w[k][v], s[v]);
          store_vec<T, Vec>(static_cast<T*>(p.y) + i, out);
        }
        if constexpr (!std::is_same_v<G, NoGate>) {
#pragma unroll
          for (int v = 0; v < Vec; ++v) out[v] = gv[v] * xv[v] * rstd[r] * w[k][v] * s[v] * (1.f - s[v]);
          store_vec<G, Vec>(static_cast<G*>(p.d_gate) + i, out);
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < Chunks; ++k) {
#pragma unroll
    for (int v = 0; v < Vec; ++v) sums[warp * kPerWarp + (k * Vec + v) * 32 + lane] = dw[k][v];
  }
  write_block_dw_partial<Vec, kWarps>(p, sums, kPerWarp);
}

// The shared memory is declared here, not in the per-gate bodies, so the three share it.
template <typename T, int Vec, int Chunks>
__global__ void __launch_bounds__(RMSNormTraits::kRegWarps * 32) rms_norm_bwd_regs_kernel(const RMSNormParams p) {
  __shared__ float sums[RMSNormTraits::kRegWarps * Chunks * Vec * 32];
  with_gate_type<T>(p, [&](auto gate) { rms_norm_bwd_regs_rows<T, decltype(gate), Vec, Chunks>(p, sums); });
}

// ---------------------------------------------------------------------------------------
// Launchers: Chunks 0 takes the looping kernels.

template <typename T, int Vec, int Chunks>
int launch_rms_norm_fwd_typed(const RMSNormParams& p, cudaStream_t stream) {
  if constexpr (Chunks > 0) {
    const dim3 grid(static_cast<unsigned>(rms_norm_reg_blocks(p.rows, Chunks)));
    rms_norm_fwd_regs_kernel<T, Vec, Chunks><<<grid, RMSNormTraits::kRegWarps * 32, 0, stream>>>(p);
  } else {
    constexpr int kRowsPerBlock = RMSNormTraits::kFwdWarps;
    const dim3 grid(static_cast<unsigned>((p.rows + kRowsPerBlock - 1) / kRowsPerBlock));
    rms_norm_fwd_kernel<T, Vec><<<grid, kRowsPerBlock * 32, 0, stream>>>(p);
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int Vec, int Chunks>
int launch_rms_norm_bwd_typed(const RMSNormParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rms_norm_bwd_blocks(p.rows, Chunks)));
  if constexpr (Chunks > 0) {
    rms_norm_bwd_regs_kernel<T, Vec, Chunks><<<grid, RMSNormTraits::kRegWarps * 32, 0, stream>>>(p);
  } else {
    const size_t smem = rms_norm_bwd_smem<Vec>(p.dim);
    if (smem > 48 * 1024) {
      const cudaError_t err = cudaFuncSetAttribute(rms_norm_bwd_kernel<T, Vec>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   static_cast<int>(smem));
      if (err != cudaSuccess) return static_cast<int>(err);
    }
    rms_norm_bwd_kernel<T, Vec><<<grid, RMSNormTraits::kBwdWarps * 32, smem, stream>>>(p);
  }
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launchers for one dtype: scalar, vectorised looping (Chunks 0) and the
// vectorised register kernels for the Chunks rms_norm_reg_chunks picks (1, 2, 4).
#define COMBA_INSTANTIATE_RMS_NORM_FORM(T, Vec, Chunks)                                   \
  template int launch_rms_norm_fwd_typed<T, Vec, Chunks>(const RMSNormParams&, cudaStream_t); \
  template int launch_rms_norm_bwd_typed<T, Vec, Chunks>(const RMSNormParams&, cudaStream_t);
#define COMBA_INSTANTIATE_RMS_NORM(T)                                      \
  static_assert(RMSNormTraits::kRegMaxChunks == 4, "instantiated Chunks"); \
  COMBA_INSTANTIATE_RMS_NORM_FORM(T, 1, 0)                                 \
  COMBA_INSTANTIATE_RMS_NORM_FORM(T, RMSNormTraits::kVecBytes / sizeof(T), 0) \
  COMBA_INSTANTIATE_RMS_NORM_FORM(T, RMSNormTraits::kVecBytes / sizeof(T), 1) \
  COMBA_INSTANTIATE_RMS_NORM_FORM(T, RMSNormTraits::kVecBytes / sizeof(T), 2) \
  COMBA_INSTANTIATE_RMS_NORM_FORM(T, RMSNormTraits::kVecBytes / sizeof(T), 4)

}  // namespace comba::nn::cuda
