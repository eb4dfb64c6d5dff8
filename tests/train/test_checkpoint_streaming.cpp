// Training checkpoints streamed to and from the file: a round trip restores the model,
// the AdamW state, the loop state; a file written by the earlier in-memory writer still
// loads; a failed write leaves the previous checkpoint and no temporary file; and the
// host memory a save or load adds is measured as peak RSS (VmHWM after a reset), on the
// CPU and (when there is one) with the model on a GPU.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/serialize/output-archive.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "comba/core/file_util.h"
#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/checkpoint/checkpoint_file.h"
#include "support/require.h"
#include "support/scratch_dir.h"

namespace comba::train {
namespace {

std::string fresh_dir(const std::string& name) { return comba::testing::fresh_dir("ckptstream_" + name); }

// Plain parameters of the given shapes: the checkpoint code sees only a Module.
std::shared_ptr<torch::nn::Module> make_params(const std::vector<std::vector<int64_t>>& shapes,
                                               uint64_t seed) {
  torch::manual_seed(seed);
  auto m = std::make_shared<torch::nn::Module>();
  for (size_t i = 0; i < shapes.size(); ++i) {
    m->register_parameter("w" + std::to_string(i), torch::randn(shapes[i]));
  }
  return m;
}

torch::optim::AdamW make_adamw(torch::nn::Module& m) {
  return torch::optim::AdamW(m.parameters(), torch::optim::AdamWOptions(0.01).weight_decay(0.1));
}

void adamw_step(torch::nn::Module& m, torch::optim::AdamW& opt) {
  opt.zero_grad();
  torch::Tensor loss;
  for (const auto& p : m.parameters()) {
    const torch::Tensor term = (p * p).sum() * 0.5;
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();
  opt.step();
  opt.zero_grad(/*set_to_none=*/true);
}

const torch::optim::AdamWParamState& state_of(torch::optim::AdamW& opt, const torch::Tensor& p) {
  return static_cast<const torch::optim::AdamWParamState&>(*opt.state().at(p.unsafeGetTensorImpl()));
}

TEST(CheckpointStreaming, RoundTripRestoresModelOptimizerAndState) {
  const auto dir = fresh_dir("roundtrip");
  const std::vector<std::vector<int64_t>> shapes = {{3, 5}, {7}, {2, 2, 2}};
  auto a = make_params(shapes, 1);
  auto opt_a = make_adamw(*a);
  adamw_step(*a, opt_a);
  adamw_step(*a, opt_a);
  TrainState state;
  state.step = 2;
  state.data_position = 5;
  state.tokens_seen = 100;
  save_checkpoint(dir, state, *a, opt_a, /*keep_last=*/3);
  EXPECT_EQ(core::list_directory(dir), std::vector<std::string>{"step_0000000002.ckpt"});

  auto b = make_params(shapes, 2);
  auto opt_b = make_adamw(*b);
  const LoadedCheckpoint loaded = load_checkpoint(checkpoint_path(dir, 2), *b, opt_b);
  EXPECT_EQ(loaded.state.step, 2);
  EXPECT_EQ(loaded.state.data_position, 5);
  EXPECT_EQ(loaded.state.tokens_seen, 100);
  const auto pa = a->parameters();
  const auto pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
    EXPECT_EQ(state_of(opt_b, pb[i]).step(), 2);
    EXPECT_TRUE(torch::equal(state_of(opt_a, pa[i]).exp_avg(), state_of(opt_b, pb[i]).exp_avg()));
    EXPECT_TRUE(torch::equal(state_of(opt_a, pa[i]).exp_avg_sq(), state_of(opt_b, pb[i]).exp_avg_sq()));
  }
  // The restored run continues exactly as the saved one.
  adamw_step(*a, opt_a);
  adamw_step(*b, opt_b);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  core::remove_tree(dir);
}

// What the writer before streaming produced: the whole archive serialised to a string,
// framed (magic, length, FNV-1a) and written in one piece. Such files must still load.
TEST(CheckpointStreaming, FileOfTheEarlierWriterLoads) {
  const auto dir = fresh_dir("earlier");
  auto a = make_params({{4, 3}, {6}}, 3);
  auto opt_a = make_adamw(*a);
  adamw_step(*a, opt_a);
  torch::serialize::OutputArchive archive;
  archive.write("format_version", c10::IValue(int64_t{1}));
  archive.write("step", c10::IValue(int64_t{9}));
  archive.write("data_position", c10::IValue(int64_t{11}));
  archive.write("tokens_seen", c10::IValue(int64_t{13}));
  torch::serialize::OutputArchive model_archive;
  a->save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optimizer_archive;
  opt_a.save(optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("rng_count", c10::IValue(int64_t{0}));
  std::ostringstream bytes;
  archive.save_to(bytes);
  const std::string payload = bytes.str();
  uint64_t hash = 14695981039346656037ull;
  for (const unsigned char c : payload) hash = (hash ^ c) * 1099511628211ull;
  const uint64_t size = payload.size();
  {
    std::ofstream out(checkpoint_path(dir, 9), std::ios::binary);
    out << "COMBACK1";
    out.write(reinterpret_cast<const char*>(&size), 8);
    out.write(reinterpret_cast<const char*>(&hash), 8);
    out << payload;
  }
  auto b = make_params({{4, 3}, {6}}, 4);
  auto opt_b = make_adamw(*b);
  const auto loaded = load_latest_checkpoint(dir, *b, opt_b);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->state.step, 9);
  EXPECT_EQ(loaded->state.data_position, 11);
  EXPECT_EQ(loaded->state.tokens_seen, 13);
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i]));
  }
  core::remove_tree(dir);
}

// A write that fails part way (here the file size limit: EFBIG, as a full disk gives
// ENOSPC) names the reason, leaves the previous checkpoint loadable and no temporary file.
TEST(CheckpointStreaming, FailedSaveKeepsThePreviousCheckpoint) {
  const auto dir = fresh_dir("failed");
  auto a = make_params({{256, 256}}, 5);
  auto opt_a = make_adamw(*a);
  adamw_step(*a, opt_a);
  TrainState state;
  state.step = 1;
  save_checkpoint(dir, state, *a, opt_a, 3);
  const int64_t full = core::file_size(checkpoint_path(dir, 1));
  ASSERT_GT(full, 3 * 256 * 256 * 4);

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = static_cast<rlim_t>(full / 2);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  state.step = 2;
  try {
    save_checkpoint(dir, state, *a, opt_a, 3);
  } catch (const std::exception& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous);
  EXPECT_NE(message.find(checkpoint_path(dir, 2) + ": write failed: File too large"), std::string::npos)
      << message;
  EXPECT_EQ(core::list_directory(dir), std::vector<std::string>{"step_0000000001.ckpt"});
  auto b = make_params({{256, 256}}, 6);
  auto opt_b = make_adamw(*b);
  EXPECT_EQ(load_checkpoint(checkpoint_path(dir, 1), *b, opt_b).state.step, 1);
  core::remove_tree(dir);
}

int64_t status_kb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  }
  return -1;
}

// Resets VmHWM to the current RSS; false where the kernel does not allow it.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good() && status_kb("VmHWM") >= 0;
}

// The peak RSS a call adds, in MiB.
template <typename F>
double peak_extra_mib(F&& call) {
  if (!reset_peak_rss()) return -1;
  const int64_t before = status_kb("VmRSS");
  call();
  return static_cast<double>(status_kb("VmHWM") - before) / 1024.0;
}

struct PeakMemory {
  double payload = 0;  // MiB of weights + AdamW moments
  double largest = 0;  // MiB of the largest tensor
  double save_extra = 0;
  double load_extra = 0;
};

// Saves and loads a ~290 MiB state (weights of 64 + 32 MiB and their AdamW moments) on
// `device` and measures the peak host RSS each adds; prints one JSON line.
PeakMemory measure_save_and_load(const torch::Device& device, const std::string& name) {
  const auto dir = fresh_dir(name);
  {  // the first save and load of a process page in code and set up copy paths
    auto warm = make_params({{8, 8}}, 1);
    warm->to(device);
    auto warm_opt = make_adamw(*warm);
    adamw_step(*warm, warm_opt);
    save_checkpoint(dir, TrainState{}, *warm, warm_opt, 1);
    load_checkpoint(checkpoint_path(dir, 0), *warm, warm_opt);
  }
  auto m = make_params({{4096, 4096}, {2048, 4096}}, 7);
  m->to(device);
  auto opt = make_adamw(*m);
  adamw_step(*m, opt);  // AdamW state: exp_avg and exp_avg_sq per parameter
  const double mib = 1024.0 * 1024.0;
  PeakMemory r;
  r.largest = 4096.0 * 4096 * 4 / mib;
  r.payload = 3 * (4096.0 * 4096 + 2048.0 * 4096) * 4 / mib;
  TrainState state;
  state.step = 1;
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  r.save_extra = peak_extra_mib([&] { save_checkpoint(dir, state, *m, opt, 1); });
  const auto t1 = Clock::now();
  const double file_mib = static_cast<double>(core::file_size(checkpoint_path(dir, 1))) / mib;
  r.load_extra = peak_extra_mib([&] { load_checkpoint(checkpoint_path(dir, 1), *m, opt); });
  const auto t2 = Clock::now();
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  // Times are printed for the reader, never asserted.
  std::printf("{\"device\": \"%s\", \"payload_mib\": %.1f, \"file_mib\": %.1f, "
              "\"largest_tensor_mib\": %.1f, \"save_peak_extra_mib\": %.1f, "
              "\"load_peak_extra_mib\": %.1f, \"save_s\": %.2f, \"load_s\": %.2f}\n",
              device.str().c_str(), r.payload, file_mib, r.largest, r.save_extra, r.load_extra,
              seconds(t1 - t0), seconds(t2 - t1));
  EXPECT_GE(file_mib, r.payload);
  adamw_step(*m, opt);  // the loaded state is usable
  core::remove_tree(dir);
  return r;
}

// Before streaming, a save held the archive string, its copy and the framed copy (3-4
// payloads), and a load the file, its copy and the payload substring besides the loaded
// tensors. Now a save adds the writer's buffer (CPU tensors are written from their own
// memory), and a load adds the tensors it loads, which replace the model's and the
// optimizer's (the replaced ones are freed).
TEST(CheckpointStreaming, PeakHostMemoryStaysNearOnePayload) {
  if (!reset_peak_rss()) GTEST_SKIP() << "/proc/self/clear_refs cannot reset VmHWM here";
  const PeakMemory r = measure_save_and_load(torch::kCPU, "memory_cpu");
  EXPECT_LT(r.save_extra, r.largest + 64) << "a save must not hold the payload in memory";
  EXPECT_LT(r.load_extra, r.payload + 64) << "a load may hold the state it loads, and no more";
}

// A model on the GPU: each tensor passes through host memory alone, on save and on load.
TEST(CheckpointStreaming, PeakHostMemoryOfAGpuModelIsOneTensor) {
  COMBA_SKIP_WITHOUT_CUDA();
  if (!reset_peak_rss()) GTEST_SKIP() << "/proc/self/clear_refs cannot reset VmHWM here";
  const PeakMemory r = measure_save_and_load(torch::Device(torch::kCUDA, 0), "memory_cuda");
  EXPECT_LT(r.save_extra, r.largest + 64);
  EXPECT_LT(r.load_extra, r.largest + 64);
}

}  // namespace
}  // namespace comba::train
