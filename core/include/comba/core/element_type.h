// The element types of tensors handed to the CUDA kernels, as plain data for parameter
// structs (includable from any translation unit: no CUDA or torch headers).
#pragma once

namespace comba::core {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

}  // namespace comba::core
