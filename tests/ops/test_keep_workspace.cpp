// CombaOptions::kept_workspace: with kNone the training forward keeps no kernel workspace
// for the backward (the autograd node's saved workspace list is empty) and the backward
// recomputes it, giving the same gradients bit for bit (the same kernels on the same
// shapes in one process); with kStates it keeps the per-chunk states alone and the backward
// forms the rest from them (gradients within the 16-bit tolerance of kAll's; the large GPU
// test checks them against the fp32 reference), on the forward's chunk numbering when the
// sequences are packed. On the CPU the ATen reference path keeps
// none either way.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/torch.h>

#include "comba/ops/comba.h"
#include "functions.h"  // ops/src: the autograd Function whose saved data is inspected
#include "support/require.h"

namespace comba {
namespace {

struct Leaves {
  at::Tensor q, k, v, p, g, beta;
  std::vector<at::Tensor> all() const { return {q, k, v, p, g, beta}; }
};

Leaves make_leaves(const at::Device& device, at::ScalarType dtype, int64_t T = 2 * kChunkSize + 7) {
  torch::manual_seed(11);
  const int64_t B = 1, H = 2, K = 32, V = 32;
  const auto leaf = [&](const at::Tensor& x, at::ScalarType type) {
    return x.to(device, type).detach().requires_grad_(true);
  };
  Leaves in;
  in.q = leaf(torch::randn({B, T, H, K}), dtype);
  in.k = leaf(torch::randn({B, T, H, K}), dtype);
  in.v = leaf(torch::randn({B, T, H, V}), dtype);
  in.p = leaf(torch::randn({B, T, H, K}), dtype);
  in.g = leaf(-torch::rand({B, T, H}) * 0.5, at::kFloat);
  in.beta = leaf(torch::rand({B, T, H}), at::kFloat);
  return in;
}

// The number of workspace tensors the chunk form's node keeps for its backward.
int64_t saved_workspace(const at::Tensor& o) {
  using Node = torch::autograd::CppNode<detail::ChunkCombaFunction>;
  const auto node = std::dynamic_pointer_cast<Node>(o.grad_fn());
  EXPECT_NE(node, nullptr) << "o's grad_fn is not chunk_comba's node";
  if (!node) return -1;
  const auto found = node->ctx_.saved_data.find("workspace");
  return found == node->ctx_.saved_data.end() ? 0 : static_cast<int64_t>(found->second.toTensorList().size());
}

struct Outcome {
  int64_t workspace = 0;
  std::vector<at::Tensor> grads;
};

// cu_seqlens: packed sequences (undefined: one dense sequence).
Outcome run(const Leaves& in, KeptWorkspace keep, const at::Tensor& cu_seqlens = {}) {
  const auto options = CombaOptions().use_qk_l2norm_in_kernel(true).kept_workspace(keep).cu_seqlens(cu_seqlens);
  const auto [o, final_state] = chunk_comba(in.q, in.k, in.v, in.p, in.g, in.beta, options);
  Outcome r;
  r.workspace = saved_workspace(o);
  torch::manual_seed(12);
  const auto d_o = torch::randn(o.sizes(), o.options().requires_grad(false));
  r.grads = torch::autograd::grad({o}, in.all(), {d_o});
  return r;
}

void expect_same_grads(const Outcome& a, const Outcome& b) {
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    ASSERT_TRUE(a.grads[i].defined() && b.grads[i].defined()) << "gradient " << i;
    EXPECT_TRUE(at::equal(a.grads[i], b.grads[i])) << "gradient " << i;
  }
}

TEST(KeepWorkspace, DefaultsToKeepingAll) { EXPECT_EQ(CombaOptions().kept_workspace(), KeptWorkspace::kAll); }

TEST(KeepWorkspace, ReferencePathKeepsNoneEitherWay) {
  const Leaves in = make_leaves(at::Device(at::kCPU), at::kDouble);
  const Outcome kept = run(in, KeptWorkspace::kAll);
  for (const auto keep : {KeptWorkspace::kStates, KeptWorkspace::kNone}) {
    const Outcome other = run(in, keep);
    EXPECT_EQ(other.workspace, 0);
    expect_same_grads(kept, other);
  }
  EXPECT_EQ(kept.workspace, 0);
}

TEST(KeepWorkspace, CudaFalseKeepsNoWorkspaceAndRecomputesTheSameGradients) {
  COMBA_SKIP_WITHOUT_CUDA();
  const Leaves in = make_leaves(at::Device(at::kCUDA), at::kBFloat16);
  const Outcome kept = run(in, KeptWorkspace::kAll);
  const Outcome dropped = run(in, KeptWorkspace::kNone);
  EXPECT_GT(kept.workspace, 1) << "the chunk kernels kept no workspace: nothing was tested";
  EXPECT_EQ(dropped.workspace, 0);
  expect_same_grads(kept, dropped);
}

// V' is formed from the same 16-bit operands either way: only fp32 summation order may
// differ, far below the bf16 output rounding (2^-8 relative).
void expect_close_grads(const Outcome& kept, const Outcome& states) {
  ASSERT_EQ(kept.grads.size(), states.grads.size());
  for (size_t i = 0; i < kept.grads.size(); ++i) {
    const auto want = kept.grads[i].to(at::kFloat), got = states.grads[i].to(at::kFloat);
    const double scale = want.abs().max().item<double>();
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-2 * scale + 1e-6) << "gradient " << i;
  }
}

// kStates keeps the states and the chunk numbering (chunk offsets, scan walks, the first
// launch's walk count).
constexpr int64_t kStatesWorkspace = 4;

TEST(KeepWorkspace, CudaStatesKeepsTheStatesAndGivesKeptGradients) {
  COMBA_SKIP_WITHOUT_CUDA();
  const Leaves in = make_leaves(at::Device(at::kCUDA), at::kBFloat16);
  const Outcome kept = run(in, KeptWorkspace::kAll);
  const Outcome states = run(in, KeptWorkspace::kStates);
  EXPECT_EQ(states.workspace, kStatesWorkspace);
  expect_close_grads(kept, states);
}

// Packed: one 5-chunk document among 39 short ones (1-61 tokens), enough sequences x heads
// that the scans split the short ones into walks of their own; the backward's prep runs on
// the numbering the forward kept.
TEST(KeepWorkspace, CudaStatesOnPackedSequencesGivesKeptGradients) {
  COMBA_SKIP_WITHOUT_CUDA();
  std::vector<int64_t> offsets{0, 5 * kChunkSize - 3};
  for (int i = 0; i < 39; ++i) offsets.push_back(offsets.back() + 1 + (i * 37) % 61);
  const Leaves in = make_leaves(at::Device(at::kCUDA), at::kBFloat16, offsets.back());
  const auto cu = torch::tensor(offsets, torch::kLong).to(at::kCUDA);
  const Outcome kept = run(in, KeptWorkspace::kAll, cu);
  const Outcome states = run(in, KeptWorkspace::kStates, cu);
  EXPECT_EQ(states.workspace, kStatesWorkspace);
  expect_close_grads(kept, states);
}

}  // namespace
}  // namespace comba
