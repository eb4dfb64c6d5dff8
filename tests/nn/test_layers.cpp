// ShortConvolution, RMSNorm and CombaLayer (CPU, fp32/fp64): closed forms, an fp64
// per-token reference of SPEC section 3, chunk == step-by-step through the cache, padding
// == each sequence alone, packed == each sequence alone, causality.
#include "support/expect_error.h"
#include "nn_test_utils.h"

#include <map>
#include <string>
#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;
// nn's checks are TORCH_CHECKs: their errors are c10::Errors.
const auto expect_error_mentioning = comba::testing::expect_error_mentioning<c10::Error>;

namespace {

ShortConvolution make_conv(int64_t channels, bool bias, uint64_t seed) {
  torch::manual_seed(seed);
  return ShortConvolution(ShortConvolutionOptions(channels, 4).bias(bias));
}

// y_t = silu(b + sum_j w[:, 3 - j] * x_{t - j}), zeros before the start.
torch::Tensor conv_closed_form(const ShortConvolution& conv, const torch::Tensor& x) {
  const auto w = conv->weight.detach().squeeze(1);
  auto y = torch::zeros_like(x);
  for (int64_t t = 0; t < x.size(1); ++t)
    for (int64_t j = 0; j < 4 && j <= t; ++j) y.select(1, t) += w.select(1, 3 - j) * x.select(1, t - j);
  if (conv->bias.defined()) y = y + conv->bias.detach();
  return torch::silu(y);
}

}  // namespace

TEST(ShortConvolution, MatchesClosedFormWithBias) {
  auto conv = make_conv(6, /*bias=*/true, 1);
  const auto x = torch::randn({2, 9, 6});
  const auto out = conv->forward(x, {}, {});
  EXPECT_LT(max_abs_diff(out.output, conv_closed_form(conv, x)), 1e-6);
  // Final state: the last 3 inputs, oldest first, channels first.
  EXPECT_EQ(max_abs_diff(out.final_state, x.slice(1, 6).transpose(1, 2)), 0.0);
}

TEST(ShortConvolution, StepByStepWithStateEqualsFullSequence) {
  auto conv = make_conv(5, /*bias=*/false, 2);
  const auto x = torch::randn({3, 11, 5});
  const auto full = conv->forward(x, {}, {}).output;
  torch::Tensor state;
  std::vector<torch::Tensor> steps;
  auto first = conv->forward(x.slice(1, 0, 2), {}, {});  // a 2-token prefill: state holds one zero
  steps.push_back(first.output);
  state = first.final_state;
  EXPECT_EQ(state.select(2, 0).abs().max().item<float>(), 0.0f);
  for (int64_t t = 2; t < 11; ++t) {
    auto step = conv->forward(x.slice(1, t, t + 1), state, {});
    steps.push_back(step.output);
    state = step.final_state;
  }
  EXPECT_LT(max_abs_diff(torch::cat(steps, 1), full), 1e-6);
}

TEST(ShortConvolution, PackedSequencesDoNotSeeEachOther) {
  auto conv = make_conv(4, /*bias=*/true, 3);
  const std::vector<int64_t> lengths = {5, 0, 2, 7};
  std::vector<torch::Tensor> seqs, states;
  for (auto len : lengths) seqs.push_back(torch::randn({1, len, 4}));
  for (size_t i = 0; i < lengths.size(); ++i) states.push_back(torch::randn({1, 4, 3}));
  const auto cu = torch::tensor(std::vector<int64_t>{0, 5, 5, 7, 14});
  const auto packed = conv->forward(torch::cat(seqs, 1), torch::cat(states, 0), cu);
  int64_t start = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const auto alone = conv->forward(seqs[i], states[i], {});
    EXPECT_LT(max_abs_diff(packed.output.slice(1, start, start + lengths[i]), alone.output), 1e-6) << i;
    EXPECT_EQ(max_abs_diff(packed.final_state.slice(0, i, i + 1), alone.final_state), 0.0) << i;
    start += lengths[i];
  }
}

TEST(ShortConvolution, RejectsWrongChannels) {
  auto conv = make_conv(4, false, 4);
  try {
    conv->forward(torch::randn({1, 3, 5}), {}, {});
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("argument `x`"), std::string::npos) << e.what();
  }
}

TEST(RMSNorm, ClosedFormAndGate) {
  RMSNorm norm(RMSNormOptions(8).eps(1e-5));
  GatedRMSNorm gated(RMSNormOptions(8).eps(1e-5));
  {
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::linspace(0.5, 2.0, 8));
    gated->weight.copy_(norm->weight);
  }
  const auto x = torch::randn({3, 4, 8}, torch::kDouble), gate = torch::randn({3, 4, 8}, torch::kDouble);
  const auto w = norm->weight.detach().to(torch::kDouble);
  const auto expected = x / torch::sqrt((x * x).mean(-1, true) + 1e-5) * w;
  EXPECT_LT(max_abs_diff(norm(x.to(torch::kFloat)), expected), 1e-6);
  EXPECT_LT(max_abs_diff(gated->forward(x.to(torch::kFloat), gate.to(torch::kFloat)), expected * torch::sigmoid(gate)), 1e-6);
  EXPECT_LT(max_abs_diff(gated->forward(x.to(torch::kFloat)), expected), 1e-6);
}

TEST(RMSNorm, Bf16InputIsNormalisedInFp32) {
  RMSNorm norm(RMSNormOptions(64));
  const auto x = (torch::randn({4, 64}) * 30).to(torch::kBFloat16);
  const auto y = norm(x);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  const auto xf = x.to(torch::kFloat);
  const auto expected = (xf * torch::rsqrt(xf.square().mean(-1, true) + 1e-6)).to(torch::kBFloat16);
  // One rounding at the end: within one bf16 ulp of the fp32 composition (the two reduce
  // the mean in different orders, so equality would depend on the CPU's kernels).
  EXPECT_LE(rel_diff(y, expected), dtype_epsilon(torch::kBFloat16));
}

// ---------------------------------------------------------------------------------------
// CombaLayer

struct LayerCase {
  const char* name;
  int64_t num_heads, num_v_heads;
  double expand_v;
  bool short_conv, output_gate, correction, inner_decay, neg_eigval, conv_bias;
};

class CombaLayerVariants : public ::testing::TestWithParam<LayerCase> {
 protected:
  CombaLayer make(uint64_t seed) const {
    const auto& c = GetParam();
    torch::manual_seed(seed);
    CombaLayer layer(CombaLayerOptions(32)
                         .head_dim(16)
                         .num_heads(c.num_heads)
                         .num_v_heads(c.num_v_heads)
                         .expand_v(c.expand_v)
                         .use_short_conv(c.short_conv)
                         .use_output_gate(c.output_gate)
                         .use_output_correction(c.correction)
                         .use_inner_decay(c.inner_decay)
                         .allow_neg_eigval(c.neg_eigval)
                         .conv_bias(c.conv_bias));
    randomize_layer(*layer, seed + 100);
    return layer;
  }
};

TEST_P(CombaLayerVariants, ChunkModeMatchesFp64PerTokenReference) {
  auto layer = make(10);
  layer->train();  // chunk path
  const auto x = torch::randn({2, 70, 32});
  const auto y = layer(x, CombaLayerInputs());
  EXPECT_LT(rel_diff(y, reference_layer(*layer, x)), 2e-5);
}

TEST_P(CombaLayerVariants, ParameterGradientsMatchFp64Reference) {
  auto layer = make(13);
  layer->train();
  const auto x = torch::randn({2, 70, 32});
  const auto weights = torch::randn({2, 70, 32});  // a random projection of the output
  (layer(x, CombaLayerInputs()) * weights).sum().backward();
  std::map<std::string, torch::Tensor> grads;
  for (auto& item : layer->named_parameters()) {
    grads[item.key()] = item.value().grad().clone();
    item.value().mutable_grad() = torch::Tensor();
  }
  (reference_layer(*layer, x, /*differentiable=*/true) * weights.to(torch::kDouble)).sum().backward();
  double largest = 0;
  for (const auto& item : layer->named_parameters())
    largest = std::max(largest, item.value().grad().abs().max().item<double>());
  for (const auto& item : layer->named_parameters()) {
    // Relative to the gradient's size, floored at 1e-2 of the largest gradient: without the
    // output correction, decay's exact gradient is ~0 (a per-head scale of p cancels in the
    // l2norm) and fp32 leaves cancellation noise of the other gradients' size.
    const double scale = std::max(item.value().grad().abs().max().item<double>(), 1e-2 * largest);
    EXPECT_LT(max_abs_diff(grads[item.key()], item.value().grad()), 1e-4 * scale) << item.key();
  }
}

TEST_P(CombaLayerVariants, ChunkEqualsStepByStepThroughCache) {
  auto layer = make(11);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 20, 32});
  layer->train();
  const auto full = layer(x, CombaLayerInputs());
  layer->eval();
  LayerState state;
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < 20; ++t) steps.push_back(layer(x.slice(1, t, t + 1), CombaLayerInputs().state(&state)));
  EXPECT_LT(rel_diff(torch::cat(steps, 1), full), 1e-5);
  EXPECT_EQ(state.recurrent.scalar_type(), torch::kFloat);
  EXPECT_EQ(state.recurrent.sizes(), torch::IntArrayRef({2, layer->value_heads(), 16, layer->head_v_dim()}));
}

TEST_P(CombaLayerVariants, PrefillOf65ThenStepsEqualsOnePass) {
  auto layer = make(12);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 72, 32});
  layer->train();
  const auto full = layer(x, CombaLayerInputs());
  LayerState state;
  const auto prefill = layer(x.slice(1, 0, 65), CombaLayerInputs().state(&state));  // chunk path
  layer->eval();
  std::vector<torch::Tensor> outs = {prefill};
  for (int64_t t = 65; t < 72; ++t) outs.push_back(layer(x.slice(1, t, t + 1), CombaLayerInputs().state(&state)));
  // fp32 through differently shaped chunks and GEMMs (65 + 7 single steps against one pass
  // of 72): rounding, not equality; a wrong carried state is off by orders more.
  EXPECT_LT(rel_diff(torch::cat(outs, 1), full), 5e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Options, CombaLayerVariants,
    ::testing::Values(LayerCase{"Default", 2, 0, 1.0, true, true, true, true, false, false},
                      LayerCase{"GVA", 2, 4, 2.0, true, true, true, true, false, false},
                      LayerCase{"NoConvNoGateNoCorrection", 2, 0, 1.0, false, false, false, false, false, false},
                      LayerCase{"DecayOnlyNegEigvalConvBias", 1, 2, 0.5, true, false, false, true, true, true}),
    [](const ::testing::TestParamInfo<LayerCase>& info) { return std::string(info.param.name); });

namespace {

CombaLayer make_gva_layer(uint64_t seed) {
  torch::manual_seed(seed);
  CombaLayer layer(tiny_layer(2, 4).expand_v(2.0));
  randomize_layer(*layer, seed + 1);
  return layer;
}

}  // namespace

TEST(CombaLayer, PaddedBatchEqualsEachSequenceAlone) {
  auto layer = make_gva_layer(20);
  layer->train();
  torch::NoGradGuard no_grad;
  const int64_t T = 70;
  const std::vector<int64_t> lengths = {70, 41, 66};
  const auto x = torch::randn({3, T, 32});
  for (bool left : {true, false}) {
    auto mask = torch::zeros({3, T}, torch::kLong);
    for (int64_t b = 0; b < 3; ++b) {
      if (left) mask[b].slice(0, T - lengths[b]).fill_(1);
      else mask[b].slice(0, 0, lengths[b]).fill_(1);
    }
    const auto y = layer(x, CombaLayerInputs().attention_mask(mask));
    for (int64_t b = 0; b < 3; ++b) {
      const int64_t start = left ? T - lengths[b] : 0;
      const auto tokens = x[b].slice(0, start, start + lengths[b]).unsqueeze(0);
      const auto alone = layer(tokens, CombaLayerInputs());
      EXPECT_LT(rel_diff(y[b].slice(0, start, start + lengths[b]).unsqueeze(0), alone), 1e-5) << left << b;
      EXPECT_EQ((y[b].abs().sum(-1) > 0).sum().item<int64_t>(), lengths[b]) << "padding gives zeros";
    }
  }
}

// The block's path (the norm fused into the projections) computes forward(norm(x)), with
// padding and with every gradient: x's, the norm's and the projections' weights.
TEST(CombaLayer, NormalizedFormEqualsNormThenLayer) {
  auto layer = make_gva_layer(22);
  layer->to(torch::kDouble);
  layer->train();
  RMSNorm norm(RMSNormOptions(32));
  norm->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    norm->weight.normal_(1.0, 0.1);
  }
  auto mask = torch::ones({2, 40}, torch::kLong);
  mask[1].slice(0, 0, 11).fill_(0);
  const auto x0 = torch::randn({2, 40, 32}, torch::kDouble);
  const auto dy = torch::randn({2, 40, 32}, torch::kDouble);
  const auto run = [&](bool fused) {
    layer->zero_grad();
    norm->zero_grad();
    const auto x = x0.clone().requires_grad_(true);
    const auto inputs = CombaLayerInputs().attention_mask(mask);
    const auto y = fused ? layer->forward_normalized(x, *norm, inputs) : layer(norm(x), inputs);
    (y * dy).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), x.grad(), norm->weight.grad().clone(),
                                      layer->q_proj->weight.grad().clone(), layer->b_proj->weight.grad().clone(),
                                      layer->g_proj->weight.grad().clone()};
  };
  const auto fused = run(true), plain = run(false);
  const char* names[] = {"y", "dx", "dnorm", "dq_proj", "db_proj", "dg_proj"};
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_LT(rel_diff(fused[i], plain[i]), 1e-12) << names[i];
}

TEST(CombaLayer, LeftPaddedPrefillThenStepsEqualsEachSequenceAlone) {
  auto layer = make_gva_layer(21);
  torch::NoGradGuard no_grad;
  const int64_t T = 67, steps = 4;
  const std::vector<int64_t> lengths = {67, 2, 50};
  const auto x = torch::randn({3, T + steps, 32});
  auto mask = torch::zeros({3, T}, torch::kLong);
  for (int64_t b = 0; b < 3; ++b) mask[b].slice(0, T - lengths[b]).fill_(1);
  layer->train();
  LayerState state;
  layer(x.slice(1, 0, T), CombaLayerInputs().attention_mask(mask).state(&state));
  layer->eval();
  std::vector<torch::Tensor> outs;
  for (int64_t t = T; t < T + steps; ++t) {
    // A growing HF-style mask; only its last column applies to the new token.
    mask = torch::cat({mask, torch::ones({3, 1}, torch::kLong)}, 1);
    outs.push_back(layer(x.slice(1, t, t + 1), CombaLayerInputs().attention_mask(mask).state(&state)));
  }
  const auto decoded = torch::cat(outs, 1);
  layer->train();
  for (int64_t b = 0; b < 3; ++b) {
    const auto alone = layer(x[b].slice(0, T - lengths[b]).unsqueeze(0), CombaLayerInputs());
    EXPECT_LT(rel_diff(decoded[b].unsqueeze(0), alone.slice(1, lengths[b])), 1e-5) << b;
  }
}

TEST(CombaLayer, PackedSequencesEqualEachSequenceAloneWithStates) {
  auto layer = make_gva_layer(22);
  layer->train();
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> lengths = {9, 0, 70, 3};
  std::vector<torch::Tensor> seqs;
  for (auto len : lengths) seqs.push_back(torch::randn({1, len, 32}));
  const auto cu = torch::tensor(std::vector<int64_t>{0, 9, 9, 79, 82});
  LayerState packed_state;
  const auto packed = layer(torch::cat(seqs, 1), CombaLayerInputs().cu_seqlens(cu).state(&packed_state));
  int64_t start = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    LayerState alone_state;
    const auto alone = layer(seqs[i], CombaLayerInputs().state(&alone_state));
    if (lengths[i] > 0) EXPECT_LT(rel_diff(packed.slice(1, start, start + lengths[i]), alone), 1e-5) << i;
    const auto idx = static_cast<int64_t>(i);
    EXPECT_LT(max_abs_diff(packed_state.recurrent.slice(0, idx, idx + 1), alone_state.recurrent), 1e-5) << i;
    // The conv state holds v_proj outputs: GEMMs of different shapes round differently per
    // CPU (oneDNN/MKL pick kernels by shape), so the bound is the GEMM's rounding (reduction
    // length 32, twice over) in fp32 roundoffs, not bit equality.
    EXPECT_LE(rel_diff(packed_state.conv_v.slice(0, idx, idx + 1), alone_state.conv_v),
              2 * 32 * dtype_epsilon(torch::kFloat)) << i;
    start += lengths[i];
  }
}

namespace {

// Outputs at or before `t` must not move when inputs after `t` change, while later outputs
// must (so the check cannot pass vacuously).
void expect_causal(const torch::Tensor& before, const torch::Tensor& after, int64_t t, int64_t time_dim) {
  EXPECT_LT(max_abs_diff(before.narrow(time_dim, 0, t + 1), after.narrow(time_dim, 0, t + 1)), 1e-6);
  EXPECT_GT(max_abs_diff(before.narrow(time_dim, t + 1, before.size(time_dim) - t - 1),
                         after.narrow(time_dim, t + 1, after.size(time_dim) - t - 1)),
            1e-4);
}

}  // namespace

TEST(CombaLayer, CausalDensePackedAndPadded) {
  auto layer = make_gva_layer(23);
  torch::NoGradGuard no_grad;
  for (bool train : {true, false}) {
    layer->train(train);
    const auto x = torch::randn({2, 70, 32});
    for (int64_t t : {0, 30, 63, 64}) {
      auto changed = x.clone();
      changed.slice(1, t + 1).normal_();
      expect_causal(layer(x, CombaLayerInputs()), layer(changed, CombaLayerInputs()), t, 1);
      // Packed: two sequences of 35; changing the second's tail leaves all of the first.
      const auto cu = torch::tensor(std::vector<int64_t>{0, 35, 70});
      const auto flat = x.slice(0, 0, 1), flat_changed = changed.slice(0, 0, 1);
      expect_causal(layer(flat, CombaLayerInputs().cu_seqlens(cu)),
                    layer(flat_changed, CombaLayerInputs().cu_seqlens(cu)), t, 1);
      // Padded (left): the mask hides the first 5 positions of row 1.
      auto mask = torch::ones({2, 70}, torch::kLong);
      mask[1].slice(0, 0, 5).fill_(0);
      expect_causal(layer(x, CombaLayerInputs().attention_mask(mask)),
                    layer(changed, CombaLayerInputs().attention_mask(mask)), t, 1);
    }
  }
}

TEST(CombaLayer, PackedFirstSequenceIgnoresTheSecond) {
  auto layer = make_gva_layer(24);
  layer->train();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 40, 32});
  auto changed = x.clone();
  changed.slice(1, 25).normal_();
  const auto cu = torch::tensor(std::vector<int64_t>{0, 25, 40});
  const auto a = layer(x, CombaLayerInputs().cu_seqlens(cu)), b = layer(changed, CombaLayerInputs().cu_seqlens(cu));
  EXPECT_LT(max_abs_diff(a.slice(1, 0, 25), b.slice(1, 0, 25)), 1e-6);
  // And the second sequence starts fresh: equal to running it alone.
  EXPECT_LT(rel_diff(b.slice(1, 25), layer(changed.slice(1, 25), CombaLayerInputs())), 1e-5);
}

TEST(CombaLayer, BadInputsNameTheArgument) {
  CombaLayer layer(tiny_layer());
  expect_error_mentioning([&] { layer(torch::randn({2, 3, 31}), CombaLayerInputs()); }, "argument `x`");
  expect_error_mentioning([&] { layer(torch::randn({2, 3, 32}), CombaLayerInputs().attention_mask(torch::ones({2, 2}))); },
               "argument `attention_mask`");
  expect_error_mentioning([] { CombaLayer bad(tiny_layer(2, 3)); }, "option `num_v_heads`");
}
