// Cross-entropy row kernels (see cross_entropy_params.h for the math and
// cross_entropy_traits.h for the tiling). Included by the per-dtype .cu files only.
//
// The softmax sums are kept as (max m, sum of exp(x - m)) pairs, combined across threads as
// m = max(m1, m2), s = s1 exp(m1 - m) + s2 exp(m2 - m): no exp overflows whatever the logits.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "../element.cuh"
#include "cross_entropy_params.h"
#include "cross_entropy_traits.h"

namespace comba::nn::cuda {

struct SoftmaxSums {
  float max = -INFINITY;
  float sum = 0.f;  // of exp(x - max)
};

__device__ __forceinline__ SoftmaxSums combine(const SoftmaxSums& a, const SoftmaxSums& b) {
  if (a.sum == 0.f) return b;  // also covers a thread that saw no logits
  if (b.sum == 0.f) return a;
  SoftmaxSums out;
  out.max = fmaxf(a.max, b.max);
  out.sum = a.sum * expf(a.max - out.max) + b.sum * expf(b.max - out.max);
  return out;
}

// Adds Vec logits to a thread's sums: one rescale per vector, not per logit.
template <int Vec>
__device__ __forceinline__ void add_logits(SoftmaxSums& sums, const float (&x)[Vec]) {
  float m = x[0];
#pragma unroll
  for (int v = 1; v < Vec; ++v) m = fmaxf(m, x[v]);
  float s = 0.f;
#pragma unroll
  for (int v = 0; v < Vec; ++v) s += expf(x[v] - m);
  sums = combine(sums, SoftmaxSums{m, s});
}

// log sum exp of the row from every thread's sums (all threads get it).
__device__ __forceinline__ float block_logsumexp(SoftmaxSums sums) {
  __shared__ SoftmaxSums warp_sums[CrossEntropyTraits::kThreads / 32];
  __shared__ float lse;
  for (int offset = 16; offset > 0; offset >>= 1) {
    const SoftmaxSums other{__shfl_xor_sync(0xffffffffu, sums.max, offset),
                            __shfl_xor_sync(0xffffffffu, sums.sum, offset)};
    sums = combine(sums, other);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = sums;
  __syncthreads();
  if (threadIdx.x == 0) {
    SoftmaxSums total;
    for (int w = 0; w < CrossEntropyTraits::kThreads / 32; ++w) total = combine(total, warp_sums[w]);
    lse = total.max + logf(total.sum);
  }
  __syncthreads();
  return lse;
}

// What a row counts: its target, the loss's value from lse and the target's logit, and the
// factor of its gradient (1 counted, 0 ignored, NaN for a target out of range).
struct RowTarget {
  int64_t target;
  bool counted, in_range;

  // Thread 0 also stores the target's logit (0 out of range) in *target_logit, for after
  // the next barrier: the row's logits are overwritten later.
  template <typename T>
  __device__ __forceinline__ RowTarget(const CrossEntropyParams& p, int64_t row, const T* x, float* target_logit) {
    target = p.targets[row];
    counted = target != p.ignore_index;
    in_range = target >= 0 && target < p.vocab;
    if (threadIdx.x == 0) *target_logit = in_range ? to_float(x[target]) : 0.f;
  }
  __device__ __forceinline__ float loss(float lse, float target_logit) const {
    if (!counted) return 0.f;
    return in_range ? lse - target_logit : NAN;
  }
  __device__ __forceinline__ float scale() const {
    if (!counted) return 0.f;
    return in_range ? 1.f : NAN;
  }
};

// The gradient of Vec logits starting at column col, in place of x.
template <int Vec>
__device__ __forceinline__ void row_grad(float (&x)[Vec], int64_t col, float lse, const RowTarget& t) {
  const float scale = t.scale();
#pragma unroll
  for (int v = 0; v < Vec; ++v) {
    const float softmax = expf(x[v] - lse);
    x[v] = (col + v == t.target ? softmax - 1.f : softmax) * scale;
  }
}

// A thread's vectors of one row: columns (i x kThreads + thread) x Vec. Held > 0 loads them
// once into registers (the register form); Held 0 reads them from memory on every pass (the
// looping form). each(fn) calls fn(col, values) for every vector inside the row.
template <typename T, int Vec, int Held>
struct RowVectors {
  static constexpr int kThreads = CrossEntropyTraits::kThreads;
  const T* x;
  int64_t vocab;
  // Unused by the looping form (whose scalar Vec has no whole 32-bit words).
  std::conditional_t<(Held > 0), Words<T, Vec>, Pack<T, Vec>> held[Held > 0 ? Held : 1];

  __device__ __forceinline__ RowVectors(const T* row, int64_t columns) : x(row), vocab(columns) {
    if constexpr (Held > 0) {
#pragma unroll
      for (int i = 0; i < Held; ++i) {
        const int64_t col = (static_cast<int64_t>(i) * kThreads + threadIdx.x) * Vec;
        held[i].load(x + col, col < vocab);
      }
    }
  }

  template <typename Fn>
  __device__ __forceinline__ void each(Fn&& fn) const {
    if constexpr (Held > 0) {
#pragma unroll
      for (int i = 0; i < Held; ++i) {
        const int64_t col = (static_cast<int64_t>(i) * kThreads + threadIdx.x) * Vec;
        if (col >= vocab) continue;
        float f[Vec];
        held[i].unpack(f);
        fn(col, f);
      }
    } else {
      for (int64_t col = static_cast<int64_t>(threadIdx.x) * Vec; col < vocab; col += kThreads * Vec) {
        float f[Vec];
        load_vec<T, Vec>(x + col, f);
        fn(col, f);
      }
    }
  }
};

template <typename T, int Vec, int Held>
__global__ void __launch_bounds__(CrossEntropyTraits::kThreads) cross_entropy_rows_kernel(const CrossEntropyParams p) {
  __shared__ float target_logit;
  const int64_t row = blockIdx.x;
  T* x = static_cast<T*>(p.logits) + row * p.vocab;
  const RowTarget t(p, row, x, &target_logit);
  const RowVectors<T, Vec, Held> vectors(x, p.vocab);
  SoftmaxSums sums;
  vectors.each([&](int64_t, float(&f)[Vec]) { add_logits<Vec>(sums, f); });
  // Its barriers publish target_logit and end every read of x before the gradient's writes.
  const float lse = block_logsumexp(sums);
  if (threadIdx.x == 0) p.row_loss[row] = t.loss(lse, target_logit);
  if (!p.grad) return;
  vectors.each([&](int64_t col, float(&f)[Vec]) {
    row_grad<Vec>(f, col, lse, t);
    store_vec<T, Vec>(x + col, f);
  });
}

// Held 0 takes the looping form.
template <typename T, int Vec, int Held>
int launch_cross_entropy_rows_typed(const CrossEntropyParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.rows));
  cross_entropy_rows_kernel<T, Vec, Held><<<grid, CrossEntropyTraits::kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates one dtype: scalar and vectorised looping forms, and the register forms.
#define COMBA_INSTANTIATE_CROSS_ENTROPY_FORM(T, Vec, Held) \
  template int launch_cross_entropy_rows_typed<T, Vec, Held>(const CrossEntropyParams&, cudaStream_t);
#define COMBA_INSTANTIATE_CROSS_ENTROPY(T)                                                 \
  static_assert(CrossEntropyTraits::kMaxHeld == 16, "instantiated Held");                  \
  COMBA_INSTANTIATE_CROSS_ENTROPY_FORM(T, 1, 0)                                            \
  COMBA_INSTANTIATE_CROSS_ENTROPY_FORM(T, CrossEntropyTraits::kVecBytes / sizeof(T), 0)    \
  COMBA_INSTANTIATE_CROSS_ENTROPY_FORM(T, CrossEntropyTraits::kVecBytes / sizeof(T), 2)    \
  COMBA_INSTANTIATE_CROSS_ENTROPY_FORM(T, CrossEntropyTraits::kVecBytes / sizeof(T), 4)    \
  COMBA_INSTANTIATE_CROSS_ENTROPY_FORM(T, CrossEntropyTraits::kVecBytes / sizeof(T), 8)    \
  COMBA_INSTANTIATE_CROSS_ENTROPY_FORM(T, CrossEntropyTraits::kVecBytes / sizeof(T), 16)

}  // namespace comba::nn::cuda
