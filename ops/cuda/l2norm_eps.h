// The epsilon of the q/k/p l2norm, x / sqrt(sum(x^2) + eps), for both paths: the ATen
// one (ops/src/layout.cpp) adds it in the tensor's dtype, the kernels add
// static_cast<float>(kL2NormEps), which is exactly the float literal 1e-6f. Plain data,
// no torch and no CUDA, so that host and kernel code include the same file.
#pragma once

namespace comba {

inline constexpr double kL2NormEps = 1e-6;

}  // namespace comba
