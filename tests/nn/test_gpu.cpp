// The nn equalities on the GPU in bf16 (skipped without CUDA). Tolerances: bf16 carries 8
// mantissa bits (relative rounding 3.9e-3) and every projection rounds its output, so
// two bf16 routes to the same numbers differ by a few rounding steps: we allow 3e-2 of
// the largest output magnitude for layer outputs and logits (fp32 routes agree to 1e-5 on
// the CPU, see test_layers), and 5e-2 between bf16 and the fp32 model. Causality: logits at
// or before t may move by 1e-3 of their size (same kernels on the same shapes should give
// identical bits; the margin only covers a non-deterministic reduction order), while a
// leak of a changed token moves them by O(1).
#include "nn_test_utils.h"
#include "support/require.h"

#include <ATen/autocast_mode.h>

#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;

namespace {

constexpr double kBf16Tolerance = 3e-2;
constexpr double kBf16VsFp32Tolerance = 5e-2;
constexpr double kCausalTolerance = 1e-3;

class NnOnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    COMBA_SKIP_WITHOUT_CUDA();
  }
  const torch::Device cuda{torch::kCUDA, 0};
};

CombaLayer make_bf16_layer(const torch::Device& device) {
  torch::manual_seed(30);
  CombaLayer layer(tiny_layer(2, 4).expand_v(2.0).head_dim(64).hidden_size(128));
  randomize_layer(*layer, 31);
  layer->to(device, torch::kBFloat16);
  return layer;
}

}  // namespace

// The GPU cases' model: head_dim 64 (a tuned kernel size) and GVA (4 value heads).
CombaConfig gpu_config() {
  auto config = tiny_config();
  config.hidden_size = 128;
  config.head_dim = 64;
  config.num_v_heads = 4;
  return config;
}

TEST_F(NnOnGpu, Bf16LayerChunkEqualsStepByStepAfterPrefill) {
  auto layer = make_bf16_layer(cuda);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({3, 80, 128}, torch::TensorOptions(cuda).dtype(torch::kBFloat16));
  layer->train();
  const auto full = layer(x, CombaLayerInputs());
  LayerState state;
  std::vector<torch::Tensor> outs = {layer(x.slice(1, 0, 65), CombaLayerInputs().state(&state))};
  layer->eval();
  for (int64_t t = 65; t < 80; ++t) outs.push_back(layer(x.slice(1, t, t + 1), CombaLayerInputs().state(&state)));
  EXPECT_LT(rel_diff(torch::cat(outs, 1), full), kBf16Tolerance);
}

TEST_F(NnOnGpu, Bf16PaddedBatchEqualsEachSequenceAlone) {
  auto layer = make_bf16_layer(cuda);
  layer->train();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 90, 128}, torch::TensorOptions(cuda).dtype(torch::kBFloat16));
  auto mask = torch::ones({2, 90}, torch::TensorOptions(cuda).dtype(torch::kLong));
  mask[1].slice(0, 0, 17).fill_(0);
  const auto y = layer(x, CombaLayerInputs().attention_mask(mask));
  EXPECT_LT(rel_diff(y[1].slice(0, 17), layer(x[1].slice(0, 17).unsqueeze(0), CombaLayerInputs())[0]), kBf16Tolerance);
  EXPECT_LT(rel_diff(y[0], layer(x.slice(0, 0, 1), CombaLayerInputs())[0]), kBf16Tolerance);
}

TEST_F(NnOnGpu, Bf16WeightsAndAutocastMatchFp32Model) {
  torch::manual_seed(32);
  const auto config = gpu_config();
  CombaForCausalLM lm(config);
  lm->to(cuda);
  lm->train();
  const auto ids = torch::randint(0, 64, {2, 100}, torch::TensorOptions(cuda).dtype(torch::kLong));
  const auto reference = lm(ids, LMInputs().labels(ids));
  {
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::increment_nesting();
    const auto out = lm(ids, LMInputs().labels(ids));
    at::autocast::decrement_nesting();
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
    EXPECT_LT(rel_diff(out.logits, reference.logits), kBf16VsFp32Tolerance);
    out.loss.backward();
    for (const auto& item : lm->named_parameters()) {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>()) << item.key();
    }
  }
  lm->to(torch::kBFloat16);
  const auto out = lm(ids, LMInputs().labels(ids));
  EXPECT_LT(rel_diff(out.logits, reference.logits), kBf16VsFp32Tolerance);
  EXPECT_NEAR(out.loss.item<double>(), reference.loss.item<double>(), 0.05);
}

TEST_F(NnOnGpu, Bf16CachedDecodeEqualsFullForwardAndGreedyIsDeterministic) {
  torch::manual_seed(33);
  const auto config = gpu_config();
  CombaForCausalLM lm(config);
  lm->to(cuda, torch::kBFloat16);
  lm->eval();
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {4, 75}, torch::TensorOptions(cuda).dtype(torch::kLong));
  const auto full = lm(ids, LMInputs()).logits;
  auto cache = lm->make_cache();
  std::vector<torch::Tensor> parts = {lm(ids.slice(1, 0, 66), LMInputs().cache(&cache)).logits};
  for (int64_t t = 66; t < 75; ++t) parts.push_back(lm(ids.slice(1, t, t + 1), LMInputs().cache(&cache)).logits);
  EXPECT_LT(rel_diff(torch::cat(parts, 1), full), kBf16Tolerance);
  const auto a = generate(lm, ids, {}, GenerationOptions().max_new_tokens(5));
  const auto b = generate(lm, ids, {}, GenerationOptions().max_new_tokens(5));
  EXPECT_TRUE(a.sequences.equal(b.sequences));
}

TEST_F(NnOnGpu, Bf16ModelIsCausalDensePackedAndPadded) {
  torch::manual_seed(34);
  const auto config = gpu_config();
  CombaForCausalLM lm(config);
  lm->to(cuda, torch::kBFloat16);
  lm->train();
  torch::NoGradGuard no_grad;
  const auto long_opts = torch::TensorOptions(cuda).dtype(torch::kLong);
  const auto ids = torch::randint(0, 64, {2, 150}, long_opts);
  const int64_t t = 70;
  auto changed = ids.clone();
  changed.slice(1, t + 1).random_(0, 64);
  auto mask = torch::ones({2, 150}, long_opts);
  mask[1].slice(0, 0, 9).fill_(0);
  const auto cu = torch::tensor(std::vector<int64_t>{0, 40, 150}, long_opts);
  const auto check = [&](const LMInputs& inputs, const torch::Tensor& a, const torch::Tensor& b) {
    const auto before = lm(a, inputs).logits, after = lm(b, inputs).logits;
    EXPECT_LT(rel_diff(after.slice(1, 0, t + 1), before.slice(1, 0, t + 1)), kCausalTolerance);
    EXPECT_GT(max_abs_diff(before.slice(1, t + 1), after.slice(1, t + 1)), 1e-3);
  };
  check(LMInputs(), ids, changed);
  check(LMInputs().attention_mask(mask), ids, changed);
  check(LMInputs().cu_seqlens(cu), ids.slice(0, 0, 1), changed.slice(0, 0, 1));
}

// linear_cross_entropy on the GPU: bf16 under autocast with fp32 weights (the trainer's
// mode; d_weight accumulated in fp32 across slices) against the fp64 composition, no worse
// than twice the unfused bf16 composition; an out-of-range target makes the loss NaN
// instead of a device-side assert.
TEST_F(NnOnGpu, LinearCrossEntropyUnderAutocastFollowsTheUnfusedComposition) {
  torch::manual_seed(35);
  const auto f32 = torch::TensorOptions(cuda).dtype(torch::kFloat);
  const auto hidden = torch::randn({3000, 256}, f32);
  const auto weight = torch::randn({5000, 256}, f32) * 0.05;
  auto targets = torch::randint(0, 5000, {3000}, torch::TensorOptions(cuda).dtype(torch::kLong));
  targets.slice(0, 0, 3000, 7).fill_(kIgnoreIndex);
  const auto run = [&](bool fused, torch::Dtype dtype, bool autocast) {
    auto h = hidden.to(dtype).requires_grad_(true);
    auto w = weight.to(dtype).requires_grad_(true);
    torch::Tensor loss;
    {
      at::autocast::set_autocast_enabled(at::kCUDA, autocast);
      at::autocast::set_autocast_dtype(at::kCUDA, torch::kBFloat16);
      if (fused) {
        loss = linear_cross_entropy(h, w, targets, LinearCrossEntropyOptions().tokens_per_slice(700));
      } else {
        loss = torch::nn::functional::cross_entropy(
            torch::nn::functional::linear(h, w).to(dtype == torch::kDouble ? torch::kDouble : torch::kFloat), targets,
            torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
      }
      at::autocast::set_autocast_enabled(at::kCUDA, false);
      at::autocast::clear_cache();
    }
    (loss * 1e-3).backward();
    return std::vector<torch::Tensor>{loss.detach(), h.grad(), w.grad()};
  };
  const auto exact = run(false, torch::kDouble, false);
  const auto aten = run(false, torch::kFloat, true);
  const auto ours = run(true, torch::kFloat, true);
  EXPECT_EQ(ours[2].scalar_type(), torch::kFloat);
  for (size_t i = 0; i < exact.size(); ++i) {
    EXPECT_LE(rel_diff(ours[i], exact[i]), 2 * rel_diff(aten[i], exact[i]) + 1e-3) << "output " << i;
  }
  auto bad = targets.clone();
  bad[5] = 5000;
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(std::isnan(linear_cross_entropy(hidden, weight, bad).item<double>()));
}

// The row kernel behind linear_cross_entropy on CUDA in each of its forms: registers
// (fp32, bf16, fp16 at vocab 5000), the vectorised loop (bf16 at 140000, fp32 at 40000),
// the scalar loop (vocab 4999); logits up to |80| (the softmax sums must not overflow),
// ignored rows, and a target out of range (NaN). Reference: the fp64 composition on the
// same rounded inputs; 16-bit inputs within twice ATen's error at that dtype.
TEST_F(NnOnGpu, LinearCrossEntropyRowKernelEveryFormMatchesFp64) {
  struct Case {
    torch::Dtype dtype;
    int64_t vocab;
  };
  for (const auto& c : {Case{torch::kFloat, 5000}, Case{torch::kBFloat16, 5000}, Case{torch::kHalf, 5000},
                        Case{torch::kBFloat16, 140000}, Case{torch::kFloat, 40000}, Case{torch::kFloat, 4999},
                        Case{torch::kBFloat16, 4999}}) {
    const std::string what = std::string(c10::toString(c.dtype)) + " vocab " + std::to_string(c.vocab);
    torch::manual_seed(36);
    const auto f64 = torch::TensorOptions(cuda).dtype(torch::kDouble);
    // |logits| up to ~80: hidden . weight over 64 dims with these scales.
    const auto hidden = (torch::randn({300, 64}, f64) * 2.0).to(c.dtype).to(torch::kDouble);
    const auto weight = (torch::randn({c.vocab, 64}, f64) * 0.6).to(c.dtype).to(torch::kDouble);
    auto targets = torch::randint(0, c.vocab, {300}, torch::TensorOptions(cuda).dtype(torch::kLong));
    targets.slice(0, 0, 300, 9).fill_(kIgnoreIndex);
    targets[4] = c.vocab - 1;  // the last column
    const auto run = [&](bool fused, torch::Dtype dtype) {
      auto h = hidden.to(dtype).detach().clone().requires_grad_(true);
      auto w = weight.to(dtype).detach().clone().requires_grad_(true);
      torch::Tensor loss;
      if (fused) {
        loss = linear_cross_entropy(h, w, targets, LinearCrossEntropyOptions().tokens_per_slice(128));
      } else {
        const auto acc = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
        loss = torch::nn::functional::cross_entropy(
            torch::mm(h, w.t()).to(acc), targets,
            torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
      }
      (loss * 1e-2).backward();
      return std::vector<torch::Tensor>{loss.detach(), h.grad(), w.grad()};
    };
    const auto exact = run(false, torch::kDouble);
    const auto ours = run(true, c.dtype);
    const auto aten = run(false, c.dtype);
    ASSERT_TRUE(std::isfinite(ours[0].item<double>())) << what;
    for (size_t i = 0; i < exact.size(); ++i) {
      const double tol = c.dtype == torch::kFloat ? 1e-4 : 2 * rel_diff(aten[i], exact[i]) + dtype_epsilon(c.dtype);
      EXPECT_LE(rel_diff(ours[i], exact[i]), tol) << what << " output " << i;
    }
    auto bad = targets.clone();
    bad[7] = -3;
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(std::isnan(linear_cross_entropy(hidden.to(c.dtype), weight.to(c.dtype), bad).item<double>())) << what;
  }
}

// generate's CUDA graph of the decode step against eager steps: the same greedy tokens and
// logits (the graph replays the same kernels; cuBLAS may pick other algorithms under
// capture, hence a tolerance rather than bit equality). fp32 and bf16 models, GVA, a
// left-padded batch, and an EOS that stops rows early.
TEST_F(NnOnGpu, GenerateWithCudaGraphEqualsEagerSteps) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    torch::manual_seed(35);
    CombaForCausalLM lm(gpu_config());
    lm->to(cuda, dtype);
    lm->eval();
    const auto long_opts = torch::TensorOptions(cuda).dtype(torch::kLong);
    const auto ids = torch::randint(0, 64, {3, 20}, long_opts);
    auto mask = torch::ones({3, 20}, long_opts);
    mask[1].slice(0, 0, 7).fill_(0);
    for (const bool padded : {false, true}) {
      const auto options = GenerationOptions().max_new_tokens(12).output_logits(true);
      const auto eager = generate(lm, ids, padded ? mask : torch::Tensor(), GenerationOptions(options).cuda_graph(false));
      const auto graph = generate(lm, ids, padded ? mask : torch::Tensor(), GenerationOptions(options).cuda_graph(true));
      EXPECT_TRUE(graph.used_cuda_graph) << dtype << " padded " << padded;
      EXPECT_FALSE(eager.used_cuda_graph);
      EXPECT_TRUE(graph.sequences.equal(eager.sequences)) << dtype << " padded " << padded;
      EXPECT_LT(rel_diff(graph.logits, eager.logits), dtype == torch::kFloat ? 1e-5 : kBf16Tolerance)
          << dtype << " padded " << padded;
    }
    // EOS: the graph keeps stepping finished rows (they get pad tokens), as eager does.
    const auto first = generate(lm, ids, {}, GenerationOptions().max_new_tokens(3).cuda_graph(false));
    const int64_t eos = first.new_tokens[0][1].item<int64_t>();
    const auto options = GenerationOptions().max_new_tokens(10).eos_token_id(eos);
    EXPECT_TRUE(generate(lm, ids, {}, GenerationOptions(options).cuda_graph(true))
                    .sequences.equal(generate(lm, ids, {}, GenerationOptions(options).cuda_graph(false)).sequences))
        << dtype;
  }
}

// The bf16 decode state at the model level: tokens of a short greedy run mostly agree with
// the fp32 state's, and the logits stay within bf16's tolerance.
TEST_F(NnOnGpu, GenerateWithBf16DecodeStateIsCloseToFp32State) {
  torch::manual_seed(36);
  CombaForCausalLM lm(gpu_config());
  lm->to(cuda, torch::kFloat);
  lm->eval();
  const auto ids = torch::randint(0, 64, {4, 24}, torch::TensorOptions(cuda).dtype(torch::kLong));
  const auto options = GenerationOptions().max_new_tokens(16).output_logits(true);
  const auto fp32 = generate(lm, ids, {}, GenerationOptions(options).bf16_decode_state(false));
  const auto bf16 = generate(lm, ids, {}, GenerationOptions(options).bf16_decode_state(true));
  // Compare the logits of the steps before the first differing token (after it, inputs differ).
  const auto same = fp32.new_tokens.eq(bf16.new_tokens).all(0);
  int64_t agree = 0;
  while (agree < same.size(0) && same[agree].item<bool>()) ++agree;
  ASSERT_GT(agree, 0);
  const double err = rel_diff(bf16.logits.slice(1, 0, agree), fp32.logits.slice(1, 0, agree));
  std::printf("{\"case\": \"generate_bf16_decode_state\", \"steps_equal\": %lld, \"logits_rel\": %.3e}\n",
              static_cast<long long>(agree), err);
  EXPECT_LT(err, kBf16Tolerance);
}
