// finish_chunk_grads, the q / k / p gradient epilogue every chunk implementation (and the
// fused recurrent kernels) ends with, against autograd through an independent forward:
// x -> x / sqrt(|x|^2 + eps) (when l2norm) -> each head repeated over its GVA group.
// Given per-value-head gradients of the repeated vectors it must return the gradients of
// the caller's q, k, p, with p = k merged when p was not given, in the inputs' dtype.
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include "chunk_stages.h"

namespace comba::detail {
namespace {

constexpr int64_t kB = 2, kT = 5, kH = 2, kGroup = 3, kK = 8;

CombaProblem problem(bool use_l2norm) {
  CombaProblem pb;
  pb.batch = kB;
  pb.seq_len = kT;
  pb.heads = kH;
  pb.value_heads = kH * kGroup;
  pb.key_dim = kK;
  pb.value_dim = 4;
  pb.num_seqs = kB;
  pb.use_l2norm = use_l2norm;
  pb.dtype = at::kDouble;
  pb.state_dtype = at::kDouble;
  return pb;
}

// The forward of what the epilogue differentiates, written independently of layout.cpp.
at::Tensor expanded(const at::Tensor& x, bool use_l2norm) {
  auto y = use_l2norm ? x / (x * x).sum(-1, true).add(1e-6).sqrt() : x;
  return y.repeat_interleave(kGroup, /*dim=*/2);  // [B, T, H, K] -> [B, T, HV, K]
}

// d/dx of sum(<expanded(x), d_hv>) by autograd.
at::Tensor autograd_grad(const at::Tensor& x, const at::Tensor& d_hv, bool use_l2norm) {
  auto leaf = x.detach().requires_grad_(true);
  (expanded(leaf, use_l2norm) * d_hv).sum().backward();
  return leaf.grad();
}

CombaInputs inputs(bool with_p) {
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  CombaInputs in;
  in.q = at::randn({kB, kT, kH, kK}, opts);
  in.k = at::randn({kB, kT, kH, kK}, opts);
  if (with_p) in.p = at::randn({kB, kT, kH, kK}, opts);
  in.v = at::randn({kB, kT, kH * kGroup, 4}, opts);
  in.g = at::randn({kB, kT, kH * kGroup}, opts);
  return in;
}

ChunkGrads per_value_head_grads(bool l2norm_pending) {
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  ChunkGrads grads;
  grads.per_value_head = true;
  grads.l2norm_pending = l2norm_pending;
  grads.dq = at::randn({kB, kT, kH * kGroup, kK}, opts);
  grads.dk = at::randn({kB, kT, kH * kGroup, kK}, opts);
  grads.dp = at::randn({kB, kT, kH * kGroup, kK}, opts);
  grads.dv = at::randn({kB, kT, kH * kGroup, 4}, opts);
  grads.dg = at::randn({kB, kT, kH * kGroup}, opts);
  return grads;
}

class GradEpilogue : public ::testing::TestWithParam<bool> {};  // param: use_l2norm

TEST_P(GradEpilogue, PerValueHeadWithP) {
  at::manual_seed(1);
  const bool l2 = GetParam();
  const auto in = inputs(/*with_p=*/true);
  const auto grads = per_value_head_grads(/*l2norm_pending=*/l2);
  const auto out = finish_chunk_grads(problem(l2), in, grads);
  EXPECT_TRUE(at::allclose(out.q, autograd_grad(in.q, grads.dq, l2), 1e-10, 1e-12));
  EXPECT_TRUE(at::allclose(out.k, autograd_grad(in.k, grads.dk, l2), 1e-10, 1e-12));
  EXPECT_TRUE(at::allclose(out.p, autograd_grad(in.p, grads.dp, l2), 1e-10, 1e-12));
  EXPECT_TRUE(at::equal(out.v, grads.dv));
  EXPECT_TRUE(at::equal(out.g, grads.dg));
  EXPECT_FALSE(out.beta.defined());
  EXPECT_FALSE(out.initial_state.defined());
}

TEST_P(GradEpilogue, PerValueHeadPIsK) {
  at::manual_seed(2);
  const bool l2 = GetParam();
  const auto in = inputs(/*with_p=*/false);
  const auto grads = per_value_head_grads(/*l2norm_pending=*/l2);
  const auto out = finish_chunk_grads(problem(l2), in, grads);
  // p = k: k feeds both uses, so its gradient is that of sum(<k^, dk + dp>).
  EXPECT_TRUE(at::allclose(out.k, autograd_grad(in.k, grads.dk + grads.dp, l2), 1e-10, 1e-12));
  EXPECT_FALSE(out.p.defined());
}

INSTANTIATE_TEST_SUITE_P(L2Norm, GradEpilogue, ::testing::Bool());

// Final-layout gradients (both flags false) pass through; without p, dk + dp.
TEST(GradEpilogueFinal, PassesThroughAndMergesPIntoK) {
  at::manual_seed(3);
  const auto in = inputs(/*with_p=*/false);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  ChunkGrads grads;
  grads.dq = at::randn({kB, kT, kH, kK}, opts);
  grads.dk = at::randn({kB, kT, kH, kK}, opts);
  grads.dp = at::randn({kB, kT, kH, kK}, opts);
  grads.dv = at::randn({kB, kT, kH * kGroup, 4}, opts);
  grads.dg = at::randn({kB, kT, kH * kGroup}, opts);
  grads.dbeta = at::randn({kB, kT, kH * kGroup}, opts);
  auto with_beta = in;
  with_beta.beta = at::rand({kB, kT, kH * kGroup}, opts.dtype(at::kFloat));
  const auto out = finish_chunk_grads(problem(true), with_beta, grads);
  EXPECT_TRUE(at::equal(out.q, grads.dq));
  EXPECT_TRUE(at::allclose(out.k, grads.dk + grads.dp, 0, 0));
  EXPECT_EQ(out.beta.scalar_type(), at::kFloat);  // in beta's dtype
  EXPECT_TRUE(at::allclose(out.beta, grads.dbeta.to(at::kFloat)));
}

}  // namespace
}  // namespace comba::detail
