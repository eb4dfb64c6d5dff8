// Turns the runtime dtype, vector width and row length into the compiled instantiation (one
// dispatch point), and runs the backward's second stage (the fixed-order weight-grad sum).
#include <cuda_runtime.h>

#include <type_traits>

#include "comba/core/cuda_element.cuh"
#include "../../../ops/cuda/dispatch.cuh"
#include "../element.cuh"
#include "../reduce.h"
#include "rms_norm_params.h"
#include "rms_norm_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec, int Chunks>
int launch_rms_norm_fwd_typed(const RMSNormParams& params, cudaStream_t stream);
template <typename T, int Vec, int Chunks>
int launch_rms_norm_bwd_typed(const RMSNormParams& params, cudaStream_t stream);

namespace {
template <typename T>
constexpr int kVecOf = RMSNormTraits::kVecBytes / sizeof(T);

// Chunks of the register kernels for these rows (0: the looping kernels; always for scalar access).
template <typename T>
int reg_chunks(const RMSNormParams& params, bool vectorized) {
  return vectorized ? rms_norm_reg_chunks(params.dim, kVecOf<T>) : 0;
}

// fn(Vec, Chunks) as integral constants for the compiled form that takes these rows, in the
// operator's dispatch idiom (ops/cuda/dispatch.cuh) over the Chunks rms_norm_reg_chunks picks.
template <typename T, typename Fn>
int with_form(const RMSNormParams& params, bool vectorized, Fn&& fn) {
  using Looping = std::integral_constant<int, 0>;
  if (!vectorized) return fn(std::integral_constant<int, 1>{}, Looping{});
  const std::integral_constant<int, kVecOf<T>> vec;
  const int chunks = reg_chunks<T>(params, vectorized);
  if (chunks == 0) return fn(vec, Looping{});
  static_assert(RMSNormTraits::kRegMaxChunks == 4, "the list below names the compiled Chunks");
  return comba::cuda::dispatch_value<1, 2, 4>(chunks, [&](auto c) { return fn(vec, c); });
}
}  // namespace

int64_t rms_norm_bwd_partial_rows(const RMSNormParams& params, bool vectorized) {
  int chunks = 0;
  core::dispatch_element_type(params.dtype, [&](auto tag) {
    chunks = reg_chunks<decltype(tag)>(params, vectorized);
    return 0;
  });
  return rms_norm_bwd_blocks(params.rows, chunks);
}

int launch_rms_norm_fwd(const RMSNormParams& params, bool vectorized, void* stream) {
  if (params.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_form<T>(params, vectorized, [&](auto vec, auto chunks) {
      return launch_rms_norm_fwd_typed<T, decltype(vec)::value, decltype(chunks)::value>(params, s);
    });
  });
}

int launch_rms_norm_bwd(const RMSNormParams& params, bool vectorized, void* stream) {
  if (params.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  const int err = core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_form<T>(params, vectorized, [&](auto vec, auto chunks) {
      return launch_rms_norm_bwd_typed<T, decltype(vec)::value, decltype(chunks)::value>(params, s);
    });
  });
  if (err != 0) return err;
  return launch_column_sum(params.dw_partial, rms_norm_bwd_partial_rows(params, vectorized), params.dim, params.dw,
                           stream);
}

}  // namespace comba::nn::cuda
