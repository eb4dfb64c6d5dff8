// Decode step for large batches on persistent CTAs: the same math as recurrent_decode_kernel,
//   u = v - S^T p^,  S' = exp(g) S + beta k^ u^T,  o = scale S'^T q^,
// but the CTAs are persistent (one per SM) and each walks the (sequence, value head)
// matrices m = blockIdx.x, + gridDim.x, ... through a ring of `stages` shared-memory
// buffers filled by bulk copies: the whole [K, V] state of a matrix is one contiguous
// copy, its q, k, p rows and v row four more, all landing on the buffer's mbarrier. The
// copies for the next stages - 1 matrices are in flight while a matrix is updated, so the
// SM always has loads outstanding; the one-CTA-per-matrix kernel holds its slice in
// registers from load to store, and an SM's loads stall while both of its CTAs compute
// (B256 H16 fp32 state: 3.57 TB/s against a device copy's 4.19).
// Updated states go straight from registers to global memory (16-byte evict-first
// stores); a buffer is refilled as soon as every thread has read it (the first barrier).
// In place (state_in == state_out) is safe: a matrix is written only after its own copy
// has landed, and no two matrices overlap.
// Thread layout: each lane owns Vec adjacent columns (one 16-byte access of S), kLanesPerRow
// = V / Vec lanes cover a row, so a warp covers 32 / kLanesPerRow rows per step and owns
// Rows = 64 / Vec steps of them (64 state entries per thread); rows past K are zeros.
// Grid: (min(matrices, SMs)). Included by the per-dtype recurrent_decode_*.cu.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../bulk_copy.cuh"
#include "../common.cuh"
#include "recurrent_common.cuh"
#include "recurrent_params.h"
#include "recurrent_traits.h"

namespace comba::cuda {

// Vec adjacent state entries in one 16-byte access: read from shared memory, stored to
// global memory evict-first (touched once per step).
template <typename S>
struct StatePack;
template <>
struct StatePack<float> {
  static constexpr int kVec = 4;
  __device__ static void load(float (&x)[kVec], const float* src) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
  }
  __device__ static void store(const float (&x)[kVec], float* dst) {
    __stcs(reinterpret_cast<float4*>(dst), make_float4(x[0], x[1], x[2], x[3]));
  }
};
template <>
struct StatePack<__nv_bfloat16> {
  static constexpr int kVec = 8;
  __device__ static void load(float (&x)[kVec], const __nv_bfloat16* src) {
    const uint4 raw = *reinterpret_cast<const uint4*>(src);
    const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[i]));
      x[2 * i] = f.x, x[2 * i + 1] = f.y;
    }
  }
  __device__ static void store(const float (&x)[kVec], __nv_bfloat16* dst) {
    unsigned words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const __nv_bfloat162 b = __floats2bfloat162_rn(x[2 * i], x[2 * i + 1]);
      words[i] = *reinterpret_cast<const unsigned*>(&b);
    }
    __stcs(reinterpret_cast<uint4*>(dst), make_uint4(words[0], words[1], words[2], words[3]));
  }
};

// One ring buffer: the state, then the q, k, p rows and the v row, each a multiple of 16
// bytes (decode_persistent_plan checks it) so every piece starts 16-byte aligned.
template <typename T, typename S>
struct DecodePersistentStage {
  S* state;
  T* q;
  T* k;
  T* p;
  T* v;
  __device__ DecodePersistentStage(unsigned char* base, int K, int V) {
    state = reinterpret_cast<S*>(base);
    q = reinterpret_cast<T*>(base + static_cast<size_t>(K) * V * sizeof(S));
    k = q + K;
    p = k + K;
    v = p + K;
  }
};

template <typename T, typename S>
__global__ void __launch_bounds__(RecurrentTraits::kThreads, 1)
    recurrent_decode_persistent_kernel(const __grid_constant__ RecurrentDecodeParams params, int stages,
                                   int stage_bytes) {
  constexpr int kWarps = RecurrentTraits::kWarps, kVec = StatePack<S>::kVec;
  constexpr int Rows = decode_persistent_rows(kVec);
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[RecurrentTraits::kMaxDecodeStages];
  __shared__ float pred_red[kWarps][32 * kVec];  // partial S^T p over each warp's rows
  __shared__ float out_red[kWarps][32 * kVec];   // partial S'^T q

  const int K = params.key_dim, V = params.value_dim, HV = params.value_heads;
  const int group = HV / params.heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int lanes_per_row = V / kVec, rows_per_step = 32 / lanes_per_row;
  const int col = (lane % lanes_per_row) * kVec;
  const int row0 = warp * Rows * rows_per_step + lane / lanes_per_row;  // row of step i: row0 + i * rows_per_step
  const long long matrices = static_cast<long long>(params.num_seqs) * HV;
  const auto state_bytes = static_cast<uint32_t>(static_cast<size_t>(K) * V * sizeof(S));
  const auto key_bytes = static_cast<uint32_t>(K * sizeof(T)), value_bytes = static_cast<uint32_t>(V * sizeof(T));
  const S* state_in = static_cast<const S*>(params.state_in);
  S* state_out = static_cast<S*>(params.state_out);

  auto stage_of = [&](long long j) { return DecodePersistentStage<T, S>(smem + (j % stages) * stage_bytes, K, V); };
  // Thread 0 fills the stage of this CTA's j-th matrix (if it has one).
  auto issue = [&](long long j) {
    const long long m = blockIdx.x + j * gridDim.x;
    if (m >= matrices) return;
    const long long n = m / HV, hv = m % HV, qk_row = (n * params.heads + hv / group) * K;
    const auto stage = stage_of(j);
    uint64_t* bar = full + j % stages;
    mbar_arrive_expect_tx(bar, state_bytes + 3 * key_bytes + value_bytes);
    bulk_copy_g2s(stage.state, state_in + m * K * V, state_bytes, bar);
    bulk_copy_g2s(stage.q, static_cast<const T*>(params.q) + qk_row, key_bytes, bar);
    bulk_copy_g2s(stage.k, static_cast<const T*>(params.k) + qk_row, key_bytes, bar);
    bulk_copy_g2s(stage.p, static_cast<const T*>(params.p) + qk_row, key_bytes, bar);
    bulk_copy_g2s(stage.v, static_cast<const T*>(params.v) + m * V, value_bytes, bar);
  };
  // A warp's share of a sum over rows, per column: its lanes of the same columns (other
  // rows of a step) add up, then one lane per column writes it to red[warp].
  using WarpShares = float[kWarps][32 * kVec];
  auto put_warp_share = [&](float(&x)[kVec], WarpShares& red) {
#pragma unroll
    for (int c = 0; c < kVec; ++c) {
      for (int mask = lanes_per_row; mask < 32; mask *= 2) x[c] += __shfl_xor_sync(0xffffffffu, x[c], mask);
    }
    if (lane < lanes_per_row) {
#pragma unroll
      for (int c = 0; c < kVec; ++c) red[warp][col + c] = x[c];
    }
  };
  auto sum_over_warps = [&](const WarpShares& red, int c) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += red[w][col + c];
    return total;
  };
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) mbar_init(full + s, 1);
    fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int j = 0; j < stages; ++j) issue(j);
  }

  for (long long j = 0;; ++j) {
    const long long m = blockIdx.x + j * gridDim.x;
    if (m >= matrices) break;
    // The gates first: their latency hides behind the wait.
    const float alpha = __expf(load_either<T>(params.g, m, params.g_fp32));
    const float beta = params.beta != nullptr ? load_either<T>(params.beta, m, params.beta_fp32) : 1.f;
    const auto stage = stage_of(j);
    mbar_wait(full + j % stages, static_cast<uint32_t>((j / stages) & 1));

    float state[Rows][kVec], q_row[Rows], k_row[Rows];
    float pred[kVec] = {};
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
      const int r = row0 + i * rows_per_step;
      if (r < K) {
        StatePack<S>::load(state[i], stage.state + static_cast<size_t>(r) * V + col);
        const float p_r = to_float(stage.p[r]);
        q_row[i] = to_float(stage.q[r]), k_row[i] = to_float(stage.k[r]);
#pragma unroll
        for (int c = 0; c < kVec; ++c) pred[c] += p_r * state[i][c];
      } else {
#pragma unroll
        for (int c = 0; c < kVec; ++c) state[i][c] = 0.f;
        q_row[i] = k_row[i] = 0.f;
      }
    }
    float v[kVec];
#pragma unroll
    for (int c = 0; c < kVec; ++c) v[c] = to_float(stage.v[col + c]);
    const float inv_p = warp_inverse_norm(stage.p, K, lane, params.use_l2norm);
    const float beta_k = beta * warp_inverse_norm(stage.k, K, lane, params.use_l2norm);
    const float out_scale = params.scale * warp_inverse_norm(stage.q, K, lane, params.use_l2norm);
    put_warp_share(pred, pred_red);
    __syncthreads();  // every thread has read the stage: refill it with the matrix `stages` on
    if (threadIdx.x == 0) {
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      issue(j + stages);
    }

    float update[kVec];  // beta u / ||k||
#pragma unroll
    for (int c = 0; c < kVec; ++c) update[c] = beta_k * (v[c] - inv_p * sum_over_warps(pred_red, c));
    float out[kVec] = {};
#pragma unroll
    for (int i = 0; i < Rows; ++i) {
#pragma unroll
      for (int c = 0; c < kVec; ++c) {
        state[i][c] = alpha * state[i][c] + k_row[i] * update[c];
        out[c] += q_row[i] * state[i][c];
      }
    }
    if (state_out != nullptr) {
#pragma unroll
      for (int i = 0; i < Rows; ++i) {
        const int r = row0 + i * rows_per_step;
        if (r < K) StatePack<S>::store(state[i], state_out + m * K * V + static_cast<size_t>(r) * V + col);
      }
    }
    put_warp_share(out, out_red);
    __syncthreads();  // pred_red is free again once every thread is past here
    if (warp == 0 && lane < lanes_per_row) {
      T* o = static_cast<T*>(params.o) + m * V + col;
#pragma unroll
      for (int c = 0; c < kVec; ++c) o[c] = from_float<T>(sum_over_warps(out_red, c) * out_scale);
    }
  }
}

template <typename T, typename S>
int launch_recurrent_decode_persistent_typed(const RecurrentDecodeParams& params, const DecodePersistentPlan& plan,
                                         cudaStream_t stream) {
  constexpr auto kernel = recurrent_decode_persistent_kernel<T, S>;
  const int smem = plan.stages * plan.stage_bytes;
  // The opt-in is made once per kernel, so it asks for the most any plan takes.
  if (const int err = allow_dynamic_smem<kernel>(RecurrentTraits::kDecodePersistentSmem)) return err;
  kernel<<<plan.ctas, RecurrentTraits::kThreads, smem, stream>>>(params, plan.stages, plan.stage_bytes);
  return static_cast<int>(cudaGetLastError());
}

// Instantiates the persistent decode launcher for both state types, for the input dtype
// the including .cu file names COMBA_ELEMENT.
#define COMBA_INSTANTIATE_RECURRENT_DECODE_PERSISTENT()                                                     \
  template int launch_recurrent_decode_persistent_typed<COMBA_ELEMENT, float>(const RecurrentDecodeParams&, \
                                                                          const DecodePersistentPlan&,      \
                                                                          cudaStream_t);                \
  template int launch_recurrent_decode_persistent_typed<COMBA_ELEMENT, __nv_bfloat16>(                      \
      const RecurrentDecodeParams&, const DecodePersistentPlan&, cudaStream_t);

}  // namespace comba::cuda
