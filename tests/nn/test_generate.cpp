// Generation and the model-level decode cache (CPU): cached decoding equals full forward
// passes, greedy equals a step-by-step argmax, left-padded batches equal each prompt alone,
// EOS handling, and the sampling rules (temperature / top-k / top-p) on fixed logits.
#include "nn_test_utils.h"

#include <set>
#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;

namespace {

CombaForCausalLM make_lm(uint64_t seed, bool tied = false) {
  torch::manual_seed(seed);
  auto config = tiny_config();
  config.num_v_heads = 4;
  config.tie_word_embeddings = tied;
  CombaForCausalLM lm(config);
  lm->eval();
  return lm;
}

// Independent of the cache: re-run the whole sequence each step and take the argmax.
torch::Tensor stepwise_argmax(CombaForCausalLM& lm, torch::Tensor ids, int64_t steps) {
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < steps; ++i) {
    const auto next = lm(ids, LMInputs()).logits.select(1, -1).argmax(-1);
    ids = torch::cat({ids, next.unsqueeze(1)}, 1);
  }
  return ids;
}

}  // namespace

TEST(Generate, CachedDecodeLogitsEqualFullForward) {
  auto lm = make_lm(1);
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {2, 75}, torch::kLong);
  const auto full = lm(ids, LMInputs()).logits;  // chunk path (T > 64)
  auto cache = lm->make_cache();
  std::vector<torch::Tensor> parts = {lm(ids.slice(1, 0, 66), LMInputs().cache(&cache)).logits};
  for (int64_t t = 66; t < 75; ++t) parts.push_back(lm(ids.slice(1, t, t + 1), LMInputs().cache(&cache)).logits);
  EXPECT_LT(rel_diff(torch::cat(parts, 1), full), 1e-5);
  EXPECT_EQ(cache.seen_tokens(), 75);
}

TEST(Generate, CacheSelectKeepsTheChosenRows) {
  auto lm = make_lm(6);
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {3, 10}, torch::kLong);
  auto cache = lm->make_cache();
  lm(ids, LMInputs().cache(&cache));
  cache.select(torch::tensor(std::vector<int64_t>{2, 0}));
  const auto next = torch::randint(0, 64, {2, 1}, torch::kLong);
  const auto stepped = lm(next, LMInputs().cache(&cache)).logits;
  const auto rows = torch::tensor(std::vector<int64_t>{2, 0});
  const auto full = lm(torch::cat({ids.index_select(0, rows), next}, 1), LMInputs()).logits.select(1, -1);
  EXPECT_LT(rel_diff(stepped.select(1, 0), full), 1e-5);
}

TEST(Generate, GreedyIsDeterministicAndEqualsStepwiseArgmax) {
  for (bool tied : {false, true}) {
    auto lm = make_lm(2, tied);
    for (int64_t prompt_len : {5, 70}) {
      const auto prompt = torch::randint(0, 64, {2, prompt_len}, torch::kLong);
      const auto options = GenerationOptions().max_new_tokens(8);
      const auto first = generate(lm, prompt, {}, options);
      const auto second = generate(lm, prompt, {}, options);
      EXPECT_EQ(first.steps, 8);
      EXPECT_TRUE(first.sequences.equal(second.sequences));
      EXPECT_TRUE(first.sequences.equal(stepwise_argmax(lm, prompt, 8))) << prompt_len << " tied " << tied;
      EXPECT_TRUE(first.new_tokens.equal(first.sequences.slice(1, prompt_len)));
    }
  }
}

TEST(Generate, LeftPaddedBatchEqualsEachPromptAlone) {
  auto lm = make_lm(3);
  const std::vector<int64_t> lengths = {12, 3, 70};
  const int64_t T = 70;
  auto ids = torch::zeros({3, T}, torch::kLong), mask = torch::zeros({3, T}, torch::kLong);
  std::vector<torch::Tensor> prompts;
  for (int64_t b = 0; b < 3; ++b) {
    prompts.push_back(torch::randint(1, 64, {1, lengths[b]}, torch::kLong));
    ids[b].slice(0, T - lengths[b]).copy_(prompts.back()[0]);
    mask[b].slice(0, T - lengths[b]).fill_(1);
  }
  const auto options = GenerationOptions().max_new_tokens(6);
  const auto batched = generate(lm, ids, mask, options);
  for (int64_t b = 0; b < 3; ++b) {
    const auto alone = generate(lm, prompts[b], {}, options);
    EXPECT_TRUE(batched.new_tokens[b].equal(alone.new_tokens[0])) << b;
  }
}

TEST(Generate, StopsAtEosAndPadsFinishedRows) {
  auto lm = make_lm(4);
  const auto prompt = torch::randint(0, 64, {2, 6}, torch::kLong);
  const auto free_run = generate(lm, prompt, {}, GenerationOptions().max_new_tokens(6));
  // Take row 0's third token as EOS: row 0 stops there and is padded afterwards.
  const int64_t eos = free_run.new_tokens[0][2].item<int64_t>();
  const auto run = generate(lm, prompt, {}, GenerationOptions().max_new_tokens(6).eos_token_id(eos).pad_token_id(63));
  const auto row0 = run.new_tokens[0];
  int64_t first_eos = -1;
  for (int64_t i = 0; i < row0.size(0); ++i) {
    if (row0[i].item<int64_t>() == eos) { first_eos = i; break; }
  }
  ASSERT_GE(first_eos, 0);
  ASSERT_LE(first_eos, 2);
  EXPECT_TRUE(row0.slice(0, 0, first_eos + 1).equal(free_run.new_tokens[0].slice(0, 0, first_eos + 1)));
  EXPECT_TRUE(row0.slice(0, first_eos + 1).eq(63).all().item<bool>());
  // Both rows finished -> generation stops before max_new_tokens.
  const auto both = generate(lm, prompt.slice(0, 0, 1), {},
                             GenerationOptions().max_new_tokens(6).eos_token_id(free_run.new_tokens[0][0].item<int64_t>()));
  EXPECT_EQ(both.steps, 1);
}

TEST(Generate, SamplingRules) {
  // Probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (after temperature 1).
  const auto logits = torch::tensor({std::log(0.5), std::log(0.25), std::log(0.125), std::log(0.0625), std::log(0.0625)})
                          .to(torch::kFloat)
                          .unsqueeze(0)
                          .repeat({400, 1});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto sample = [&](GenerationOptions o) { return select_next_tokens(logits, o.do_sample(true).generator(gen)); };
  // top_k = 1 and a tiny top_p both reduce to argmax.
  EXPECT_TRUE(sample(GenerationOptions().top_k(1)).eq(0).all().item<bool>());
  EXPECT_TRUE(sample(GenerationOptions().top_p(0.4)).eq(0).all().item<bool>());
  // top_p = 0.7: {0, 1} hold 0.75 >= 0.7, token 2 is out.
  EXPECT_TRUE(sample(GenerationOptions().top_p(0.7)).lt(2).all().item<bool>());
  // top_k = 3: only the three best.
  const auto top3 = sample(GenerationOptions().top_k(3));
  EXPECT_TRUE(top3.lt(3).all().item<bool>());
  EXPECT_TRUE(top3.eq(2).any().item<bool>());
  // Plain sampling: frequencies follow the probabilities (400 draws, loose bounds).
  const auto plain = sample(GenerationOptions());
  EXPECT_NEAR(plain.eq(0).to(torch::kFloat).mean().item<double>(), 0.5, 0.1);
  // A very low temperature is greedy; a seeded generator repeats itself.
  EXPECT_TRUE(sample(GenerationOptions().temperature(1e-3)).eq(0).all().item<bool>());
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(11), g2 = at::make_generator<at::CPUGeneratorImpl>(11);
  EXPECT_TRUE(select_next_tokens(logits, GenerationOptions().do_sample(true).generator(g1))
                  .equal(select_next_tokens(logits, GenerationOptions().do_sample(true).generator(g2))));
  // Greedy ignores the sampling knobs.
  EXPECT_TRUE(select_next_tokens(logits, GenerationOptions().top_k(3)).eq(0).all().item<bool>());
}

TEST(Generate, RejectsRightPadding) {
  auto lm = make_lm(5);
  auto mask = torch::ones({1, 4}, torch::kLong);
  mask[0][3] = 0;
  EXPECT_THROW(generate(lm, torch::zeros({1, 4}, torch::kLong), mask), c10::Error);
}

namespace {

// Every cache tensor's address, layer by layer (undefined: nullptr).
std::vector<const void*> cache_addresses(const CombaCache& cache) {
  std::vector<const void*> out;
  for (int64_t i = 0; i < cache.num_layers(); ++i) {
    const auto& s = cache.layer(i);
    for (const auto* t : {&s.conv_q, &s.conv_k, &s.conv_v, &s.recurrent}) {
      out.push_back(t->defined() ? t->data_ptr() : nullptr);
    }
  }
  return out;
}

}  // namespace

TEST(Generate, DecodeStepsUpdateTheCacheInPlace) {
  // What lets generate replay a CUDA graph of the step: after the prefill, every step reads
  // and writes the same cache storage, and still equals the full forward.
  for (bool conv : {true, false}) {
    torch::manual_seed(8);
    auto config = tiny_config();
    config.num_v_heads = 4;
    config.use_short_conv = conv;
    CombaForCausalLM lm(config);
    lm->eval();
    torch::NoGradGuard no_grad;
    const auto ids = torch::randint(0, 64, {2, 14}, torch::kLong);
    const auto full = lm(ids, LMInputs()).logits;
    auto cache = lm->make_cache();
    std::vector<torch::Tensor> parts = {lm(ids.slice(1, 0, 10), LMInputs().cache(&cache)).logits};
    const auto before = cache_addresses(cache);
    for (int64_t t = 10; t < 14; ++t) {
      parts.push_back(lm(ids.slice(1, t, t + 1), LMInputs().cache(&cache)).logits);
      EXPECT_EQ(cache_addresses(cache), before) << "step " << t << " conv " << conv;
    }
    EXPECT_LT(rel_diff(torch::cat(parts, 1), full), 1e-5) << conv;
    EXPECT_EQ(cache.seen_tokens(), 14);
  }
}

TEST(Generate, CudaGraphOptionIsIgnoredOnTheCpu) {
  auto lm = make_lm(9);
  const auto prompt = torch::randint(0, 64, {2, 6}, torch::kLong);
  const auto on = generate(lm, prompt, {}, GenerationOptions().max_new_tokens(6).cuda_graph(true).output_logits(true));
  const auto off = generate(lm, prompt, {}, GenerationOptions().max_new_tokens(6).cuda_graph(false).output_logits(true));
  EXPECT_TRUE(on.sequences.equal(off.sequences));
  EXPECT_TRUE(on.logits.equal(off.logits));
  EXPECT_FALSE(on.used_cuda_graph);
  EXPECT_EQ(on.logits.sizes(), torch::IntArrayRef({2, 6, 64}));
}

TEST(Generate, OutputLogitsAreTheLogitsEachTokenWasChosenFrom) {
  auto lm = make_lm(10);
  const auto prompt = torch::randint(0, 64, {2, 5}, torch::kLong);
  const auto out = generate(lm, prompt, {}, GenerationOptions().max_new_tokens(4).output_logits(true));
  EXPECT_TRUE(out.logits.argmax(-1).equal(out.new_tokens));
  torch::NoGradGuard no_grad;
  const auto full = lm(out.sequences.slice(1, 0, 8), LMInputs()).logits.slice(1, 4);  // positions 4..7 predict 5..8
  EXPECT_LT(rel_diff(out.logits, full), 1e-5);
  EXPECT_FALSE(generate(lm, prompt, {}, GenerationOptions().max_new_tokens(2)).logits.defined());
}

TEST(Generate, Bf16DecodeStateStaysBf16InPlaceAndCloseToFp32) {
  auto lm = make_lm(11);
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 64, {2, 16}, torch::kLong);
  const auto full = lm(ids, LMInputs()).logits;
  auto cache = lm->make_cache();
  std::vector<torch::Tensor> parts = {lm(ids.slice(1, 0, 8), LMInputs().cache(&cache)).logits};
  for (int64_t i = 0; i < cache.num_layers(); ++i) {
    auto& s = cache.layer(i).recurrent;
    s = s.to(torch::kBFloat16);
  }
  const auto before = cache_addresses(cache);
  for (int64_t t = 8; t < 16; ++t) parts.push_back(lm(ids.slice(1, t, t + 1), LMInputs().cache(&cache)).logits);
  EXPECT_EQ(cache_addresses(cache), before);
  for (int64_t i = 0; i < cache.num_layers(); ++i) EXPECT_EQ(cache.layer(i).recurrent.scalar_type(), torch::kBFloat16);
  // bf16 rounding of the state (3.9e-3 relative) reaches the logits damped by the layers.
  const double err = rel_diff(torch::cat(parts, 1), full);
  EXPECT_LT(err, 2e-2);
  // A multi-token call on a bf16 state runs the operator in fp32 and keeps the cache's dtype.
  lm(ids.slice(1, 0, 3), LMInputs().cache(&cache));
  EXPECT_EQ(cache.layer(0).recurrent.scalar_type(), torch::kBFloat16);
  const auto gen = generate(lm, ids.slice(1, 0, 8), {}, GenerationOptions().max_new_tokens(4).bf16_decode_state(true));
  EXPECT_EQ(gen.steps, 4);
}
