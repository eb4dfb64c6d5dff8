// Rotary position embedding (RoPE) in the GPT-NeoX layout of fla's attention layer: each
// head's two halves are rotated as pairs (x1[i], x2[i]) by the angle position * inv_freq[i],
// inv_freq[i] = theta^(-2i / D). No parameters and no buffers (fla's inv_freq is not saved).
#pragma once
#include <ATen/ATen.h>

namespace comba::nn {

// x [B, T, H, D] (D even), positions int64 [B, T] -> x rotated, x's dtype. Angles in fp32
// (fp64 for fp64 x), cos/sin rounded to x's dtype, the rotation computed in fp32 and
// rounded once, as fla's kernel does.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& positions, double theta);

}  // namespace comba::nn
