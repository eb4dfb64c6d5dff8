// One thread's work in the short-convolution kernels: kVec channels [c0, c0 + Vec) over
// the tokens [t0, t1). The functions are __host__ __device__ so that the tests can run the
// same code on the CPU (tests/nn/short_conv_emulation.cu); the kernels in
// short_conv_kernel.cuh only map threads to runs and reduce the weight grads.
//
// Conventions (see short_conv_traits.h): W = kMaxTaps; win[j] is the input at position
// t - (W - 1) + j of the current sequence (win[W - 1] = x[t]); positions before the
// sequence's first token read its carried inputs (initial_state, `taps - 1` of them) or
// zeros; w[j] is the weight of window slot j (zero for j < W - taps).
#pragma once
#include "../element.cuh"
#include "short_conv_params.h"
#include "short_conv_traits.h"

namespace comba::nn::cuda {

struct SeqSpan {
  int n;         // sequence index
  int64_t bos;   // first token (row)
  int64_t eos;   // one past the last token
};

// The sequence holding token t: for packed sequences the largest n with cu[n] <= t, which
// skips empty sequences.
__host__ __device__ inline SeqSpan sequence_of(const ShortConvParams& p, int64_t t) {
  if (p.cu_seqlens == nullptr) {
    const int n = static_cast<int>(t / p.seq_len);
    return {n, n * p.seq_len, (n + 1) * p.seq_len};
  }
  int lo = 0, hi = p.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.cu_seqlens[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return {lo, p.cu_seqlens[lo], p.cu_seqlens[lo + 1]};
}

// The next non-empty sequence after s; called only when one starts before the run's end.
__host__ __device__ inline SeqSpan next_sequence(const ShortConvParams& p, const SeqSpan& s) {
  if (p.cu_seqlens == nullptr) return {s.n + 1, s.eos, s.eos + p.seq_len};
  int n = s.n + 1;
  while (n < p.num_seqs - 1 && p.cu_seqlens[n + 1] == p.cu_seqlens[n]) ++n;
  return {n, p.cu_seqlens[n], p.cu_seqlens[n + 1]};
}

// Input of sequence s at row `pos` (pos >= s.bos - (W - 1)).
template <typename T, int Vec>
__host__ __device__ inline void load_input(const ShortConvParams& p, const SeqSpan& s, int64_t pos,
                                           int c0, float (&out)[Vec]) {
  if (pos >= s.bos) {
    load_vec<T, Vec>(static_cast<const T*>(p.x) + pos * p.channels + c0, out);
    return;
  }
  const int width = p.taps - 1;
  const int64_t slot = pos - s.bos + width;  // carried input slot; < 0: before the conv's reach
  if (slot < 0 || p.initial_state == nullptr) {
#pragma unroll
    for (int v = 0; v < Vec; ++v) out[v] = 0.f;
    return;
  }
  const T* state = static_cast<const T*>(p.initial_state) +
                   (static_cast<int64_t>(s.n) * p.channels + c0) * width + slot;
#pragma unroll
  for (int v = 0; v < Vec; ++v) out[v] = to_float(state[v * width]);
}

// The window before step t: win[1 .. W - 1] = inputs at t - (W - 1) .. t - 1, so that
// push_window(x[t], win) shifts them to win[0 .. W - 2] and puts x[t] in win[W - 1].
template <typename T, int Vec>
__host__ __device__ inline void fill_window(const ShortConvParams& p, const SeqSpan& s, int64_t t, int c0,
                                            float (&win)[ShortConvTraits::kMaxTaps][Vec]) {
  constexpr int W = ShortConvTraits::kMaxTaps;
#pragma unroll
  for (int v = 0; v < Vec; ++v) win[0][v] = 0.f;
#pragma unroll
  for (int j = 1; j < W; ++j) load_input<T, Vec>(p, s, t - W + j, c0, win[j]);
}

// Slides a window of the last W values one step: win[W - 1] = xt (the newest, already
// loaded), the oldest dropped. Inputs forward, output gradients backward.
template <int Vec>
__host__ __device__ inline void push_window(const float (&xt)[Vec], float (&win)[ShortConvTraits::kMaxTaps][Vec]) {
  constexpr int W = ShortConvTraits::kMaxTaps;
#pragma unroll
  for (int j = 0; j < W - 1; ++j) {
#pragma unroll
    for (int v = 0; v < Vec; ++v) win[j][v] = win[j + 1][v];
  }
#pragma unroll
  for (int v = 0; v < Vec; ++v) win[W - 1][v] = xt[v];
}

template <int Vec>
__host__ __device__ inline void copy_vec(const float (&from)[Vec], float (&to)[Vec]) {
#pragma unroll
  for (int v = 0; v < Vec; ++v) to[v] = from[v];
}

template <int Vec>
__host__ __device__ inline void load_weights(const ShortConvParams& p, int c0,
                                             float (&w)[ShortConvTraits::kMaxTaps][Vec], float (&b)[Vec]) {
  constexpr int W = ShortConvTraits::kMaxTaps;
  const int lead = W - p.taps;  // slots before the first real tap
#pragma unroll
  for (int j = 0; j < W; ++j) {
#pragma unroll
    for (int v = 0; v < Vec; ++v) {
      w[j][v] = j >= lead ? p.weight[static_cast<int64_t>(c0 + v) * p.taps + (j - lead)] : 0.f;
    }
  }
#pragma unroll
  for (int v = 0; v < Vec; ++v) b[v] = p.bias != nullptr ? p.bias[c0 + v] : 0.f;
}

// Pre-activation z = b + sum_j w[j] win[j].
template <int Vec>
__host__ __device__ inline void conv_window(const float (&w)[ShortConvTraits::kMaxTaps][Vec],
                                            const float (&b)[Vec],
                                            const float (&win)[ShortConvTraits::kMaxTaps][Vec], float (&z)[Vec]) {
#pragma unroll
  for (int v = 0; v < Vec; ++v) {
    float acc = b[v];
#pragma unroll
    for (int j = 0; j < ShortConvTraits::kMaxTaps; ++j) acc += w[j][v] * win[j][v];
    z[v] = acc;
  }
}

// final_state[n, c, i] = input at eos - (taps - 1) + i, i.e. window slot W - (taps - 1) + i.
template <typename T, int Vec>
__host__ __device__ inline void store_final_state(const ShortConvParams& p, const SeqSpan& s, int c0,
                                                  const float (&win)[ShortConvTraits::kMaxTaps][Vec]) {
  constexpr int W = ShortConvTraits::kMaxTaps;
  const int width = p.taps - 1;
  T* state = static_cast<T*>(p.final_state) + (static_cast<int64_t>(s.n) * p.channels + c0) * width;
#pragma unroll
  for (int j = 0; j < W; ++j) {
    const int slot = j - (W - width);
    if (slot < 0) continue;
#pragma unroll
    for (int v = 0; v < Vec; ++v) state[v * width + slot] = from_float<T>(win[j][v]);
  }
}

// Adds the grad of final_state to the grad of sequence-local position `local` (negative:
// a carried input) when that position is one of the last taps - 1 inputs.
template <typename T, int Vec>
__host__ __device__ inline void add_final_state_grad(const ShortConvParams& p, const SeqSpan& s, int64_t local,
                                                     int c0, float (&grad)[Vec]) {
  if (p.d_final_state == nullptr) return;
  const int width = p.taps - 1;
  const int64_t slot = local - (s.eos - s.bos - width);
  if (slot < 0 || slot >= width) return;
  const T* d_final = static_cast<const T*>(p.d_final_state) +
                     (static_cast<int64_t>(s.n) * p.channels + c0) * width + slot;
#pragma unroll
  for (int v = 0; v < Vec; ++v) grad[v] += to_float(d_final[v * width]);
}

// A full run whose inputs and outputs, halos included, lie inside one sequence: no
// carried or final state and no sequence change, so the interior forms below can issue
// every load of the run at once from compile-time offsets (many loads in flight per
// thread is what this memory-bound kernel needs). Runs near a sequence's ends take the
// general walk.
__host__ __device__ inline bool run_is_interior(const SeqSpan& s, int64_t t0, int64_t t1) {
  constexpr int H = ShortConvTraits::kMaxTaps - 1;
  return t1 - t0 == ShortConvTraits::kTileLen && t0 - H >= s.bos && t1 + H <= s.eos;
}

// act(z) for the forward, or dz = dy act'(z) in place of g for the backward.
template <int Vec>
__host__ __device__ inline void apply_silu(bool silu, float (&z)[Vec]) {
  if (!silu) return;
#pragma unroll
  for (int v = 0; v < Vec; ++v) z[v] = z[v] * sigmoidf_(z[v]);
}

template <int Vec>
__host__ __device__ inline void silu_grad(bool silu, const float (&z)[Vec], float (&g)[Vec]) {
  if (!silu) return;
#pragma unroll
  for (int v = 0; v < Vec; ++v) {
    const float sg = sigmoidf_(z[v]);
    g[v] = g[v] * sg * (1.f + z[v] * (1.f - sg));
  }
}

// z = b + sum_j w[j] rows[i + j] over a statically indexed block of rows.
template <int Vec, int Rows>
__host__ __device__ inline void conv_at(const float (&w)[ShortConvTraits::kMaxTaps][Vec], const float (&b)[Vec],
                                        const float (&rows)[Rows][Vec], int i, float (&z)[Vec]) {
#pragma unroll
  for (int v = 0; v < Vec; ++v) {
    float acc = b[v];
#pragma unroll
    for (int j = 0; j < ShortConvTraits::kMaxTaps; ++j) acc += w[j][v] * rows[i + j][v];
    z[v] = acc;
  }
}

// Interior forward: x rows [t0 - H, t1) in registers, y rows [t0, t1) out.
template <typename T, int Vec>
__host__ __device__ inline void short_conv_fwd_interior(const ShortConvParams& p, int c0, int64_t t0,
                                                        const float (&w)[ShortConvTraits::kMaxTaps][Vec],
                                                        const float (&b)[Vec]) {
  constexpr int L = ShortConvTraits::kTileLen, H = ShortConvTraits::kMaxTaps - 1;
  const T* x = static_cast<const T*>(p.x) + (t0 - H) * p.channels + c0;
  T* y = static_cast<T*>(p.y) + t0 * p.channels + c0;
  float rows[L + H][Vec];
#pragma unroll
  for (int i = 0; i < L + H; ++i) load_vec<T, Vec>(x + static_cast<int64_t>(i) * p.channels, rows[i]);
#pragma unroll
  for (int i = 0; i < L; ++i) {
    float z[Vec];
    conv_at<Vec>(w, b, rows, i, z);
    apply_silu<Vec>(p.silu, z);
    store_vec<T, Vec>(y + static_cast<int64_t>(i) * p.channels, z);
  }
}

// Interior backward: x rows [t0 - H, t1 + H) and dy rows [t0, t1 + H) in registers; dz
// over [t0, t1 + H) (dx needs H tokens ahead); dx rows [t0, t1) out, and this run's sums
// dw[j] += dz[t] x[t - H + j], db += dz[t] over t in [t0, t1).
template <typename T, int Vec>
__host__ __device__ inline void short_conv_bwd_interior(const ShortConvParams& p, int c0, int64_t t0,
                                                        const float (&w)[ShortConvTraits::kMaxTaps][Vec],
                                                        const float (&b)[Vec],
                                                        float (&dw)[ShortConvTraits::kMaxTaps][Vec],
                                                        float (&db)[Vec]) {
  constexpr int W = ShortConvTraits::kMaxTaps, L = ShortConvTraits::kTileLen, H = W - 1;
  const T* x = static_cast<const T*>(p.x) + (t0 - H) * p.channels + c0;
  const T* dy = static_cast<const T*>(p.dy) + t0 * p.channels + c0;
  T* dx = static_cast<T*>(p.dx) + t0 * p.channels + c0;
  float xs[L + 2 * H][Vec], dz[L + H][Vec];
#pragma unroll
  for (int i = 0; i < L + 2 * H; ++i) load_vec<T, Vec>(x + static_cast<int64_t>(i) * p.channels, xs[i]);
#pragma unroll
  for (int i = 0; i < L + H; ++i) load_vec<T, Vec>(dy + static_cast<int64_t>(i) * p.channels, dz[i]);
#pragma unroll
  for (int i = 0; i < L + H; ++i) {
    if (p.silu) {
      float z[Vec];
      conv_at<Vec>(w, b, xs, i, z);
      silu_grad<Vec>(true, z, dz[i]);
    }
    if (i < L) {
#pragma unroll
      for (int v = 0; v < Vec; ++v) {
#pragma unroll
        for (int j = 0; j < W; ++j) dw[j][v] += dz[i][v] * xs[i + j][v];
        db[v] += dz[i][v];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < L; ++i) {
    float grad[Vec];
#pragma unroll
    for (int v = 0; v < Vec; ++v) {
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < W; ++j) acc += w[j][v] * dz[i + H - j][v];
      grad[v] = acc;
    }
    store_vec<T, Vec>(dx + static_cast<int64_t>(i) * p.channels, grad);
  }
}

// Forward of one run: y[t] = act(z[t]) for t in [t0, t1), and the final state of every
// sequence whose last token lies in the run.
template <typename T, int Vec>
__host__ __device__ inline void short_conv_fwd_run(const ShortConvParams& p, int c0, int64_t t0, int64_t t1) {
  constexpr int W = ShortConvTraits::kMaxTaps;
  float w[W][Vec], b[Vec];
  load_weights<Vec>(p, c0, w, b);
  SeqSpan s = sequence_of(p, t0);
  if (run_is_interior(s, t0, t1)) {
    short_conv_fwd_interior<T, Vec>(p, c0, t0, w, b);
    return;
  }
  float win[W][Vec];
  fill_window<T, Vec>(p, s, t0, c0, win);
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  // x[t + 1] is loaded while step t computes (two loads in flight per thread).
  float ahead[Vec];
  load_vec<T, Vec>(x + t0 * p.channels + c0, ahead);
  for (int64_t t = t0; t < t1; ++t) {
    float xt[Vec];
    copy_vec<Vec>(ahead, xt);
    if (t + 1 < t1) load_vec<T, Vec>(x + (t + 1) * p.channels + c0, ahead);
    if (t == s.eos) {
      s = next_sequence(p, s);
      fill_window<T, Vec>(p, s, t, c0, win);
    }
    push_window<Vec>(xt, win);
    float z[Vec];
    conv_window<Vec>(w, b, win, z);
    apply_silu<Vec>(p.silu, z);
    store_vec<T, Vec>(y + t * p.channels + c0, z);
    if (t == s.eos - 1 && p.final_state != nullptr) store_final_state<T, Vec>(p, s, c0, win);
  }
}

// Backward of one run: dx at [t0, t1), d_initial_state of every sequence starting in the
// run, and this run's sums dw[j] += dz[t] win[j], db += dz[t] over t in [t0, t1), where
// dz = dy * act'(z).
//
// dx[s] = sum_j w[j] dz[s + W - 1 - j] needs dz up to W - 1 tokens ahead, so the run
// walks on past t1 (recomputing dz there) and past each sequence's end with dz = 0,
// emitting dx[t - (W - 1)] at step t. Targets before a sequence's first token are its
// carried inputs (d_initial_state), emitted by the run holding that first token.
template <typename T, int Vec>
__host__ __device__ inline void short_conv_bwd_run(const ShortConvParams& p, int c0, int64_t t0, int64_t t1,
                                                   float (&dw)[ShortConvTraits::kMaxTaps][Vec],
                                                   float (&db)[Vec]) {
  constexpr int W = ShortConvTraits::kMaxTaps;
  float w[W][Vec], b[Vec];
  load_weights<Vec>(p, c0, w, b);
  SeqSpan s = sequence_of(p, t0);
  if (run_is_interior(s, t0, t1)) {
    short_conv_bwd_interior<T, Vec>(p, c0, t0, w, b, dw, db);
    return;
  }
  float win[W][Vec];
  fill_window<T, Vec>(p, s, t0, c0, win);
  float dzw[W][Vec];  // dzw[W - 1 - d] = dz[t - d]; zero before the run or sequence start
#pragma unroll
  for (int j = 0; j < W; ++j) {
#pragma unroll
    for (int v = 0; v < Vec; ++v) dzw[j][v] = 0.f;
  }
  const T* x = static_cast<const T*>(p.x);
  const T* dy = static_cast<const T*>(p.dy);
  T* dx = static_cast<T*>(p.dx);
  const int width = p.taps - 1;
  // x and dy of row ahead_row, loaded one real step early (the next real step is t + 1,
  // or the next sequence's first token after a tail, which is the same row).
  float ahead_x[Vec], ahead_dy[Vec];
  int64_t ahead_row = -1;
  for (int64_t t = t0;; ++t) {
    if (t == s.eos + (W - 1)) {  // this sequence is done; the next one starts before t1
      s = next_sequence(p, s);
      t = s.bos;
      fill_window<T, Vec>(p, s, t, c0, win);
#pragma unroll
      for (int j = 0; j < W; ++j) {
#pragma unroll
        for (int v = 0; v < Vec; ++v) dzw[j][v] = 0.f;
      }
    }
    float dz[Vec];
    if (t < s.eos) {
      float xt[Vec], g[Vec];
      if (ahead_row == t) {
        copy_vec<Vec>(ahead_x, xt);
        copy_vec<Vec>(ahead_dy, g);
      } else {
        load_vec<T, Vec>(x + t * p.channels + c0, xt);
        load_vec<T, Vec>(dy + t * p.channels + c0, g);
      }
      ahead_row = t + 1 < p.tokens ? t + 1 : -1;
      if (ahead_row >= 0) {
        load_vec<T, Vec>(x + ahead_row * p.channels + c0, ahead_x);
        load_vec<T, Vec>(dy + ahead_row * p.channels + c0, ahead_dy);
      }
      push_window<Vec>(xt, win);
      copy_vec<Vec>(g, dz);
      if (p.silu) {
        float z[Vec];
        conv_window<Vec>(w, b, win, z);
        silu_grad<Vec>(true, z, dz);
      }
      if (t < t1) {
#pragma unroll
        for (int v = 0; v < Vec; ++v) {
#pragma unroll
          for (int j = 0; j < W; ++j) dw[j][v] += dz[v] * win[j][v];
          db[v] += dz[v];
        }
      }
    } else {
#pragma unroll
      for (int v = 0; v < Vec; ++v) dz[v] = 0.f;
    }
    push_window<Vec>(dz, dzw);

    const int64_t target = t - (W - 1);
    const int64_t local = target - s.bos;
    const bool to_dx = local >= 0 && target >= t0;
    const bool to_state = local < 0 && local + width >= 0 && s.bos >= t0 && p.d_initial_state != nullptr;
    if (to_dx || to_state) {
      float grad[Vec];
#pragma unroll
      for (int v = 0; v < Vec; ++v) {
        float acc = 0.f;
#pragma unroll
        for (int j = 0; j < W; ++j) acc += w[j][v] * dzw[W - 1 - j][v];
        grad[v] = acc;
      }
      add_final_state_grad<T, Vec>(p, s, local, c0, grad);
      if (to_dx) {
        store_vec<T, Vec>(dx + target * p.channels + c0, grad);
      } else {
        float* d_init = p.d_initial_state + (static_cast<int64_t>(s.n) * p.channels + c0) * width + (local + width);
#pragma unroll
        for (int v = 0; v < Vec; ++v) d_init[v * width] = grad[v];
      }
    }
    if (local >= 0 && target == t1 - 1) break;
  }
}

}  // namespace comba::nn::cuda
