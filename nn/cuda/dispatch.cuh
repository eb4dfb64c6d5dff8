// Runtime element type -> compiled type, for the launchers: fn(T{}) with the type named
// by `dtype` (cudaErrorInvalidValue for anything else).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "element_type.h"

namespace comba::nn::cuda {

template <typename Fn>
int dispatch_element_type(ElementType dtype, Fn&& fn) {
  switch (dtype) {
    case ElementType::kFloat32: return fn(float{});
    case ElementType::kFloat16: return fn(__half{});
    case ElementType::kBFloat16: return fn(__nv_bfloat16{});
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace comba::nn::cuda
