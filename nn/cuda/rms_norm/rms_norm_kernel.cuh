// RMSNorm / gated RMSNorm kernels (one warp per row, see rms_norm_traits.h). Included by
// the per-dtype .cu files only.
//
// Backward, with xhat = x rstd, s = sigmoid(gate) (1 without gate), u = dy s w:
//   dx = rstd u - x rstd^3 sum(u x) / dim,  dgate = dy xhat w s (1 - s),  dw = sum_rows dy s xhat.
#pragma once
#include <cuda_runtime.h>

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
  __syncthreads();
  for (int i = threadIdx.x; i < per_warp; i += kWarps * 32) {
    const int k = i / (Vec * 32), v = (i / 32) % Vec, l = i % 32;
    const int col = k * 32 * Vec + l * Vec + v;
    if (col >= p.dim) continue;
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += dw_sums[w * per_warp + i];
    p.dw_partial[static_cast<int64_t>(blockIdx.x) * p.dim + col] = total;
  }
}

template <int Vec>
inline size_t rms_norm_bwd_smem(int dim) {
  const int chunks = (dim + 32 * Vec - 1) / (32 * Vec);
  return sizeof(float) * RMSNormTraits::kBwdWarps * chunks * Vec * 32;
}

template <typename T, int Vec>
int launch_rms_norm_fwd_typed(const RMSNormParams& p, cudaStream_t stream) {
  constexpr int kRowsPerBlock = RMSNormTraits::kFwdWarps;
  const dim3 grid(static_cast<unsigned>((p.rows + kRowsPerBlock - 1) / kRowsPerBlock));
  rms_norm_fwd_kernel<T, Vec><<<grid, kRowsPerBlock * 32, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int Vec>
int launch_rms_norm_bwd_typed(const RMSNormParams& p, cudaStream_t stream) {
  const size_t smem = rms_norm_bwd_smem<Vec>(p.dim);
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(rms_norm_bwd_kernel<T, Vec>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(smem));
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  const dim3 grid(static_cast<unsigned>(rms_norm_bwd_blocks(p.rows)));
  rms_norm_bwd_kernel<T, Vec><<<grid, RMSNormTraits::kBwdWarps * 32, smem, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the launchers for one dtype: vectorised (16-byte accesses) and scalar.
#define COMBA_INSTANTIATE_RMS_NORM(T)                                                              \
  template int launch_rms_norm_fwd_typed<T, RMSNormTraits::kVecBytes / sizeof(T)>(                 \
      const RMSNormParams&, cudaStream_t);                                                          \
  template int launch_rms_norm_fwd_typed<T, 1>(const RMSNormParams&, cudaStream_t);                 \
  template int launch_rms_norm_bwd_typed<T, RMSNormTraits::kVecBytes / sizeof(T)>(                 \
      const RMSNormParams&, cudaStream_t);                                                          \
  template int launch_rms_norm_bwd_typed<T, 1>(const RMSNormParams&, cudaStream_t);

}  // namespace comba::nn::cuda
