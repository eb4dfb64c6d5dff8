// RoPE: out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin on the two halves of each head.
#include "comba/nn/rotary.h"

#include "comba/core/checks.h"

namespace comba::nn {

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& positions, double theta) {
  const core::ArgChecker check("apply_rotary");
  check.rank(x, "x", 4, "[B, T, H, D]").floating(x, "x");
  check.require(x.size(3) % 2 == 0, "argument `x` expected an even head dim D, got shape ", x.sizes());
  check.rank(positions, "positions", 2, "[B, T]");
  check.require(positions.size(0) == x.size(0) && positions.size(1) == x.size(1),
                "argument `positions` expected [B, T] = [", x.size(0), ", ", x.size(1), "], got shape ",
                positions.sizes());
  check.require(theta > 0, "argument `theta` expected > 0, got ", theta);
  const auto dtype = x.scalar_type();
  const auto compute = at::promote_types(dtype, at::kFloat);  // fp64 stays fp64
  const int64_t dim = x.size(3), half = dim / 2;
  const auto opts = x.options().dtype(compute);
  // Large positions times inv_freq lose precision in half types: angles in fp32 at least.
  const auto inv_freq = at::pow(theta, at::arange(0, dim, 2, opts) / static_cast<double>(dim)).reciprocal();
  const auto angles = positions.to(x.device(), compute).unsqueeze(-1) * inv_freq;  // [B, T, half]
  const auto cos = angles.cos().to(dtype).to(compute).unsqueeze(2);             // [B, T, 1, half]
  const auto sin = angles.sin().to(dtype).to(compute).unsqueeze(2);
  const auto x1 = x.narrow(3, 0, half).to(compute), x2 = x.narrow(3, half, half).to(compute);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, 3).to(dtype);
}

}  // namespace comba::nn
