// Hybrid models (fla's `attn` config, issue 20) on the CPU: validation naming the key path;
// fla's parameter names (an attention layer's mixer is `attn` too); count_parameters
// against the modules; fla's initialisation; causality; decode with a CombaCache (prefill,
// a multi-token chunk, then one token a step, past the sliding window) equal to the full
// forward in fp64; packed sequences and left padding equal each sequence alone; the
// recompute policies; generate(). The attention layer itself is checked against an fp64
// reference in test_attention.cpp.
#include "nn_test_utils.h"

#include "comba/nn/model_size.h"
#include "support/expect_error.h"

#include <limits>
#include <map>
#include <string>
#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;
using comba::testing::tiny_hybrid_config;

namespace {

const auto expect_error_mentioning = comba::testing::expect_error_mentioning<c10::Error>;

CombaForCausalLM make_hybrid(uint64_t seed, torch::Dtype dtype = torch::kFloat) {
  torch::manual_seed(seed);
  CombaForCausalLM lm(tiny_hybrid_config());
  // Larger weights than the 0.02 initialisation so that attention is far from uniform
  // and every layer visibly changes the logits.
  torch::NoGradGuard no_grad;
  for (auto& p : lm->parameters()) {
    if (p.dim() == 2) p.normal_(0.0, 0.3);
  }
  lm->to(dtype);
  lm->eval();
  return lm;
}

int64_t numel_of(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST(HybridConfig, ValidateNamesTheKeyPath) {
  const auto with = [](auto&& change) {
    auto c = tiny_hybrid_config();
    change(c);
    return [c] { c.validate(); };
  };
  EXPECT_NO_THROW(tiny_hybrid_config().validate());
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[1].layers = {7}; }),
                          "attn[1].layers: layer 7 out of range [0, 4)");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[0].layers = {-1}; }),
                          "attn[0].layers: layer -1 out of range [0, 4)");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[0].layers = {1, 2, 1}; }),
                          "attn[0].layers: duplicate layer 1");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[1].layers = {3, 1}; }),
                          "attn[1].layers: layer 1 is already assigned by attn[0]");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[0].num_heads = 0; }), "attn[0].num_heads: expected > 0");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[0].num_kv_heads = 3; }),
                          "attn[0].num_kv_heads: expected a divisor of num_heads = 4, got 3");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[1].num_heads = c.attn[1].num_kv_heads = 3; }),
                          "attn[1].num_heads: expected a divisor of hidden_size = 32, got 3");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[1].num_heads = c.attn[1].num_kv_heads = 32; }),
                          "attn[1].num_heads: expected an even head dim");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[1].window_size = -2; }), "attn[1].window_size");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[1].rope_theta = 0.0; }), "attn[1].rope_theta");
  expect_error_mentioning(with([](CombaConfig& c) { c.attn[1].rope_theta = std::numeric_limits<double>::infinity(); }),
                          "attn[1].rope_theta: expected positive and finite");
  // One object (fla's dict form) is named `attn`, without an index.
  expect_error_mentioning(with([](CombaConfig& c) {
                            c.attn.resize(1);
                            c.attn_is_list = false;
                            c.attn[0].layers = {4};
                          }),
                          "attn.layers: layer 4 out of range [0, 4)");
  auto copy = tiny_hybrid_config();
  EXPECT_EQ(copy, tiny_hybrid_config());
  copy.attn[1].window_size = 6;
  EXPECT_NE(copy, tiny_hybrid_config());
}

TEST(HybridModel, AttentionLayersAreNamedAttnLikeFla) {
  CombaForCausalLM lm(tiny_hybrid_config());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : lm->named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  // Layer 1: 4 heads of 8, 2 key/value heads (k/v 16 wide), qkv biases; o_proj no bias.
  const std::map<std::string, std::vector<int64_t>> layer1 = {
      {"model.layers.1.attn.q_proj.weight", {32, 32}}, {"model.layers.1.attn.q_proj.bias", {32}},
      {"model.layers.1.attn.k_proj.weight", {16, 32}}, {"model.layers.1.attn.k_proj.bias", {16}},
      {"model.layers.1.attn.v_proj.weight", {16, 32}}, {"model.layers.1.attn.v_proj.bias", {16}},
      {"model.layers.1.attn.o_proj.weight", {32, 32}}};
  for (const auto& [name, shape] : layer1) {
    ASSERT_TRUE(shapes.count(name)) << name;
    EXPECT_EQ(shapes.at(name), shape) << name;
  }
  EXPECT_EQ(shapes.at("model.layers.3.attn.k_proj.weight"), (std::vector<int64_t>{32, 32}));
  for (const char* absent : {"model.layers.1.attn.o_proj.bias", "model.layers.3.attn.q_proj.bias",
                             "model.layers.1.attn.A_log", "model.layers.1.attn.q_conv1d.weight"}) {
    EXPECT_EQ(shapes.count(absent), 0u) << absent;
  }
  // Comba layers and the rest of every block are unchanged.
  for (const char* present : {"model.layers.0.attn.A_log", "model.layers.2.attn.q_conv1d.weight",
                              "model.layers.1.attn_norm.weight", "model.layers.1.mlp.down_proj.weight",
                              "model.layers.3.mlp_norm.weight"}) {
    EXPECT_EQ(shapes.count(present), 1u) << present;
  }
  int attention_params = 0;
  for (const auto& [name, shape] : shapes) attention_params += name.rfind("model.layers.1.attn.", 0) == 0;
  EXPECT_EQ(attention_params, 7);
  const auto& blocks = *lm->model->layers;
  EXPECT_FALSE(blocks[0]->as<CombaBlockImpl>()->is_attention());
  EXPECT_TRUE(blocks[1]->as<CombaBlockImpl>()->is_attention());
}

TEST(HybridModel, CountParametersAgreesWithTheModules) {
  for (bool tied : {false, true}) {
    auto config = tiny_hybrid_config();
    config.tie_word_embeddings = tied;
    CombaForCausalLM lm(config);
    const ParameterCount count = count_parameters(config);
    EXPECT_EQ(count.total(), numel_of(*lm));
    EXPECT_EQ(count.model(), numel_of(*lm->model));
    EXPECT_EQ(count.comba_layers, 2);
    EXPECT_EQ(count.attention_layers, 2);
    // Closed forms: layer 1 q, o 32x32, k, v 16x32, biases 32 + 16 + 16; layer 3 4 x 32x32.
    EXPECT_EQ(count.softmax_attention, (2 * 32 * 32 + 2 * 16 * 32 + 64) + 4 * 32 * 32);
    EXPECT_EQ(count.softmax_attention, numel_of(*lm->model->layers[1]->as<CombaBlockImpl>()->attention) +
                                           numel_of(*lm->model->layers[3]->as<CombaBlockImpl>()->attention));
    EXPECT_EQ(count.per_layer, numel_of(*lm->model->layers[0]));
  }
}

TEST(HybridModel, AttentionInitialisationFollowsFla) {
  auto config = tiny_hybrid_config();
  config.hidden_size = 256;  // enough samples for the std to be measured within 10%
  config.attn[0].num_heads = 8;
  config.attn[0].num_kv_heads = 8;
  config.attn[1].num_heads = 2;
  torch::manual_seed(5);
  CombaForCausalLM lm(config);
  const auto& attention = lm->model->layers[1]->as<CombaBlockImpl>()->attention;
  for (const auto& linear : {attention->q_proj, attention->k_proj, attention->v_proj, attention->o_proj}) {
    const auto w = linear->weight.to(torch::kDouble);
    EXPECT_NEAR(w.std().item<double>(), 0.02, 0.002);  // o_proj too: no prenorm rescaling
    EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.001);
  }
  for (const auto& linear : {attention->q_proj, attention->k_proj, attention->v_proj}) {
    EXPECT_EQ(linear->bias.abs().max().item<double>(), 0.0);
  }
}

TEST(HybridModel, Causal) {
  auto lm = make_hybrid(1);
  expect_causal(lm, torch::randint(0, 64, {2, 20}, torch::kLong), {2, 9}, 1);
}

// The decode cache (Comba states and the attention layers' keys and values) continues
// the sequence exactly: fp64 logits of a prefill, a 3-token chunk and single tokens equal
// the full forward's, also past the 5-token window of layer 3 and for a batch of 2.
TEST(HybridModel, CachedDecodeEqualsFullForwardFp64) {
  auto lm = make_hybrid(2, torch::kDouble);
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {2, 17}, torch::kLong);
  const auto full = lm(ids, LMInputs()).logits;
  auto cache = lm->make_cache();
  std::vector<torch::Tensor> parts = {lm(ids.slice(1, 0, 7), LMInputs().cache(&cache)).logits,
                                      lm(ids.slice(1, 7, 10), LMInputs().cache(&cache)).logits};
  for (int64_t t = 10; t < 17; ++t) parts.push_back(lm(ids.slice(1, t, t + 1), LMInputs().cache(&cache)).logits);
  EXPECT_LT(rel_diff(torch::cat(parts, 1), full), 1e-10);
  EXPECT_EQ(cache.seen_tokens(), 17);
  // The attention layers hold keys: layer 1 all 17, layer 3 at least its window.
  EXPECT_TRUE(cache.layer(1).key.defined());
  EXPECT_TRUE(cache.layer(3).key.defined());
  EXPECT_FALSE(cache.layer(1).recurrent.defined());
  EXPECT_TRUE(cache.layer(0).recurrent.defined());
}

TEST(HybridModel, PackedSequencesEqualEachSequenceAlone) {
  auto lm = make_hybrid(3, torch::kDouble);
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> bounds = {0, 7, 8, 20};
  const auto ids = torch::randint(0, 64, {1, 20}, torch::kLong);
  for (bool train : {true, false}) {
    lm->train(train);
    const auto packed = lm(ids, LMInputs().cu_seqlens(torch::tensor(bounds))).logits;
    for (size_t s = 0; s + 1 < bounds.size(); ++s) {
      const auto alone = lm(ids.slice(1, bounds[s], bounds[s + 1]), LMInputs()).logits;
      EXPECT_LT(rel_diff(packed.slice(1, bounds[s], bounds[s + 1]), alone), 1e-10) << s;
    }
  }
}

TEST(HybridModel, LeftPaddedBatchEqualsEachRowAlone) {
  auto lm = make_hybrid(4, torch::kDouble);
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {2, 14}, torch::kLong);
  auto mask = torch::ones({2, 14}, torch::kLong);
  mask[1].slice(0, 0, 5).fill_(0);
  const auto logits = lm(ids, LMInputs().attention_mask(mask)).logits;
  EXPECT_LT(rel_diff(logits[0], lm(ids.slice(0, 0, 1), LMInputs()).logits[0]), 1e-10);
  EXPECT_LT(rel_diff(logits[1].slice(0, 5), lm(ids[1].slice(0, 5).unsqueeze(0), LMInputs()).logits[0]), 1e-10);
  EXPECT_EQ(logits[1].slice(0, 0, 5).abs().max().item<double>(), 0.0) << "padding positions give zero logits";
}

TEST(HybridModel, GradientsReachEveryParameterAndRecomputeAgrees) {
  auto lm = make_hybrid(5, torch::kDouble);
  lm->train();
  const auto ids = torch::randint(0, 64, {2, 12}, torch::kLong);
  const auto run = [&] {
    lm->zero_grad(/*set_to_none=*/true);
    const auto loss = lm(ids, LMInputs().labels(ids)).loss;
    loss.backward();
    std::map<std::string, torch::Tensor> grads = {{"loss", loss.detach()}};
    for (const auto& item : lm->named_parameters()) {
      EXPECT_TRUE(item.value().grad().defined()) << item.key();
      if (!item.value().grad().defined()) continue;
      EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
      grads[item.key()] = item.value().grad().clone();
    }
    return grads;
  };
  using Recompute = CombaModelImpl::Recompute;
  const auto plain = run();
  for (const auto policy : {Recompute::kChunkStates, Recompute::kChunkWorkspace, Recompute::kMixer, Recompute::kBlock}) {
    lm->model->set_recompute(policy);
    const auto again = run();
    for (const auto& [name, grad] : plain) EXPECT_LE(rel_diff(again.at(name), grad), 1e-12) << name;
  }
  lm->model->set_recompute(Recompute::kNone);
}

TEST(HybridModel, GenerateEqualsStepwiseArgmaxAndLeftPaddingEachPromptAlone) {
  auto lm = make_hybrid(6);
  const auto prompt = torch::randint(0, 64, {2, 7}, torch::kLong);
  const auto options = GenerationOptions().max_new_tokens(6);
  const auto out = generate(lm, prompt, {}, options);
  ASSERT_EQ(out.steps, 6);
  torch::Tensor ids = prompt;
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 6; ++i) {
      const auto next = lm(ids, LMInputs()).logits.select(1, -1).argmax(-1);
      ids = torch::cat({ids, next.unsqueeze(1)}, 1);
    }
  }
  EXPECT_TRUE(out.sequences.equal(ids));

  const std::vector<int64_t> lengths = {9, 3};
  const int64_t T = 9;
  auto padded = torch::zeros({2, T}, torch::kLong), mask = torch::zeros({2, T}, torch::kLong);
  std::vector<torch::Tensor> prompts;
  for (int64_t b = 0; b < 2; ++b) {
    prompts.push_back(torch::randint(1, 64, {1, lengths[b]}, torch::kLong));
    padded[b].slice(0, T - lengths[b]).copy_(prompts.back()[0]);
    mask[b].slice(0, T - lengths[b]).fill_(1);
  }
  const auto batched = generate(lm, padded, mask, options);
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_TRUE(batched.new_tokens[b].equal(generate(lm, prompts[b], {}, options).new_tokens[0])) << b;
  }
}
