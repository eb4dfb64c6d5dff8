// The element types of the nn kernels' tensors, as plain data for parameter structs
// (includable from any host translation unit: no CUDA headers).
#pragma once

namespace comba::nn::cuda {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

}  // namespace comba::nn::cuda
