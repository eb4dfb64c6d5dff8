// fp32 master weights beside bf16 parameters (master_weights.h), on the CPU tiny model:
// - the parameters become bf16 copies of the fp32 masters (which keep the exact values);
// - 2 micro-batches accumulate into the fp32 master gradients like one batch of twice the
//   size, within bf16 rounding (each micro-batch's bf16 gradient is rounded on its own);
// - a checkpoint saves the fp32 masters under the parameters' names: an fp32 model reads
//   them exactly, a bf16 model reads them back into its masters exactly (AdamW state too),
//   and a checkpoint of an fp32 run (the existing format) loads into the masters unchanged.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "comba/core/file_util.h"
#include "comba/nn/causal_lm.h"
#include "comba/train/data/batch.h"
#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/train/data/data_source.h"
#include "comba/train/master_weights.h"
#include "comba/train/optimizer.h"
#include "comba/train/train_step.h"
#include "support/scratch_dir.h"
#include "micro_batches.h"
#include "support/tiny_config.h"

namespace comba::train {
namespace {

// A tiny bf16 model with fp32 masters (the model's initial fp32 values) and its optimizer.
struct Bf16Setup {
  nn::CombaForCausalLM model{comba::testing::tiny_train_config()};
  std::unique_ptr<MasterWeights> masters;
  std::unique_ptr<torch::optim::AdamW> optimizer;

  explicit Bf16Setup(uint64_t seed) {
    torch::manual_seed(seed);
    model = nn::CombaForCausalLM(comba::testing::tiny_train_config());
    masters = std::make_unique<MasterWeights>(model->named_parameters(), torch::kBFloat16);
    optimizer = make_optimizer(masters->named_masters(), OptimizerOptions());
  }

  // One optimizer step over `micro` as the trainer takes it.
  void step(const std::vector<Batch>& micro) {
    StepSync sync;
    sync.after_backward = [this] { masters->accumulate_gradients(); };
    accumulate_gradients(model, micro, Precision::from_name("bf16"), sync);
    optimizer->step();
    optimizer->zero_grad(/*set_to_none=*/true);
    masters->copy_to_model();
  }
};

std::vector<torch::Tensor> master_grads(const MasterWeights& masters) {
  std::vector<torch::Tensor> grads;
  for (const auto& m : masters.masters()) grads.push_back(m.grad().clone());
  return grads;
}

TEST(MasterWeights, ParametersBecomeBf16CopiesOfFp32Masters) {
  torch::manual_seed(3);
  nn::CombaForCausalLM model(comba::testing::tiny_train_config());
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : model->named_parameters()) before[item.key()] = item.value().detach().clone();
  const MasterWeights masters(model->named_parameters(), torch::kBFloat16);
  ASSERT_EQ(masters.named_masters().size(), before.size());
  for (const auto& item : model->named_parameters()) {
    const auto& master = masters.named_masters()[item.key()];
    EXPECT_EQ(item.value().scalar_type(), torch::kBFloat16) << item.key();
    EXPECT_TRUE(item.value().requires_grad()) << item.key();
    EXPECT_EQ(master.scalar_type(), torch::kFloat) << item.key();
    EXPECT_TRUE(torch::equal(master, before.at(item.key()))) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), master.to(torch::kBFloat16))) << item.key();
  }
}

TEST(MasterWeights, TwoMicroBatchesAccumulateLikeOneBatchOfTwiceTheSize) {
  const auto micro = testing::recall_micro_batches(2);
  Bf16Setup setup(4);
  StepSync sync;
  sync.after_backward = [&] { setup.masters->accumulate_gradients(); };
  accumulate_gradients(setup.model, micro, Precision::from_name("bf16"), sync);
  const auto accumulated = master_grads(*setup.masters);
  for (const auto& p : setup.model->parameters()) EXPECT_FALSE(p.grad().defined());  // folded, dropped
  for (const auto& m : setup.masters->masters()) m.mutable_grad().reset();
  accumulate_gradients(setup.model, {testing::joined_batch(micro)}, Precision::from_name("bf16"), sync);
  const auto whole = master_grads(*setup.masters);
  // bf16's unit roundoff is 2^-8 = 3.9e-3; the two sides round activations and gradients
  // of differently shaped batches in bf16: about one roundoff of the largest entry for
  // most parameters. Each micro-batch's gradient is rounded to bf16 on its own before the
  // fp32 sum, so where the two partly cancel (decay's 2 entries: 4 roundoffs) the error is
  // larger beside the sum: the bound is 8 roundoffs.
  const double tolerance = 8.0 / 256;
  ASSERT_EQ(accumulated.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(accumulated[i].scalar_type(), torch::kFloat);
    const double scale = std::max(1e-30, whole[i].abs().max().item<double>());
    EXPECT_LT((accumulated[i] - whole[i]).abs().max().item<double>() / scale, tolerance) << "parameter " << i;
  }
}

// AdamW's first moment of every parameter, in parameter order.
std::vector<torch::Tensor> first_moments(torch::optim::Optimizer& optimizer) {
  std::vector<torch::Tensor> out;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      const auto& state = static_cast<torch::optim::AdamWParamState&>(*optimizer.state().at(p.unsafeGetTensorImpl()));
      out.push_back(state.exp_avg());
    }
  }
  return out;
}

TEST(MasterWeights, CheckpointRoundTripIsExactForMastersAndReadsTheFp32Format) {
  const std::string dir = comba::testing::scratch_path("master_weights_checkpoint");
  core::remove_tree(dir);
  const auto micro = testing::recall_micro_batches(2);

  // An fp32 run's checkpoint (the format as it was) loads into the masters unchanged.
  torch::manual_seed(5);
  nn::CombaForCausalLM fp32_model(comba::testing::tiny_train_config());
  auto fp32_optimizer = make_optimizer(*fp32_model, OptimizerOptions());
  accumulate_gradients(fp32_model, micro, Precision::from_name("fp32"));
  fp32_optimizer->step();
  save_checkpoint(dir, TrainState{1, 2, 96}, *fp32_model, *fp32_optimizer, 5);
  Bf16Setup bf16(6);
  {
    const MasterWeights::Exposed exposed(*bf16.masters);
    load_checkpoint(checkpoint_path(dir, 1), *bf16.model, *bf16.optimizer);
  }
  const auto fp32_params = fp32_model->named_parameters();
  for (const auto& item : bf16.masters->named_masters()) {
    EXPECT_TRUE(torch::equal(item.value(), fp32_params[item.key()])) << item.key();
  }
  for (const auto& item : bf16.model->named_parameters()) {
    EXPECT_EQ(item.value().scalar_type(), torch::kBFloat16) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), fp32_params[item.key()].to(torch::kBFloat16))) << item.key();
  }

  // The bf16 run steps on and saves: the file holds its fp32 masters under the same names.
  bf16.step(micro);
  {
    const MasterWeights::Exposed exposed(*bf16.masters);
    save_checkpoint(dir, TrainState{2, 4, 192}, *bf16.model, *bf16.optimizer, 5);
  }
  for (const auto& p : bf16.model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  bool beyond_bf16 = false;  // masters that bf16 could not hold: the file is not bf16 rounded
  for (const auto& m : bf16.masters->masters()) beyond_bf16 = beyond_bf16 || !torch::equal(m, m.to(torch::kBFloat16).to(m.scalar_type()));
  EXPECT_TRUE(beyond_bf16);
  load_checkpoint(checkpoint_path(dir, 2), *fp32_model, *fp32_optimizer);
  for (const auto& item : bf16.masters->named_masters()) {
    EXPECT_EQ(fp32_params[item.key()].scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::equal(item.value(), fp32_params[item.key()])) << item.key();
  }

  // A fresh bf16 model resumes from it: masters, bf16 copies and AdamW state exactly.
  Bf16Setup resumed(7);
  {
    const MasterWeights::Exposed exposed(*resumed.masters);
    load_checkpoint(checkpoint_path(dir, 2), *resumed.model, *resumed.optimizer);
  }
  const auto& saved = bf16.masters->masters();
  const auto& loaded = resumed.masters->masters();
  ASSERT_EQ(saved.size(), loaded.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    EXPECT_EQ(loaded[i].scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::equal(loaded[i], saved[i])) << "master " << i;
    EXPECT_TRUE(torch::equal(resumed.masters->parameters()[i], bf16.masters->parameters()[i])) << "parameter " << i;
  }
  const auto moments_saved = first_moments(*bf16.optimizer);
  const auto moments_loaded = first_moments(*resumed.optimizer);
  ASSERT_EQ(moments_saved.size(), moments_loaded.size());
  for (size_t i = 0; i < moments_saved.size(); ++i) {
    EXPECT_TRUE(torch::equal(moments_saved[i], moments_loaded[i])) << "exp_avg " << i;
  }
  core::remove_tree(dir);
}

}  // namespace
}  // namespace comba::train
