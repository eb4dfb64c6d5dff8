// Data-parallel training on the CPU: several processes of ddp_worker on 127.0.0.1 (the
// torchrun environment set by hand, a free port each time), compared with one process.
// In process: the torchrun variables are read (missing ones named) and ranks read
// disjoint blocks of each step's micro-batches.
// - 2 ranks give the gradients of one process on the combined batch (fp64, to rounding),
//   with several buckets, and identical gradients on both ranks;
// - 2 ranks train like one process for k steps (parameters and losses), ranks identical;
//   in bf16 too, reducing the fp32 master gradients;
// - one rank launched alone behaves bit for bit like a plain process;
// - a run resumes across a change of world size (2 -> 1 and 1 -> 2);
// - an exception, a NaN or a killed process on one rank stops every rank, with a message
//   and within the test's deadline (collective timeouts); a signal to one rank stops all
//   of them cleanly after the same step.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "comba/train/checkpoint/checkpoint_file.h"
#include <torch/cuda.h>

#include "comba/train/config/config.h"
#include "comba/train/data/data_source.h"
#include "comba/train/distributed/distributed.h"
#include "comba/train/data/prefetcher.h"
#include "comba/core/file_util.h"
#include "comba/train/train_step.h"
#include "comba/train/trainer.h"
#include "ddp_test_config.h"
#include "support/file_bytes.h"
#include "support/require.h"
#include "support/scratch_dir.h"

extern char** environ;

namespace comba::train {
namespace {

constexpr int kTimedOut = 1000;

#define EXPECT_THAT_TEXT(text, part) \
  EXPECT_NE((text).find(part), std::string::npos) << (text)

std::string fresh_dir(const std::string& name) { return comba::testing::fresh_dir("ddp_" + name); }

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct Ranks {
  std::vector<int> status;  // exit status per rank, 128 + signal, or kTimedOut
  std::vector<std::string> logs;
};

// Starts `world` workers with the torchrun variables and waits at most `deadline_s` for
// all of them; stragglers are killed and reported as kTimedOut. `meanwhile` runs once all
// are started, with their process ids.
using Meanwhile = std::function<void(const std::vector<pid_t>&)>;
Ranks run_ranks(int world, const std::string& out, const std::vector<std::string>& args,
                double deadline_s = 120, const Meanwhile& meanwhile = {}) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      const std::string key = kv.substr(0, kv.find('='));
      if (key == "RANK" || key == "WORLD_SIZE" || key == "LOCAL_RANK" || key == "MASTER_ADDR" ||
          key == "MASTER_PORT" || key.rfind("TORCHELASTIC_", 0) == 0) {
        continue;
      }
      env_strings.push_back(kv);
    }
    env_strings.push_back("RANK=" + std::to_string(rank));
    env_strings.push_back("WORLD_SIZE=" + std::to_string(world));
    env_strings.push_back("LOCAL_RANK=" + std::to_string(rank));
    env_strings.push_back("MASTER_ADDR=127.0.0.1");
    env_strings.push_back("MASTER_PORT=" + std::to_string(port));
    env_strings.push_back("OMP_NUM_THREADS=1");
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_strings = {COMBA_DDP_WORKER};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = out + "/log_rank" + std::to_string(rank) + ".txt";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, COMBA_DDP_WORKER, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0) << "cannot start " << COMBA_DDP_WORKER;
    pids.push_back(pid);
  }
  if (meanwhile) meanwhile(pids);
  Ranks result;
  result.status.assign(world, kTimedOut);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000));
  int left = world;
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    for (int r = 0; r < world; ++r) {
      if (result.status[r] != kTimedOut) continue;
      int status = 0;
      if (::waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        result.status[r] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        --left;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int r = 0; r < world; ++r) {
    if (result.status[r] != kTimedOut) continue;
    ::kill(pids[r], SIGKILL);
    ::waitpid(pids[r], nullptr, 0);
  }
  for (int r = 0; r < world; ++r) result.logs.push_back(comba::testing::read_bytes(out + "/log_rank" + std::to_string(r) + ".txt"));
  return result;
}

std::string all_logs(const Ranks& ranks) {
  std::string text;
  for (size_t r = 0; r < ranks.logs.size(); ++r) {
    text += "---- rank " + std::to_string(r) + " (status " + std::to_string(ranks.status[r]) +
            ")\n" + ranks.logs[r];
  }
  return text;
}

std::vector<torch::Tensor> load_tensors(const std::string& path) {
  std::vector<torch::Tensor> tensors;
  torch::load(tensors, path);
  return tensors;
}

std::map<int64_t, double> load_losses(const std::string& path) {
  std::map<int64_t, double> losses;
  std::ifstream in(path);
  int64_t step = 0;
  double loss = 0;
  while (in >> step >> loss) losses[step] = loss;
  return losses;
}

// Tight fp64 agreement: rounding differences from a different summation order only.
void expect_close(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want,
                  double rtol, double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].scalar_type(), want[i].scalar_type()) << what;
    const double err = (got[i] - want[i]).abs().max().item<double>();
    const double scale = want[i].abs().max().item<double>();
    EXPECT_LE(err, atol + rtol * scale) << what << " tensor " << i << ": max error " << err
                                        << " at scale " << scale;
  }
}

void expect_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << what << " tensor " << i;
}

// One process, the same config: the reference.
struct Reference {
  std::vector<torch::Tensor> params;
  std::map<int64_t, double> losses;
};
Reference train_alone(const std::vector<std::string>& sets) {
  Trainer trainer(config_from_yaml("", sets));
  const TrainSummary s = trainer.run();
  Reference ref;
  for (const auto& p : trainer.model()->parameters()) ref.params.push_back(p.detach().clone());
  ref.losses = {s.losses.begin(), s.losses.end()};
  return ref;
}

std::vector<std::string> train_args(const std::string& out, const std::vector<std::string>& sets,
                                    const std::vector<std::string>& fault = {}) {
  std::vector<std::string> args = {"train", out};
  args.insert(args.end(), fault.begin(), fault.end());
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  return args;
}

// Sets environment variables for its lifetime (the in-process trainers of the other tests
// must not see them).
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& vars) {
    for (const auto& [k, v] : vars) {
      names_.push_back(k);
      ::setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& k : names_) ::unsetenv(k.c_str());
  }

 private:
  std::vector<std::string> names_;
};

TEST(DistributedEnv, PlainProcessWithoutRankAndWorldSize) {
  EXPECT_FALSE(DistributedEnv::from_env().launched);
}

TEST(DistributedEnv, TorchrunVariablesAreReadAndMissingOnesNamed) {
  {
    const ScopedEnv env({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                         {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29400"},
                         {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "2"}});
    const DistributedEnv e = DistributedEnv::from_env();
    EXPECT_TRUE(e.launched);
    EXPECT_EQ(e.rank, 3);
    EXPECT_EQ(e.world_size, 4);
    EXPECT_EQ(e.local_rank, 1);
    EXPECT_EQ(e.master_addr, "node7");
    EXPECT_EQ(e.master_port, 29400);
    EXPECT_TRUE(e.agent_store);
    EXPECT_EQ(e.attempt, "2");
  }
  const auto message = [](const std::map<std::string, std::string>& vars) {
    const ScopedEnv env(vars);
    try {
      DistributedEnv::from_env();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT_TEXT(message({{"RANK", "0"}}), "WORLD_SIZE: not set");
  EXPECT_THAT_TEXT(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), "RANK: expected an integer in [0, 1], got \"2\"");
  EXPECT_THAT_TEXT(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}}), "MASTER_ADDR: not set");
  EXPECT_THAT_TEXT(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "x"}}),
                   "MASTER_PORT: expected an integer");
  EXPECT_THROW(device_for_rank("cuda:1", DistributedEnv{true, 0, 2, 0, "h", 1}), std::invalid_argument);
  EXPECT_EQ(device_for_rank("cpu", DistributedEnv{true, 1, 2, 1, "h", 1}), torch::Device(torch::kCPU));
}

// The per-step agreement (the trainer's target count and stop flag) without the trainer:
// ranks in threads of this process, each with its own DistributedContext.
DistributedEnv rank_env(int rank, int world, int port) {
  DistributedEnv env;
  env.launched = true;
  env.rank = rank;
  env.world_size = world;
  env.local_rank = rank;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  return env;
}

// Runs `body(context)` for each rank of `world` in its own thread (rank 0 hosts the store)
// and returns every rank's agreements; a rank's exception fails the test.
std::vector<std::vector<StepAgreement>> agree_in_threads(
    int world, const std::vector<torch::Device>& devices,
    const std::function<std::vector<StepAgreement>(DistributedContext&, int rank)>& body) {
  const int port = free_port();
  DistributedOptions options;
  options.timeout_s = 60;
  std::vector<std::vector<StepAgreement>> out(world);
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        DistributedContext context(rank_env(rank, world, port), devices[rank], options);
        out[rank] = body(context, rank);
        context.finish();
      } catch (const std::exception& e) {
        errors[rank] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < world; ++rank) EXPECT_EQ(errors[rank], "") << "rank " << rank;
  return out;
}

// One rank on `device`: each step's agreement is its own count and stop request.
void expect_one_rank_agrees_with_itself(const torch::Device& device, const char* backend) {
  const auto agreed = agree_in_threads(1, {device}, [backend](DistributedContext& c, int) {
    if (backend) EXPECT_EQ(c.backend()->getBackendName(), backend);
    return std::vector<StepAgreement>{c.agree_on_step(7, false, 1), c.agree_on_step(3, true, 2)};
  });
  ASSERT_EQ(agreed[0].size(), 2u);
  EXPECT_EQ(agreed[0][0].step_targets, 7);
  EXPECT_FALSE(agreed[0][0].stop);
  EXPECT_EQ(agreed[0][1].step_targets, 3);
  EXPECT_TRUE(agreed[0][1].stop);
}

TEST(StepAgreement, OneRankAgreesWithItself) {
  expect_one_rank_agrees_with_itself(torch::Device(torch::kCPU), nullptr);
}

TEST(StepAgreement, TwoRanksSumTheirTargetsAndStopIfEitherAsks) {
  const torch::Device cpu(torch::kCPU);
  // Step 1: rank 1 asks to stop; step 2: nobody does; step 3: rank 0 does.
  const auto agreed = agree_in_threads(2, {cpu, cpu}, [](DistributedContext& c, int rank) {
    return std::vector<StepAgreement>{c.agree_on_step(rank == 0 ? 5 : 11, rank == 1, 1),
                                      c.agree_on_step(rank == 0 ? 2 : 0, false, 2),
                                      c.agree_on_step(1000000007, rank == 0, 3)};
  });
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(agreed[rank].size(), 3u) << rank;
    EXPECT_EQ(agreed[rank][0].step_targets, 16) << rank;
    EXPECT_TRUE(agreed[rank][0].stop) << rank;
    EXPECT_EQ(agreed[rank][1].step_targets, 2) << rank;
    EXPECT_FALSE(agreed[rank][1].stop) << rank;
    EXPECT_EQ(agreed[rank][2].step_targets, 2000000014) << rank;
    EXPECT_TRUE(agreed[rank][2].stop) << rank;
  }
}

// On a GPU the agreement is one all-reduce through NCCL, not the store.
TEST(StepAgreementOnGpu, OneNcclRankAgreesOnTheDevice) {
  COMBA_SKIP_WITHOUT_CUDA();
  expect_one_rank_agrees_with_itself(torch::Device(torch::kCUDA, 0), "nccl");
}

TEST(StepAgreementOnGpu, TwoNcclRanksSumTheirTargetsAndStopIfEitherAsks) {
  COMBA_SKIP_WITHOUT_CUDA();
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "fewer than 2 CUDA GPUs";
  const auto agreed = agree_in_threads(
      2, {torch::Device(torch::kCUDA, 0), torch::Device(torch::kCUDA, 1)},
      [](DistributedContext& c, int rank) {
        return std::vector<StepAgreement>{c.agree_on_step(rank == 0 ? 5 : 11, rank == 1, 1),
                                          c.agree_on_step(rank == 0 ? 2 : 0, false, 2)};
      });
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(agreed[rank].size(), 2u) << rank;
    EXPECT_EQ(agreed[rank][0].step_targets, 16) << rank;
    EXPECT_TRUE(agreed[rank][0].stop) << rank;
    EXPECT_EQ(agreed[rank][1].step_targets, 2) << rank;
    EXPECT_FALSE(agreed[rank][1].stop) << rank;
  }
}

TEST(DataShard, RanksReadDisjointBlocksOfEveryStepAndCheckpointTheGlobalPosition) {
  // 4 micro-batches per step over 2 ranks, resumed at global position 8 (step 2).
  const DataShard rank0{/*offset=*/0, /*block=*/2, /*stride=*/4};
  const DataShard rank1{/*offset=*/2, /*block=*/2, /*stride=*/4};
  std::vector<int64_t> got0;
  std::vector<int64_t> got1;
  for (int64_t k = 0; k < 4; ++k) {
    got0.push_back(rank0.global_index(8, k));
    got1.push_back(rank1.global_index(8, k));
  }
  EXPECT_EQ(got0, (std::vector<int64_t>{8, 9, 12, 13}));
  EXPECT_EQ(got1, (std::vector<int64_t>{10, 11, 14, 15}));
  const auto source = testing::ddp_data_source();
  Prefetcher prefetcher(*source, 8, 2, /*pin_memory=*/false, rank1);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::equal(prefetcher.next().input_ids, source->train_batch(10 + i).input_ids));
  }
  EXPECT_EQ(prefetcher.position(), 12);  // the next step starts at 12 on every rank
}

TEST(DataParallel, TwoRanksGiveTheGradientsOfOneProcessOnTheCombinedBatch) {
  const std::string out = fresh_dir("grads");
  const int64_t grad_accum = 4;
  // Small buckets: several all-reduces in flight during backward.
  const Ranks ranks = run_ranks(2, out, {"grads", out, "4096", std::to_string(grad_accum)});
  ASSERT_EQ(ranks.status, (std::vector<int>{0, 0})) << all_logs(ranks);
  // Several buckets, each launched by the hooks while backward was still running.
  for (const auto& log : ranks.logs) {
    for (int step = 1; step <= 2; ++step) {
      const std::string tag = "step " + std::to_string(step) + ": ";
      const auto at = log.find(tag);
      ASSERT_NE(at, std::string::npos) << log;
      int64_t early = 0;
      int64_t total = 0;
      std::istringstream(log.substr(at + tag.size())) >> early;
      std::istringstream(log.substr(log.find("of ", at) + 3)) >> total;
      EXPECT_GE(total, 3) << log;
      EXPECT_EQ(early, total) << log;
    }
  }

  auto model = testing::ddp_model();
  const auto source = testing::ddp_data_source();
  for (int step = 1; step <= 2; ++step) {
    std::vector<Batch> micro;
    for (int64_t j = 0; j < grad_accum; ++j) micro.push_back(source->train_batch((step - 1) * grad_accum + j));
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    accumulate_gradients(model, micro, Precision::from_name("fp64"));
    std::vector<torch::Tensor> want;
    for (const auto& p : model->parameters()) want.push_back(p.grad());
    const std::string stem = out + "/grads_step" + std::to_string(step);
    const auto rank0 = load_tensors(stem + "_rank0.pt");
    const auto rank1 = load_tensors(stem + "_rank1.pt");
    expect_equal(rank0, rank1, "step " + std::to_string(step) + ": rank 0 vs rank 1");
    expect_close(rank0, want, 1e-12, 1e-15, "step " + std::to_string(step) + ": 2 ranks vs 1 process");
  }
  core::remove_tree(out);
}

TEST(DataParallel, TwoRanksTrainLikeOneProcessOnTheCombinedBatch) {
  const std::string out = fresh_dir("train2");
  const auto sets = testing::ddp_sets(out + "/run", {"train.grad_clip=0.5"});
  const Ranks ranks = run_ranks(2, out, train_args(out, sets));
  ASSERT_EQ(ranks.status, (std::vector<int>{0, 0})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[0].find("final_step 4 world_size 2"), std::string::npos) << ranks.logs[0];

  const auto rank0 = load_tensors(out + "/params_rank0.pt");
  const auto rank1 = load_tensors(out + "/params_rank1.pt");
  expect_equal(rank0, rank1, "parameters of rank 0 vs rank 1");
  const Reference ref = train_alone(testing::ddp_sets(out + "/alone", {"train.grad_clip=0.5"}));
  expect_close(rank0, ref.params, 1e-9, 1e-12, "2 ranks vs 1 process after 4 steps");
  const auto losses = load_losses(out + "/losses_rank0.txt");
  ASSERT_EQ(losses.size(), ref.losses.size());
  for (const auto& [step, loss] : ref.losses) EXPECT_NEAR(losses.at(step), loss, 1e-12 * loss) << step;
  // Only rank 0 writes the run directory.
  EXPECT_TRUE(core::path_exists(out + "/run/metrics.jsonl"));
  EXPECT_TRUE(core::path_exists(checkpoint_path(out + "/run/checkpoints", 4)));
  core::remove_tree(out);
}

// precision bf16: the reducer folds each rank's bf16 gradients into the fp32 master
// gradients and all-reduces those. Each micro-batch's bf16 gradient is the same as in one
// process (same batch, same weights); only the fp32 sum's order differs, so the weights
// agree to a few bf16 roundings after 4 steps.
TEST(DataParallel, TwoBf16RanksReduceFp32MasterGradientsLikeOneProcess) {
  const std::string out = fresh_dir("train2_bf16");
  const auto sets = testing::ddp_sets(out + "/run", {"precision=bf16"});
  const Ranks ranks = run_ranks(2, out, train_args(out, sets));
  ASSERT_EQ(ranks.status, (std::vector<int>{0, 0})) << all_logs(ranks);
  const auto rank0 = load_tensors(out + "/params_rank0.pt");
  expect_equal(rank0, load_tensors(out + "/params_rank1.pt"), "parameters of rank 0 vs rank 1");
  const Reference ref = train_alone(testing::ddp_sets(out + "/alone", {"precision=bf16"}));
  ASSERT_EQ(rank0.front().scalar_type(), torch::kBFloat16);
  expect_close(rank0, ref.params, 2.0 / 256, 0, "2 bf16 ranks vs 1 process after 4 steps");
  const auto losses = load_losses(out + "/losses_rank0.txt");
  ASSERT_EQ(losses.size(), ref.losses.size());
  for (const auto& [step, loss] : ref.losses) EXPECT_NEAR(losses.at(step), loss, 1e-2 * loss) << step;
  core::remove_tree(out);
}

TEST(DataParallel, OneLaunchedRankIsBitForBitAPlainProcess) {
  const std::string out = fresh_dir("world1");
  const auto sets = testing::ddp_sets(out + "/run");
  const Ranks ranks = run_ranks(1, out, train_args(out, sets));
  ASSERT_EQ(ranks.status, (std::vector<int>{0})) << all_logs(ranks);
  const Reference ref = train_alone(testing::ddp_sets(out + "/alone"));
  expect_equal(load_tensors(out + "/params_rank0.pt"), ref.params, "1 launched rank vs plain");
  EXPECT_EQ(load_losses(out + "/losses_rank0.txt"), ref.losses);
  core::remove_tree(out);
}

TEST(DataParallel, ResumesAcrossAChangeOfWorldSize) {
  const std::string out = fresh_dir("resume");
  const Reference straight = train_alone(testing::ddp_sets(out + "/straight", {"train.max_steps=6"}));

  // 2 ranks to step 3, then one process to step 6.
  const auto two_then_one = testing::ddp_sets(out + "/a", {"train.max_steps=6"});
  auto first = two_then_one;
  first.push_back("train.stop_at_step=3");
  Ranks ranks = run_ranks(2, out, train_args(out, first));
  ASSERT_EQ(ranks.status, (std::vector<int>{0, 0})) << all_logs(ranks);
  ASSERT_TRUE(core::path_exists(checkpoint_path(out + "/a/checkpoints", 3)));
  Trainer one(config_from_yaml("", two_then_one));
  const TrainSummary resumed = one.run();
  EXPECT_EQ(resumed.start_step, 3);
  std::vector<torch::Tensor> params;
  for (const auto& p : one.model()->parameters()) params.push_back(p.detach().clone());
  expect_close(params, straight.params, 1e-9, 1e-12, "2 ranks then 1 vs 1 straight");

  // One process to step 3, then 2 ranks to step 6.
  const auto one_then_two = testing::ddp_sets(out + "/b", {"train.max_steps=6"});
  auto stop_at_3 = one_then_two;
  stop_at_3.push_back("train.stop_at_step=3");
  Trainer(config_from_yaml("", stop_at_3)).run();
  ranks = run_ranks(2, out, train_args(out, one_then_two));
  ASSERT_EQ(ranks.status, (std::vector<int>{0, 0})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[0].find("resumed from"), std::string::npos) << ranks.logs[0];
  const auto rank0 = load_tensors(out + "/params_rank0.pt");
  expect_equal(rank0, load_tensors(out + "/params_rank1.pt"), "resumed ranks");
  expect_close(rank0, straight.params, 1e-9, 1e-12, "1 then 2 ranks vs 1 straight");
  const auto losses = load_losses(out + "/losses_rank0.txt");
  for (const auto& [step, loss] : losses) EXPECT_NEAR(loss, straight.losses.at(step), 1e-12 * loss) << step;
  core::remove_tree(out);
}

TEST(DataParallel, AnExceptionOnOneRankStopsEveryRank) {
  const std::string out = fresh_dir("fail");
  const auto sets = testing::ddp_sets(out + "/run", {"train.max_steps=50"});
  const Ranks ranks = run_ranks(2, out, train_args(out, sets, {"--fail-at", "2"}), 90);
  EXPECT_EQ(ranks.status, (std::vector<int>{1, 1})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[1].find("injected failure at step 2"), std::string::npos) << all_logs(ranks);
  EXPECT_NE(ranks.logs[0].find("rank 1 failed: injected failure at step 2"), std::string::npos)
      << all_logs(ranks);
  core::remove_tree(out);
}

TEST(DataParallel, AnExceptionOnRankZeroTheStoreHostStopsEveryRank) {
  const std::string out = fresh_dir("fail0");
  const auto sets = testing::ddp_sets(out + "/run", {"train.max_steps=50"});
  const Ranks ranks = run_ranks(2, out, train_args(out, sets, {"--rank", "0", "--fail-at", "2"}), 90);
  EXPECT_EQ(ranks.status, (std::vector<int>{1, 1})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[1].find("rank 0 failed: injected failure at step 2"), std::string::npos)
      << all_logs(ranks);
  core::remove_tree(out);
}

TEST(DataParallel, ANaNOnOneRankStopsEveryRankAsNonFinite) {
  const std::string out = fresh_dir("nan");
  const auto sets = testing::ddp_sets(out + "/run", {"train.max_steps=50"});
  const Ranks ranks = run_ranks(2, out, train_args(out, sets, {"--nan-at", "2"}), 90);
  EXPECT_EQ(ranks.status, (std::vector<int>{3, 3})) << all_logs(ranks);
  // Rank 1's weights went NaN after step 2; step 3's loss there is NaN and its gradient,
  // all-reduced, makes every rank's gradient NaN: all stop, naming step 3 and rank 1.
  for (const auto& log : ranks.logs) {
    EXPECT_NE(log.find("non-finite loss at step 3 on rank 1"), std::string::npos) << all_logs(ranks);
  }
  core::remove_tree(out);
}

TEST(DataParallel, AKilledRankIsReportedAfterTheTimeout) {
  const std::string out = fresh_dir("kill");
  const auto sets = testing::ddp_sets(out + "/run", {"train.max_steps=50", "distributed.timeout_s=4"});
  const auto start = std::chrono::steady_clock::now();
  const Ranks ranks = run_ranks(2, out, train_args(out, sets, {"--kill-at", "2"}), 90);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ranks.status, (std::vector<int>{1, 128 + SIGKILL})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[0].find("rank(s) 1 did not reach step 3 within 4 s"), std::string::npos)
      << all_logs(ranks);
  EXPECT_LT(took, 60) << all_logs(ranks);
  core::remove_tree(out);
}

TEST(DataParallel, ASignalToOneRankStopsEveryRankAtTheSameStep) {
  const std::string out = fresh_dir("signal");
  const auto sets = testing::ddp_sets(out + "/run", {"train.max_steps=100000"});
  const Ranks ranks = run_ranks(2, out, train_args(out, sets), 120, [&](const std::vector<pid_t>& pids) {
    // After a few steps (rank 0 writes a metrics line per step), interrupt rank 1 only.
    for (int i = 0; i < 600; ++i) {
      std::ifstream metrics(out + "/run/metrics.jsonl");
      int lines = 0;
      for (std::string line; std::getline(metrics, line);) ++lines;
      if (lines >= 3) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pids[1], SIGINT);
  });
  ASSERT_EQ(ranks.status, (std::vector<int>{0, 0})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[0].find("another rank received a signal"), std::string::npos) << all_logs(ranks);
  // Both stopped after the same step, and rank 0 checkpointed it.
  const auto line0 = ranks.logs[0].substr(ranks.logs[0].find("final_step "));
  const auto line1 = ranks.logs[1].substr(ranks.logs[1].find("final_step "));
  EXPECT_EQ(line0, line1);
  const int64_t step = std::stoll(line0.substr(std::string("final_step ").size()));
  EXPECT_TRUE(core::path_exists(checkpoint_path(out + "/run/checkpoints", step))) << step;
  expect_equal(load_tensors(out + "/params_rank0.pt"), load_tensors(out + "/params_rank1.pt"),
               "parameters after the stop");
  core::remove_tree(out);
}

TEST(DataParallel, GradAccumNotAMultipleOfTheWorldSizeIsRefused) {
  const std::string out = fresh_dir("accum");
  const auto sets = testing::ddp_sets(out + "/run", {"batch.grad_accum_steps=3"});
  const Ranks ranks = run_ranks(2, out, train_args(out, sets), 60);
  EXPECT_EQ(ranks.status, (std::vector<int>{1, 1})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[0].find("batch.grad_accum_steps: expected a multiple of the world size 2, got 3"),
            std::string::npos)
      << all_logs(ranks);
  core::remove_tree(out);
}

// On GPUs (skipped without them): NCCL instead of the store backend. One rank checks the
// NCCL path on a single GPU; two need two GPUs. fp32 and the CUDA kernels, so the
// tolerances are fp32's.
TEST(DataParallelOnGpu, OneNcclRankTrainsLikeAPlainProcess) {
  COMBA_SKIP_WITHOUT_CUDA();
  const std::string out = fresh_dir("gpu1");
  const std::vector<std::string> gpu = {"device=cuda", "precision=fp32"};
  const Ranks ranks = run_ranks(1, out, train_args(out, testing::ddp_sets(out + "/run", gpu)), 300);
  ASSERT_EQ(ranks.status, (std::vector<int>{0})) << all_logs(ranks);
  EXPECT_NE(ranks.logs[0].find("backend nccl"), std::string::npos) << ranks.logs[0];
  const Reference ref = train_alone(testing::ddp_sets(out + "/alone", gpu));
  expect_close(load_tensors(out + "/params_rank0.pt"), ref.params, 1e-5, 1e-6, "1 NCCL rank vs plain");
  const auto losses = load_losses(out + "/losses_rank0.txt");
  for (const auto& [step, loss] : ref.losses) EXPECT_NEAR(losses.at(step), loss, 1e-5 * loss) << step;
  core::remove_tree(out);
}

TEST(DataParallelOnGpu, TwoNcclRanksTrainLikeOneGpu) {
  COMBA_SKIP_WITHOUT_CUDA();
  // A one-GPU machine is a real configuration, not a broken run: still a skip.
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "fewer than 2 CUDA GPUs";
  const std::string out = fresh_dir("gpu2");
  const std::vector<std::string> gpu = {"device=cuda", "precision=fp32", "distributed.bucket_mb=0.01"};
  const Ranks ranks = run_ranks(2, out, train_args(out, testing::ddp_sets(out + "/run", gpu)), 300);
  ASSERT_EQ(ranks.status, (std::vector<int>{0, 0})) << all_logs(ranks);
  const auto rank0 = load_tensors(out + "/params_rank0.pt");
  auto rank1 = load_tensors(out + "/params_rank1.pt");
  for (auto& t : rank1) t = t.to(rank0.front().device());
  expect_equal(rank0, rank1, "NCCL rank 0 vs rank 1");
  const Reference ref = train_alone(testing::ddp_sets(out + "/alone", gpu));
  expect_close(rank0, ref.params, 1e-4, 1e-5, "2 NCCL ranks vs 1 GPU");
  core::remove_tree(out);
}

}  // namespace
}  // namespace comba::train
