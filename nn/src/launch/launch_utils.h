// Small helpers shared by the nn CUDA launchers (torch side): alignment tests for the
// vectorised kernels (launch errors: comba/core/cuda_launch.h).
#pragma once
#include <ATen/ATen.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "comba/core/element_type_of.h"

namespace comba::nn::detail::cuda {

// Whether t's data can be read in vectors of `vec` elements (its start aligned to that).
inline bool aligned_for_vec(const at::Tensor& t, int64_t vec) {
  const auto address = reinterpret_cast<std::uintptr_t>(t.data_ptr());
  return address % static_cast<std::uintptr_t>(vec * t.element_size()) == 0;
}

}  // namespace comba::nn::detail::cuda
