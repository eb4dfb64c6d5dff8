// The one dispatch idiom of the operator's kernel families (chunk and recurrent): a
// runtime dtype to one of the element types a family compiles, and a runtime size (key
// tile, state rows, columns per lane) to one of its compiled values. Each calls f with a
// tag and returns what f returns, or cudaErrorInvalidValue when nothing compiled matches.
// Host code only; no torch headers.
#pragma once
#include <cuda_runtime.h>

#include <type_traits>

#include "comba/core/cuda_element.cuh"

namespace comba::cuda {

inline constexpr int kNotCompiled = static_cast<int>(cudaErrorInvalidValue);

// f(T{}) for the element type `dtype` names, when it is one of Ts (f is instantiated for
// those only).
template <typename... Ts, typename Fn>
int dispatch_dtype(core::ElementType dtype, Fn&& f) {
  return core::dispatch_element_type(dtype, [&](auto tag) -> int {
    if constexpr ((std::is_same_v<decltype(tag), Ts> || ...)) {
      return f(tag);
    } else {
      return kNotCompiled;
    }
  });
}

// f(std::integral_constant<int, V>{}) for the V among Vs equal to `value`.
template <int... Vs, typename Fn>
int dispatch_value(int value, Fn&& f) {
  int result = kNotCompiled;
  (void)((value == Vs ? (result = f(std::integral_constant<int, Vs>{}), true) : false) || ...);
  return result;
}

}  // namespace comba::cuda
