// linear_cross_entropy and CombaForCausalLM::summed_next_token_loss against the unfused
// ATen composition (logits = hidden W^T, then cross_entropy with reduction sum), forward
// and both gradients: fp64 (to 1e-12), fp32, bf16 (to its rounding); several slice sizes,
// ignored targets, tied and untied heads. The CUDA twin is in test_gpu.cpp.
#include "comba/nn.h"
#include "support/expect_error.h"
#include "nn_test_utils.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace comba::nn::testing {
namespace {

// nn's checks are TORCH_CHECKs: their errors are c10::Errors.
const auto expect_error_mentioning = comba::testing::expect_error_mentioning<c10::Error>;

struct LossAndGrads {
  torch::Tensor loss, d_hidden, d_weight;
};

LossAndGrads unfused(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets) {
  const auto h = hidden.detach().clone().requires_grad_(true);
  const auto w = weight.detach().clone().requires_grad_(true);
  const auto logits = torch::mm(h, w.t());
  const auto acc = hidden.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const auto loss = torch::nn::functional::cross_entropy(
      logits.to(acc), targets,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
  (loss * 0.25).backward();  // a non-unit upstream gradient, as the trainer's 1 / targets
  return {loss.detach(), h.grad(), w.grad()};
}

LossAndGrads fused(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                   int64_t slice) {
  const auto h = hidden.detach().clone().requires_grad_(true);
  const auto w = weight.detach().clone().requires_grad_(true);
  const auto loss = linear_cross_entropy(h, w, targets, LinearCrossEntropyOptions().tokens_per_slice(slice));
  (loss * 0.25).backward();
  return {loss.detach(), h.grad(), w.grad()};
}

struct Inputs {
  torch::Tensor hidden, weight, targets;
};

Inputs make_inputs(int64_t n, int64_t h, int64_t v, torch::Dtype dtype, uint64_t seed) {
  torch::manual_seed(seed);
  Inputs in;
  in.hidden = torch::randn({n, h}, torch::kDouble).to(dtype);
  in.weight = (torch::randn({v, h}, torch::kDouble) * 0.5).to(dtype);
  in.targets = torch::randint(0, v, {n}, torch::kLong);
  // Every fifth target ignored, the first included.
  in.targets.index_put_({torch::arange(n) % 5 == 3}, kIgnoreIndex);
  return in;
}

void expect_close(const LossAndGrads& got, const LossAndGrads& want, double tol, const std::string& what) {
  EXPECT_LE(rel_diff(got.loss, want.loss), tol) << what << " loss";
  EXPECT_LE(rel_diff(got.d_hidden, want.d_hidden), tol) << what << " d_hidden";
  EXPECT_LE(rel_diff(got.d_weight, want.d_weight), tol) << what << " d_weight";
}

}  // namespace

TEST(LinearCrossEntropy, EqualsUnfusedCompositionInFloat64AtEverySliceSize) {
  const auto in = make_inputs(23, 12, 37, torch::kDouble, 1);
  const auto want = unfused(in.hidden, in.weight, in.targets);
  for (int64_t slice : {1, 4, 7, 23, 100, 0}) {
    expect_close(fused(in.hidden, in.weight, in.targets, slice), want, 1e-12, "slice " + std::to_string(slice));
  }
}

TEST(LinearCrossEntropy, EqualsUnfusedCompositionInFloat32) {
  const auto in = make_inputs(64, 32, 101, torch::kFloat, 2);
  const auto want = unfused(in.hidden.to(torch::kDouble), in.weight.to(torch::kDouble), in.targets);
  // fp32 GEMMs over H = 32 and a softmax over 101 classes: a few hundred roundoffs at most.
  for (int64_t slice : {5, 0}) {
    expect_close(fused(in.hidden, in.weight, in.targets, slice), want, 256 * dtype_epsilon(torch::kFloat),
                 "slice " + std::to_string(slice));
  }
}

TEST(LinearCrossEntropy, Bfloat16FollowsTheUnfusedBfloat16Composition) {
  const auto in = make_inputs(48, 32, 64, torch::kBFloat16, 3);
  const auto exact = unfused(in.hidden.to(torch::kDouble), in.weight.to(torch::kDouble), in.targets);
  const auto aten = unfused(in.hidden, in.weight, in.targets);
  const auto ours = fused(in.hidden, in.weight, in.targets, 7);
  EXPECT_EQ(ours.loss.scalar_type(), torch::kFloat);
  EXPECT_EQ(ours.d_hidden.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(ours.d_weight.scalar_type(), torch::kBFloat16);
  // FlashAttention's rule: no worse than twice the ATen composition's error at this dtype
  // (plus one bf16 roundoff, since both may be near-exact on the loss).
  const auto bound = [](const torch::Tensor& a, const torch::Tensor& b) {
    return 2 * rel_diff(a, b) + dtype_epsilon(torch::kBFloat16);
  };
  EXPECT_LE(rel_diff(ours.loss, exact.loss), bound(aten.loss, exact.loss));
  EXPECT_LE(rel_diff(ours.d_hidden, exact.d_hidden), bound(aten.d_hidden, exact.d_hidden));
  EXPECT_LE(rel_diff(ours.d_weight, exact.d_weight), bound(aten.d_weight, exact.d_weight));
}

TEST(LinearCrossEntropy, AllIgnoredGivesZeroLossAndGradients) {
  auto in = make_inputs(6, 8, 10, torch::kDouble, 4);
  in.targets.fill_(kIgnoreIndex);
  const auto got = fused(in.hidden, in.weight, in.targets, 4);
  EXPECT_EQ(got.loss.item<double>(), 0.0);
  EXPECT_EQ(got.d_hidden.abs().max().item<double>(), 0.0);
  EXPECT_EQ(got.d_weight.abs().max().item<double>(), 0.0);
}

TEST(LinearCrossEntropy, WithoutGradModeGivesTheSameLoss) {
  const auto in = make_inputs(9, 8, 10, torch::kDouble, 5);
  const auto want = unfused(in.hidden, in.weight, in.targets);
  torch::NoGradGuard no_grad;
  EXPECT_LE(rel_diff(linear_cross_entropy(in.hidden, in.weight, in.targets), want.loss), 1e-12);
}

TEST(LinearCrossEntropy, BadArgumentsNameTheArgument) {
  const auto in = make_inputs(6, 8, 10, torch::kFloat, 6);
  expect_error_mentioning([&] { linear_cross_entropy(in.hidden, in.weight.t(), in.targets); }, "argument `weight`");
  expect_error_mentioning([&] { linear_cross_entropy(in.hidden, in.weight, in.targets.slice(0, 1)); },
                          "argument `targets`");
  auto out_of_range = in.targets.clone();
  out_of_range[2] = 10;
  expect_error_mentioning([&] { linear_cross_entropy(in.hidden, in.weight, out_of_range); },
                          "expected ids in [0, 10) or -100, got 10 at position 2");
  const auto h = in.hidden.clone().requires_grad_(true);
  const auto loss = linear_cross_entropy(h, in.weight, in.targets);
  expect_error_mentioning(
      [&] { torch::autograd::grad({loss}, {h}, {}, /*retain_graph=*/true, /*create_graph=*/true); },
      "double backward (create_graph=true) is not supported");
}

TEST(LinearCrossEntropy, ModelLossEqualsLogitsLossTiedAndUntied) {
  for (bool tied : {false, true}) {
    auto config = tiny_config();
    config.tie_word_embeddings = tied;
    torch::manual_seed(7);
    CombaForCausalLM a(config), b(config);
    {
      torch::NoGradGuard no_grad;
      const auto src = a->named_parameters();
      for (auto& item : b->named_parameters()) item.value().copy_(src[item.key()]);
    }
    a->to(torch::kDouble);
    b->to(torch::kDouble);
    const auto ids = torch::randint(0, config.vocab_size, {2, 9}, torch::kLong);
    auto labels = ids.clone();
    labels[0][4] = kIgnoreIndex;
    const auto counted = static_cast<double>(labels.slice(1, 1).ne(kIgnoreIndex).sum().item<int64_t>());
    const auto want = causal_lm_loss(a(ids, LMInputs()).logits, labels) * counted;
    const auto got = b->summed_next_token_loss(ids, LMInputs().labels(labels));
    EXPECT_LE(rel_diff(got, want), 1e-12) << "tied " << tied;
    want.backward();
    got.backward();
    const auto want_params = a->named_parameters();
    for (const auto& item : b->named_parameters()) {
      EXPECT_LE(rel_diff(item.value().grad(), want_params[item.key()].grad()), 1e-10)
          << item.key() << " tied " << tied;
    }
  }
}

}  // namespace comba::nn::testing
