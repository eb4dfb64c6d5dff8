// One rank of the data-parallel tests (test_distributed.cpp starts several, with the
// torchrun environment variables set). Writes what it computed under OUT_DIR for the test
// to compare.
//
//   ddp_worker grads OUT_DIR BUCKET_BYTES GRAD_ACCUM
//       tiny fp64 model, two steps of gradients for this rank's share of the recall batches
//       (the reducer with buckets of BUCKET_BYTES); writes grads_step{1,2}_rank<r>.pt
//   ddp_worker train OUT_DIR [--rank R] [--fail-at N | --nan-at N | --kill-at N] [--set k=v ...]
//       Trainer on the config given by the --set list; the --*-at options hit rank R
//       (default 1) after step N (an exception, NaN weights, SIGKILL). Writes
//       params_rank<r>.pt and losses_rank<r>.txt; exit status 3 on a non-finite step, 1 on
//       other failures.
#include <torch/torch.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "comba/train/config/config.h"
#include "comba/train/data/data_source.h"
#include "comba/train/distributed/distributed.h"
#include "comba/train/distributed/grad_reducer.h"
#include "comba/train/train_step.h"
#include "comba/train/trainer.h"
#include "ddp_test_config.h"

namespace {

using namespace comba::train;

int run_grads(const std::string& out, int64_t bucket_bytes, int64_t grad_accum) {
  const DistributedEnv env = DistributedEnv::from_env();
  DistributedContext dist(env, torch::Device(torch::kCPU), DistributedOptions{});
  auto model = testing::ddp_model();
  if (env.rank != 0) {
    // Other weights on the other ranks: the broadcast must make them rank 0's.
    const torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(1.0);
  }
  dist.broadcast_tensors(model->parameters());
  GradientReducer reducer(model->parameters(), dist.backend(), bucket_bytes);
  const auto source = testing::ddp_data_source();
  const int64_t local = grad_accum / env.world_size;
  for (int step = 1; step <= 2; ++step) {
    std::vector<Batch> micro;
    int64_t targets = 0;
    for (int64_t j = 0; j < local; ++j) {
      micro.push_back(source->train_batch((step - 1) * grad_accum + env.rank * local + j));
      targets += micro.back().num_targets;
    }
    StepSync sync;
    for (const auto& v : dist.all_gather_doubles({static_cast<double>(targets)}, "targets")) {
      sync.step_targets += static_cast<int64_t>(v[0]);
    }
    sync.before_last_backward = [&reducer] { reducer.arm(); };
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    accumulate_gradients(model, micro, Precision::from_name("fp64"), sync);
    reducer.wait();
    std::cout << "step " << step << ": " << reducer.launched_during_backward() << " of "
              << reducer.num_buckets() << " buckets launched during backward" << std::endl;
    std::vector<torch::Tensor> grads;
    for (const auto& p : model->parameters()) grads.push_back(p.grad().clone());
    torch::save(grads, out + "/grads_step" + std::to_string(step) + "_rank" +
                           std::to_string(env.rank) + ".pt");
  }
  dist.finish();
  return 0;
}

int run_train(const std::string& out, const std::vector<std::string>& args) {
  std::vector<std::string> sets;
  std::string fault;
  int64_t fault_step = -1;
  int fault_rank = 1;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--set") {
      sets.push_back(args.at(++i));
    } else if (args[i] == "--rank") {
      fault_rank = std::stoi(args.at(++i));
    } else {
      fault = args[i];
      fault_step = std::stoll(args.at(++i));
    }
  }
  const int rank = DistributedEnv::from_env().rank;
  try {
    Trainer trainer(config_from_yaml("", sets));
    trainer.on_step([&](int64_t step) {
      if (rank != fault_rank || step != fault_step) return;
      if (fault == "--fail-at") throw std::runtime_error("injected failure at step " + std::to_string(step));
      if (fault == "--kill-at") std::raise(SIGKILL);
      if (fault == "--nan-at") {
        const torch::NoGradGuard no_grad;
        trainer.model()->parameters().front().fill_(std::nan(""));
      }
    });
    const TrainSummary s = trainer.run();
    torch::save(trainer.model()->parameters(), out + "/params_rank" + std::to_string(rank) + ".pt");
    std::ofstream losses(out + "/losses_rank" + std::to_string(rank) + ".txt");
    losses.precision(17);
    for (const auto& [step, loss] : s.losses) losses << step << " " << loss << "\n";
    std::cout << "final_step " << s.final_step << " world_size " << s.world_size << std::endl;
    return 0;
  } catch (const NonFiniteError& e) {
    std::cerr << "rank " << rank << " non-finite: " << e.what() << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "rank " << rank << " failed: " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() >= 4 && args[0] == "grads") {
    return run_grads(args[1], std::stoll(args[2]), std::stoll(args[3]));
  }
  if (args.size() >= 2 && args[0] == "train") {
    return run_train(args[1], std::vector<std::string>(args.begin() + 2, args.end()));
  }
  std::cerr << "usage: ddp_worker grads OUT_DIR BUCKET_BYTES GRAD_ACCUM | train OUT_DIR [...]\n";
  return 2;
}
