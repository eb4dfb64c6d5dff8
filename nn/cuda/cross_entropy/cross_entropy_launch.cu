// Turns the runtime dtype, vector width and row length into the compiled instantiation (one
// dispatch point, in the operator's dispatch idiom: ops/cuda/dispatch.cuh).
#include <cuda_runtime.h>

#include "comba/core/cuda_element.cuh"
#include "../../../ops/cuda/dispatch.cuh"
#include "cross_entropy_params.h"
#include "cross_entropy_traits.h"

namespace comba::nn::cuda {

template <typename T, int Vec, int Held>
int launch_cross_entropy_rows_typed(const CrossEntropyParams& params, cudaStream_t stream);

namespace {
template <typename T>
constexpr int kVecOf = CrossEntropyTraits::kVecBytes / sizeof(T);
}  // namespace

int launch_cross_entropy_rows(const CrossEntropyParams& params, bool vectorized, void* stream) {
  if (params.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return core::dispatch_element_type(params.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVecOf<T>;
    if (!vectorized) return launch_cross_entropy_rows_typed<T, 1, 0>(params, s);
    const int held = cross_entropy_held(params.vocab, V);
    if (held == 0) return launch_cross_entropy_rows_typed<T, V, 0>(params, s);
    static_assert(CrossEntropyTraits::kMaxHeld == 16, "the list below names the compiled Held");
    return comba::cuda::dispatch_value<2, 4, 8, 16>(
        held, [&](auto h) { return launch_cross_entropy_rows_typed<T, V, decltype(h)::value>(params, s); });
  });
}

}  // namespace comba::nn::cuda
