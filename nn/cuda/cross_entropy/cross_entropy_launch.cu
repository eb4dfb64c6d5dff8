// Turns the runtime dtype, vector width and row length into the compiled instantiation (one
// dispatch point).
#include <cuda_runtime.h>

#include <type_traits>

#include "comba/core/cuda_element.cuh"
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
    static_assert(CrossEntropyTraits::kMaxHeld == 16, "the cases below list the compiled Held");
    switch (cross_entropy_held(params.vocab, V)) {
      case 2: return launch_cross_entropy_rows_typed<T, V, 2>(params, s);
      case 4: return launch_cross_entropy_rows_typed<T, V, 4>(params, s);
      case 8: return launch_cross_entropy_rows_typed<T, V, 8>(params, s);
      case 16: return launch_cross_entropy_rows_typed<T, V, 16>(params, s);
      default: return launch_cross_entropy_rows_typed<T, V, 0>(params, s);
    }
  });
}

}  // namespace comba::nn::cuda
