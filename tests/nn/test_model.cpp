// CombaModel / CombaForCausalLM (CPU): fla's parameter names and shapes (written from SPEC
// section 3), initialisation, weight-decay rule, loss closed form, causality, gradients,
// overfitting a fixed batch, bf16 weights and bf16 autocast.
#include "nn_test_utils.h"

#include <ATen/autocast_mode.h>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;

namespace {

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

ShapeMap parameter_shapes(const torch::nn::Module& module) {
  ShapeMap shapes;
  for (const auto& item : module.named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  return shapes;
}

}  // namespace

TEST(CombaForCausalLM, ParameterNamesAndShapesMatchFla) {
  // vocab 64, hidden 32, 2 layers, H = 2, K = 16, HV = 4, expand_v 2: key_dim 32,
  // head_v_dim 32, value_dim 128; MLP 256-rounded int(32 * 4 * 2 / 3) = 85 -> 256.
  auto config = tiny_config();
  config.num_v_heads = 4;
  config.expand_v = 2.0;
  config.intermediate_size = 0;
  config.hidden_ratio = 4;
  CombaForCausalLM lm(config);
  ShapeMap expected = {{"model.embeddings.weight", {64, 32}}, {"model.norm.weight", {32}}, {"lm_head.weight", {64, 32}}};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    expected[p + "attn_norm.weight"] = {32};
    expected[p + "attn.q_proj.weight"] = {32, 32};
    expected[p + "attn.k_proj.weight"] = {32, 32};
    expected[p + "attn.v_proj.weight"] = {128, 32};
    expected[p + "attn.a_proj.weight"] = {4, 32};
    expected[p + "attn.b_proj.weight"] = {4, 32};
    expected[p + "attn.g_proj.weight"] = {128, 32};
    expected[p + "attn.o_proj.weight"] = {32, 128};
    expected[p + "attn.q_conv1d.weight"] = {32, 1, 4};
    expected[p + "attn.k_conv1d.weight"] = {32, 1, 4};
    expected[p + "attn.v_conv1d.weight"] = {128, 1, 4};
    expected[p + "attn.A_log"] = {4};
    expected[p + "attn.dt_bias"] = {4};
    expected[p + "attn.D"] = {2};
    expected[p + "attn.decay"] = {2};
    expected[p + "attn.o_norm.weight"] = {32};
    expected[p + "mlp_norm.weight"] = {32};
    expected[p + "mlp.gate_proj.weight"] = {256, 32};
    expected[p + "mlp.up_proj.weight"] = {256, 32};
    expected[p + "mlp.down_proj.weight"] = {32, 256};
  }
  EXPECT_EQ(parameter_shapes(*lm), expected);
}

TEST(CombaForCausalLM, OptionalPartsDisappearFromTheNames) {
  auto config = comba::testing::tiny_bare_config();
  config.num_hidden_layers = 1;
  CombaForCausalLM lm(config);
  const ShapeMap expected = {{"model.embeddings.weight", {64, 32}},
                             {"model.norm.weight", {32}},
                             {"model.layers.0.attn_norm.weight", {32}},
                             {"model.layers.0.attn.q_proj.weight", {32, 32}},
                             {"model.layers.0.attn.k_proj.weight", {32, 32}},
                             {"model.layers.0.attn.v_proj.weight", {32, 32}},
                             {"model.layers.0.attn.a_proj.weight", {2, 32}},
                             {"model.layers.0.attn.b_proj.weight", {2, 32}},
                             {"model.layers.0.attn.o_proj.weight", {32, 32}},
                             {"model.layers.0.attn.A_log", {2}},
                             {"model.layers.0.attn.dt_bias", {2}},
                             {"model.layers.0.attn.o_norm.weight", {16}},
                             {"model.layers.0.mlp_norm.weight", {32}},
                             {"model.layers.0.mlp.gate_proj.weight", {64, 32}},
                             {"model.layers.0.mlp.up_proj.weight", {64, 32}},
                             {"model.layers.0.mlp.down_proj.weight", {32, 64}}};
  EXPECT_EQ(parameter_shapes(*lm), expected);
  // Tied: the logits use the embedding matrix.
  EXPECT_TRUE(lm->output_weight().is_same(lm->model->embeddings->weight));
}

TEST(CombaForCausalLM, InitialisationFollowsSpec) {
  auto config = tiny_config();
  config.hidden_size = 64;
  config.num_heads = 4;
  config.num_v_heads = 8;
  config.correction_factor = 0.25;
  config.vocab_size = 512;
  torch::manual_seed(0);
  CombaForCausalLM lm(config);
  const auto params = lm->named_parameters();
  const auto std_of = [&](const std::string& name) { return params[name].std().item<double>(); };
  EXPECT_NEAR(std_of("model.embeddings.weight"), 0.02, 0.002);
  EXPECT_NEAR(std_of("lm_head.weight"), 0.02, 0.002);
  EXPECT_NEAR(std_of("model.layers.0.attn.v_proj.weight"), 0.02, 0.003);
  EXPECT_NEAR(std_of("model.layers.1.mlp.down_proj.weight"), 0.02, 0.003);
  EXPECT_NEAR(params["model.layers.0.attn.q_proj.weight"].mean().item<double>(), 0.0, 0.003);
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".attn.";
    const auto A = params[p + "A_log"].exp();
    EXPECT_TRUE((A > 0).all().item<bool>() && (A < 16).all().item<bool>());
    const auto dt = torch::softplus(params[p + "dt_bias"]);
    EXPECT_GE(dt.min().item<double>(), 1e-3 * (1 - 1e-4));
    EXPECT_LE(dt.max().item<double>(), 0.1 * (1 + 1e-4));
    EXPECT_TRUE(params[p + "D"].eq(0.25).all().item<bool>());
    EXPECT_TRUE(params[p + "decay"].eq(1.0).all().item<bool>());
    EXPECT_TRUE(params[p + "o_norm.weight"].eq(1.0).all().item<bool>());
    EXPECT_TRUE(params["model.layers." + std::to_string(i) + ".attn_norm.weight"].eq(1.0).all().item<bool>());
  }
}

TEST(CombaForCausalLM, WeightDecayRule) {
  for (const char* name : {"model.layers.0.attn.A_log", "model.layers.3.attn.dt_bias", "model.layers.0.attn.D",
                           "model.layers.0.attn.decay", "model.layers.0.attn_norm.weight",
                           "model.layers.0.mlp_norm.weight", "model.layers.1.attn.o_norm.weight", "model.norm.weight",
                           "model.layers.0.attn.q_conv1d.bias"}) {
    EXPECT_FALSE(takes_weight_decay(name)) << name;
  }
  for (const char* name : {"model.embeddings.weight", "lm_head.weight", "model.layers.0.attn.q_proj.weight",
                           "model.layers.0.attn.q_conv1d.weight", "model.layers.0.mlp.down_proj.weight",
                           "model.layers.0.attn.a_proj.weight"}) {
    EXPECT_TRUE(takes_weight_decay(name)) << name;
  }
  auto config = tiny_config();
  config.num_hidden_layers = 1;
  CombaForCausalLM lm(config);
  // A_log, dt_bias, D, decay, o_norm, attn_norm, mlp_norm, final norm.
  EXPECT_EQ(no_weight_decay_parameter_names(*lm).size(), 8u);
}

TEST(CombaForCausalLM, LossIsShiftedMeanCrossEntropyIgnoringMinus100) {
  torch::manual_seed(1);
  const auto logits = torch::randn({2, 5, 7}, torch::kDouble);
  auto labels = torch::randint(0, 7, {2, 5}, torch::kLong);
  labels[0][2] = kIgnoreIndex;
  labels[1][4] = kIgnoreIndex;
  labels[1][0] = kIgnoreIndex;  // position 0 is never a target: no effect
  double total = 0;
  int count = 0;
  const auto log_probs = logits.log_softmax(-1);
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t + 1 < 5; ++t) {
      const auto target = labels[b][t + 1].item<int64_t>();
      if (target == kIgnoreIndex) continue;
      total -= log_probs[b][t][target].item<double>();
      ++count;
    }
  }
  const auto loss = causal_lm_loss(logits.to(torch::kBFloat16).to(torch::kFloat), labels);
  EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  EXPECT_NEAR(loss.item<double>(), total / count, 0.02);
  EXPECT_NEAR(causal_lm_loss(logits, labels).item<double>(), total / count, 1e-5);
  EXPECT_EQ(causal_lm_loss(logits, torch::full({2, 5}, kIgnoreIndex)).item<double>(), 0.0);
}

TEST(CombaForCausalLM, CausalDensePackedAndPadded) {
  torch::manual_seed(2);
  CombaForCausalLM lm(tiny_config());
  expect_causal(lm, torch::randint(0, 64, {2, 70}, torch::kLong), {3, 64}, 20);
}

TEST(CombaForCausalLM, PaddedBatchEqualsEachSequenceAlone) {
  torch::manual_seed(3);
  CombaForCausalLM lm(tiny_config());
  lm->train();
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {2, 30}, torch::kLong);
  auto mask = torch::ones({2, 30}, torch::kLong);
  mask[1].slice(0, 0, 11).fill_(0);  // left padding
  const auto logits = lm(ids, LMInputs().attention_mask(mask)).logits;
  EXPECT_LT(rel_diff(logits[0], lm(ids.slice(0, 0, 1), LMInputs()).logits[0]), 1e-5);
  EXPECT_LT(rel_diff(logits[1].slice(0, 11), lm(ids[1].slice(0, 11).unsqueeze(0), LMInputs()).logits[0]), 1e-5);
  EXPECT_EQ(logits[1].slice(0, 0, 11).abs().max().item<float>(), 0.0f) << "padding positions give zero logits";
}

TEST(CombaForCausalLM, GradientsReachEveryParameter) {
  for (bool tied : {false, true}) {
    auto config = tiny_config();
    config.tie_word_embeddings = tied;
    config.num_v_heads = 4;
    torch::manual_seed(4);
    CombaForCausalLM lm(config);
    lm->train();
    const auto ids = torch::randint(0, 64, {2, 70}, torch::kLong);
    lm(ids, LMInputs().labels(ids)).loss.backward();
    for (const auto& item : lm->named_parameters()) {
      const auto& grad = item.value().grad();
      ASSERT_TRUE(grad.defined()) << item.key();
      EXPECT_TRUE(torch::isfinite(grad).all().item<bool>()) << item.key();
      EXPECT_GT(grad.abs().sum().item<double>(), 0.0) << item.key();
    }
  }
}

namespace {

std::map<std::string, torch::Tensor> loss_gradients(CombaForCausalLM& lm, const torch::Tensor& ids,
                                                    const LMInputs& inputs, bool autocast) {
  lm->zero_grad(/*set_to_none=*/true);
  if (autocast) {
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  const auto loss = lm->summed_next_token_loss(ids, inputs);
  if (autocast) {
    at::autocast::decrement_nesting();
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
  }
  loss.backward();  // outside the autocast scope, as in the trainer
  std::map<std::string, torch::Tensor> grads = {{"loss", loss.detach()}};
  for (const auto& item : lm->named_parameters()) grads[item.key()] = item.value().grad().clone();
  return grads;
}

// How many nodes of the graph behind `t` have this name (so that a test can tell that a
// path it compares was taken at all).
int64_t count_graph_nodes(const torch::Tensor& t, const std::string& name) {
  std::vector<torch::autograd::Node*> stack = {t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  int64_t count = 0;
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    count += node->name().find(name) != std::string::npos;
    for (const auto& edge : node->next_edges()) stack.push_back(edge.function.get());
  }
  return count;
}

}  // namespace

// Activation recompute (mixer branches or whole blocks) changes memory, not numbers: the loss and every
// parameter's gradient equal the plain model's (fp64: 1e-12; bf16 autocast: the recompute
// runs the same bf16 kernels on the same shapes, so within a bf16 roundoff), dense and
// packed.
TEST(CombaForCausalLM, GradientCheckpointingGivesTheSameLossAndGradients) {
  auto config = tiny_config();
  config.num_v_heads = 4;
  torch::manual_seed(8);
  CombaForCausalLM lm(config);
  lm->train();
  const auto ids = torch::randint(0, 64, {2, 70}, torch::kLong);
  const auto packed_ids = ids.reshape({1, 140});
  const auto cu = torch::tensor(std::vector<int64_t>{0, 9, 75, 140});
  struct Case {
    const char* name;
    torch::Dtype dtype;
    bool autocast;
    bool packed;
    double tolerance;
  };
  for (const Case& c : {Case{"fp64 dense", torch::kDouble, false, false, 1e-12},
                        Case{"fp64 packed", torch::kDouble, false, true, 1e-12},
                        Case{"bf16 autocast", torch::kFloat, true, false, dtype_epsilon(torch::kBFloat16)}}) {
    lm->to(c.dtype);
    const auto& input = c.packed ? packed_ids : ids;
    auto inputs = LMInputs().labels(input);
    if (c.packed) inputs.cu_seqlens(cu);
    using Recompute = CombaModelImpl::Recompute;
    lm->model->set_recompute(Recompute::kNone);
    const auto plain = loss_gradients(lm, input, inputs, c.autocast);
    for (const auto policy : {Recompute::kMixer, Recompute::kBlock}) {
      const char* policy_name = policy == Recompute::kMixer ? "mixer" : "block";
      lm->model->set_recompute(policy);
      const auto recomputed = loss_gradients(lm, input, inputs, c.autocast);
      EXPECT_EQ(count_graph_nodes(lm->summed_next_token_loss(input, inputs), "CheckpointFunction"),
                config.num_hidden_layers)
          << policy_name;
      for (const auto& [name, grad] : plain) {
        EXPECT_LE(rel_diff(recomputed.at(name), grad), c.tolerance) << c.name << " " << policy_name << " " << name;
      }
    }
    lm->model->set_recompute(Recompute::kNone);
  }
}

TEST(CombaForCausalLM, TinyModelOverfitsAFixedBatch) {
  torch::manual_seed(5);
  CombaForCausalLM lm(tiny_config());
  lm->train();
  const auto ids = torch::randint(0, 64, {2, 24}, torch::kLong);
  torch::optim::Adam optimizer(lm->parameters(), torch::optim::AdamOptions(1e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    optimizer.zero_grad();
    const auto loss = lm(ids, LMInputs().labels(ids)).loss;
    loss.backward();
    optimizer.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_NEAR(first, std::log(64.0), 0.3);
  EXPECT_LT(last, 0.1 * first) << "first " << first << " last " << last;
}

TEST(CombaForCausalLM, Bf16WeightsAndBf16AutocastRunAndStayClose) {
  torch::manual_seed(6);
  auto config = tiny_config();
  config.num_v_heads = 4;
  CombaForCausalLM lm(config);
  lm->train();
  const auto ids = torch::randint(0, 64, {2, 70}, torch::kLong);
  const auto reference = lm(ids, LMInputs().labels(ids));
  {
    // fp32 weights under CPU bf16 autocast: linears run in bf16, the rest must cope.
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::increment_nesting();
    const auto out = lm(ids, LMInputs().labels(ids));
    at::autocast::decrement_nesting();
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
    EXPECT_EQ(out.logits.scalar_type(), torch::kBFloat16);
    EXPECT_LT(rel_diff(out.logits, reference.logits), 0.05);
    out.loss.backward();
    EXPECT_TRUE(lm->model->layers->at<CombaBlockImpl>(0).attn->decay.grad().defined());
  }
  lm->to(torch::kBFloat16);
  const auto out = lm(ids, LMInputs().labels(ids));
  EXPECT_EQ(out.logits.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(out.loss.scalar_type(), torch::kFloat);
  EXPECT_LT(rel_diff(out.logits, reference.logits), 0.05);
  EXPECT_NEAR(out.loss.item<double>(), reference.loss.item<double>(), 0.02);
}
