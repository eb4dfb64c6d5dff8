// Host emulation of the short-convolution grid (see short_conv_emulation.h).
#include "nn/cuda/short_conv/short_conv_tile.cuh"
#include "short_conv_emulation.h"

namespace comba::nn::testing {

namespace {

using comba::core::ElementType;
using comba::nn::cuda::ShortConvParams;
using comba::nn::cuda::ShortConvTraits;

template <typename Fn>
void for_each_run(const ShortConvParams& p, int vec, Fn&& fn) {
  for (int c0 = 0; c0 < p.channels; c0 += vec) {
    for (int64_t t0 = 0; t0 < p.tokens; t0 += ShortConvTraits::kTileLen) {
      const int64_t t1 = t0 + ShortConvTraits::kTileLen < p.tokens ? t0 + ShortConvTraits::kTileLen : p.tokens;
      fn(c0, t0, t1);
    }
  }
}

template <typename T, int Vec>
void fwd(const ShortConvParams& p) {
  for_each_run(p, Vec, [&](int c0, int64_t t0, int64_t t1) {
    comba::nn::cuda::short_conv_fwd_run<T, Vec>(p, c0, t0, t1);
  });
}

template <typename T, int Vec>
void bwd(const ShortConvParams& p) {
  constexpr int W = ShortConvTraits::kMaxTaps;
  for (int64_t i = 0; i < static_cast<int64_t>(W + 1) * p.channels; ++i) p.dw_total[i] = 0.f;
  for_each_run(p, Vec, [&](int c0, int64_t t0, int64_t t1) {
    float dw[W][Vec] = {}, db[Vec] = {};
    comba::nn::cuda::short_conv_bwd_run<T, Vec>(p, c0, t0, t1, dw, db);
    for (int v = 0; v < Vec; ++v) {
      for (int j = 0; j < W; ++j) p.dw_total[j * p.channels + c0 + v] += dw[j][v];
      p.dw_total[W * p.channels + c0 + v] += db[v];
    }
  });
}

template <typename T>
void run_fwd(const ShortConvParams& p, bool vectorized) {
  vectorized ? fwd<T, ShortConvTraits::kVec>(p) : fwd<T, 1>(p);
}
template <typename T>
void run_bwd(const ShortConvParams& p, bool vectorized) {
  vectorized ? bwd<T, ShortConvTraits::kVec>(p) : bwd<T, 1>(p);
}

}  // namespace

void emulate_short_conv_fwd(const ShortConvParams& p, bool vectorized) {
  switch (p.dtype) {
    case ElementType::kFloat32: run_fwd<float>(p, vectorized); break;
    case ElementType::kFloat16: run_fwd<__half>(p, vectorized); break;
    case ElementType::kBFloat16: run_fwd<__nv_bfloat16>(p, vectorized); break;
  }
}

void emulate_short_conv_bwd(const ShortConvParams& p, bool vectorized) {
  switch (p.dtype) {
    case ElementType::kFloat32: run_bwd<float>(p, vectorized); break;
    case ElementType::kFloat16: run_bwd<__half>(p, vectorized); break;
    case ElementType::kBFloat16: run_bwd<__nv_bfloat16>(p, vectorized); break;
  }
}

}  // namespace comba::nn::testing
