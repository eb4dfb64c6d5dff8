// Optimizer groups, clipping and gradient accumulation against independent references:
// - parameter groups: which names decay, every hyper-parameter read back per group;
// - clip_gradients vs torch::nn::utils::clip_grad_norm_ (norm and scaled gradients);
// - N micro-batches of B accumulate to the gradient of one batch of N * B (fp64, 1e-12);
// - FusedAdamW (ATen's fused kernel) steps like LibTorch's AdamW, state included.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "comba/nn/causal_lm.h"
#include "comba/train/data/batch.h"
#include "comba/train/data/data_source.h"
#include "comba/train/fused_adamw.h"
#include "comba/train/optimizer.h"
#include "comba/train/train_step.h"
#include "micro_batches.h"
#include "support/tiny_config.h"
#include "support/require.h"

namespace comba::train {
namespace {

bool has(const std::vector<std::string>& v, const std::string& name) {
  return std::find(v.begin(), v.end(), name) != v.end();
}

TEST(ParameterGroups, NoDecayForDynamicsNormsBiasesAndEmbeddings) {
  torch::manual_seed(0);
  nn::CombaForCausalLM model(comba::testing::tiny_train_config());
  const ParameterSplit split = split_parameters(*model, /*decay_embeddings=*/false);
  for (const char* name : {"model.layers.0.attn.A_log", "model.layers.0.attn.dt_bias",
                           "model.layers.1.attn.D", "model.layers.0.attn_norm.weight",
                           "model.norm.weight", "model.embeddings.weight", "lm_head.weight"}) {
    EXPECT_TRUE(has(split.no_decay, name)) << name;
  }
  for (const char* name : {"model.layers.0.attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"}) {
    EXPECT_TRUE(has(split.decay, name)) << name;
  }
  for (const auto& name : split.no_decay) {
    EXPECT_TRUE(name.find("norm") != std::string::npos || name.find("A_log") != std::string::npos ||
                name.find("dt_bias") != std::string::npos || name.find(".D") != std::string::npos ||
                name.find("decay") != std::string::npos || name.find("bias") != std::string::npos ||
                is_embedding_parameter(name))
        << name;
  }
  const ParameterSplit with = split_parameters(*model, /*decay_embeddings=*/true);
  EXPECT_TRUE(has(with.decay, "model.embeddings.weight"));
  EXPECT_TRUE(has(with.decay, "lm_head.weight"));
  EXPECT_EQ(split.decay.size() + split.no_decay.size(), model->parameters().size());
}

TEST(ParameterGroups, EveryHyperParameterSetPerGroup) {
  torch::manual_seed(0);
  nn::CombaForCausalLM model(comba::testing::tiny_train_config());
  OptimizerOptions o;
  o.lr = 0.0123;
  o.weight_decay = 0.07;
  o.beta1 = 0.8;
  o.beta2 = 0.9;
  o.eps = 1e-7;
  const auto opt = make_optimizer(*model, o);
  ASSERT_EQ(opt->param_groups().size(), 2u);
  const ParameterSplit split = split_parameters(*model, false);
  EXPECT_EQ(opt->param_groups()[0].params().size(), split.decay.size());
  EXPECT_EQ(opt->param_groups()[1].params().size(), split.no_decay.size());
  for (size_t g = 0; g < 2; ++g) {
    const auto& go = static_cast<const torch::optim::AdamWOptions&>(opt->param_groups()[g].options());
    EXPECT_DOUBLE_EQ(go.lr(), 0.0123);
    EXPECT_DOUBLE_EQ(std::get<0>(go.betas()), 0.8);
    EXPECT_DOUBLE_EQ(std::get<1>(go.betas()), 0.9);
    EXPECT_DOUBLE_EQ(go.eps(), 1e-7);
    EXPECT_DOUBLE_EQ(go.weight_decay(), g == 0 ? 0.07 : 0.0);
  }
  set_learning_rate(*opt, 0.5);
  for (const auto& group : opt->param_groups()) EXPECT_DOUBLE_EQ(group.options().get_lr(), 0.5);
}

// Five steps with changing gradients and learning rates, two groups (one without weight
// decay), one parameter that gets no gradient at first: parameters and moments of the
// fused step equal LibTorch's AdamW in fp64. On the GPU too when there is one.
void check_fused_adamw(const torch::Device& device) {
  torch::manual_seed(3);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).device(device);
  std::vector<torch::Tensor> a, b;
  for (const auto& shape : std::vector<std::vector<int64_t>>{{7, 5}, {5}, {3, 2, 4}}) {
    a.push_back(torch::randn(shape, opts).requires_grad_());
    b.push_back(a.back().detach().clone().requires_grad_());
  }
  auto groups = [](const std::vector<torch::Tensor>& p) {
    std::vector<torch::optim::OptimizerParamGroup> g;
    const auto opt = [](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(wd));
    };
    g.emplace_back(std::vector<torch::Tensor>{p[0], p[2]}, opt(0.1));
    g.emplace_back(std::vector<torch::Tensor>{p[1]}, opt(0.0));
    return g;
  };
  torch::optim::AdamW reference(groups(a), torch::optim::AdamWOptions(1e-2));
  FusedAdamW fused(groups(b), torch::optim::AdamWOptions(1e-2), /*fuse_on_cpu=*/true);
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (step < 2 && i == 2) continue;  // no gradient yet: its state starts later
      const auto grad = torch::randn_like(a[i]);
      a[i].mutable_grad() = grad.clone();
      b[i].mutable_grad() = grad.clone();
    }
    for (auto* opt : std::initializer_list<torch::optim::Optimizer*>{&reference, &fused}) {
      opt->param_groups()[0].options().set_lr(1e-2 / (step + 1));
      opt->param_groups()[1].options().set_lr(2e-2 / (step + 1));
    }
    reference.step();
    fused.step();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-12, 1e-14)) << "param " << i << " step " << step;
    }
  }
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& sa = static_cast<torch::optim::AdamWParamState&>(
        *reference.state().at(a[i].unsafeGetTensorImpl()));
    const auto& sb = static_cast<torch::optim::AdamWParamState&>(
        *fused.state().at(b[i].unsafeGetTensorImpl()));
    EXPECT_EQ(sa.step(), sb.step()) << i;
    EXPECT_TRUE(torch::allclose(sa.exp_avg(), sb.exp_avg(), 1e-12, 1e-14)) << i;
    EXPECT_TRUE(torch::allclose(sa.exp_avg_sq(), sb.exp_avg_sq(), 1e-12, 1e-14)) << i;
  }
}

TEST(FusedAdamW, StepsLikeLibTorchAdamW) { check_fused_adamw(torch::kCPU); }

TEST(FusedAdamW, StepsLikeLibTorchAdamWOnGpu) {
  COMBA_SKIP_WITHOUT_CUDA();
  check_fused_adamw(torch::Device(torch::kCUDA, 0));
}

TEST(Clipping, MatchesLibTorchClipGradNorm) {
  torch::manual_seed(3);
  for (const double max_norm : {0.5, 100.0}) {
    std::vector<torch::Tensor> a, b;
    for (const auto& shape : std::vector<std::vector<int64_t>>{{7, 5}, {13}, {2, 3, 4}}) {
      auto p = torch::randn(shape, torch::kDouble).requires_grad_();
      p.mutable_grad() = torch::randn(shape, torch::kDouble) * 3;
      auto q = p.detach().clone().requires_grad_();
      q.mutable_grad() = p.grad().clone();
      a.push_back(p);
      b.push_back(q);
    }
    const double expected = torch::nn::utils::clip_grad_norm_(b, max_norm);
    const auto norm = clip_gradients(a, max_norm);
    EXPECT_NEAR(norm.item<double>(), expected, 1e-12 * expected);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-13, 1e-13)) << max_norm;
    }
  }
  // Gradients of several dtypes (fp32 master gradients beside 16-bit ones) are each scaled
  // in their own dtype by the one coefficient: against the closed form in fp64.
  {
    std::vector<torch::Tensor> params;
    double sum_sq = 0;
    for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kFloat, torch::kHalf}) {
      auto p = torch::zeros({6, 5}, dtype).requires_grad_();
      p.mutable_grad() = (torch::randn({6, 5}) * 2).to(dtype);
      sum_sq += p.grad().to(torch::kDouble).pow(2).sum().item<double>();
      params.push_back(p);
    }
    std::vector<torch::Tensor> before;
    for (const auto& p : params) before.push_back(p.grad().to(torch::kDouble));
    // Each gradient's norm comes in its own dtype (as in clip_grad_norm_): the total is
    // within 16-bit rounding of the fp64 one, and every gradient is scaled by the
    // coefficient of the total reported.
    const double max_norm = 1.0, norm = std::sqrt(sum_sq);
    const double reported = clip_gradients(params, max_norm).item<double>();
    EXPECT_NEAR(reported, norm, 1e-2 * norm);
    const double coef = max_norm / (reported + 1e-6);
    for (size_t i = 0; i < params.size(); ++i) {
      const auto dtype = params[i].grad().scalar_type();
      EXPECT_EQ(dtype, params[i].scalar_type());
      const double tol = dtype == torch::kFloat ? 1e-6 : 1e-2;  // one rounding in the dtype
      EXPECT_TRUE(torch::allclose(params[i].grad().to(torch::kDouble), before[i] * coef, tol, tol)) << i;
    }
  }
  // Zero disables clipping but still reports the norm.
  auto p = torch::zeros({2}, torch::kDouble).requires_grad_();
  p.mutable_grad() = torch::tensor({3.0, 4.0}, torch::kDouble);
  EXPECT_DOUBLE_EQ(clip_gradients({p}, 0.0).item<double>(), 5.0);
  EXPECT_DOUBLE_EQ(p.grad()[1].item<double>(), 4.0);
}

// A small fp64 causal LM with nothing but fp64 inside: embedding -> running mean over
// time (so that positions interact) -> tanh -> linear.
struct RunningMeanLMImpl : torch::nn::Module {
  RunningMeanLMImpl() {
    embed = register_module("embed", torch::nn::Embedding(48, 16));
    head = register_module("head", torch::nn::Linear(16, 48));
    to(torch::kDouble);
  }
  torch::Tensor forward(const torch::Tensor& ids) {
    const auto x = embed(ids);
    const auto counts = torch::arange(1, ids.size(1) + 1, x.options()).view({1, -1, 1});
    return head(torch::tanh(x.cumsum(1) / counts));
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(RunningMeanLM);

std::vector<Batch> unequal_micro_batches() {
  auto micro = testing::recall_micro_batches(3);
  // Unequal target counts per micro-batch make the weighting matter: blank some labels.
  micro[1].labels.index_put_({0, torch::indexing::Slice(12, 18)}, -100);
  micro[1].num_targets = (micro[1].labels.slice(1, 1) != -100).sum().item<int64_t>();
  return micro;
}

std::vector<torch::Tensor> grads_of(torch::nn::Module& model, const LogitsFn& logits_of,
                                    const std::vector<Batch>& micro) {
  model.zero_grad(/*set_to_none=*/true);
  accumulate_gradients_with(logits_of, micro, Precision::from_name("fp64"));
  std::vector<torch::Tensor> g;
  for (const auto& p : model.parameters()) g.push_back(p.grad().clone());
  return g;
}

double worst_relative(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(1e-30, b[i].abs().max().item<double>());
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / scale);
  }
  return worst;
}

TEST(GradientAccumulation, NMicroBatchesOfBEqualOneBatchOfNB_fp64) {
  torch::manual_seed(1);
  RunningMeanLM model;
  const auto logits_of = [&](const Batch& b) { return model->forward(b.input_ids); };
  const auto micro = unequal_micro_batches();
  const auto accumulated = grads_of(*model, logits_of, micro);
  const auto whole = grads_of(*model, logits_of, {testing::joined_batch(micro)});
  EXPECT_LT(worst_relative(accumulated, whole), 1e-12);

  // The loss returned is the mean over all targets of the big batch.
  model->zero_grad();
  const auto loss = accumulate_gradients_with(logits_of, micro, Precision::from_name("fp64"));
  const Batch all = testing::joined_batch(micro);
  const double reference = nn::summed_causal_lm_loss(model->forward(all.input_ids), all.labels).item<double>() /
                           static_cast<double>(all.num_targets);
  EXPECT_NEAR(loss.item<double>(), reference, 1e-14 * reference);
}

TEST(GradientAccumulation, CombaModelAccumulatesLikeOneBatch) {
  // The Comba model computes norms and gates in fp32 even with fp64 weights (nn's
  // choice), so agreement is at fp32 rounding, not fp64: 1e-5 relative.
  torch::manual_seed(1);
  nn::CombaForCausalLM model(comba::testing::tiny_train_config());
  model->to(torch::kDouble);
  const auto logits_of = [&](const Batch& b) { return model->forward(b.input_ids).logits; };
  const auto micro = unequal_micro_batches();
  const auto accumulated = grads_of(*model, logits_of, micro);
  const auto whole = grads_of(*model, logits_of, {testing::joined_batch(micro)});
  EXPECT_LT(worst_relative(accumulated, whole), 1e-5);
}

TEST(Loss, SummedTokenLossMatchesTheModelsMeanLoss) {
  torch::manual_seed(2);
  nn::CombaForCausalLM model(comba::testing::tiny_train_config());
  auto ids = torch::randint(0, 48, {2, 10}, torch::kLong);
  auto labels = ids.clone();
  labels.index_put_({1, torch::indexing::Slice(0, 5)}, -100);
  const auto out = model->forward(ids, nn::LMInputs().labels(labels));
  const auto counted = (labels.slice(1, 1) != -100).sum().item<double>();
  EXPECT_NEAR(nn::summed_causal_lm_loss(out.logits, labels).item<double>() / counted,
              out.loss.item<double>(), 1e-5);
}

}  // namespace
}  // namespace comba::train
