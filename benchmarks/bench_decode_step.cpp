// The decode step as a C++ call (comba_decode_step_: in place, allocation-free) at H16
// K=V=128 with bf16 inputs, B = 1 / 64 / 256, fp32 and bf16 state:
//   eager_us:  back-to-back calls between two CUDA events (host time of the call included
//              whenever the GPU waits on it: at small B that is the whole story);
//   graph_us:  replays of a CUDA graph holding one step (the launch cost a generation loop
//              pays with generate's cuda_graph);
//   copy_us:   a device copy of the same state bytes (read + write): the floor.
// Then the model level: generate's ms per new token for a small bf16 Comba LM (hidden 1024,
// 8 layers, 8 heads of 128) with and without cuda_graph, per batch size.
// One JSON line per case. Usage: bench_decode_step [--iters N] [--tokens N] [--no-model]
#include <torch/torch.h>

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>
#include <vector>

#include "comba/core/cli.h"
#include "comba/nn/generate.h"
#include "comba/ops/decode_step.h"
#include "event_timer.h"

namespace {

constexpr int64_t kHeads = 16, kDim = 128;

// Median over 7 timings of `iters` back-to-back calls, in us per call (after a warm-up).
double us_per_call(const std::function<void()>& fn, int iters) {
  for (int i = 0; i < 10; ++i) fn();
  comba::bench::EventTimer timer;
  std::vector<double> runs;
  for (int r = 0; r < 7; ++r) {
    runs.push_back(1000.0 * timer.time_ms([&] {
      for (int i = 0; i < iters; ++i) fn();
    }) / iters);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

void op_case(int64_t batch, at::ScalarType state_dtype, int iters) {
  const auto opts = torch::TensorOptions(torch::kCUDA).dtype(torch::kBFloat16);
  const auto f32 = opts.dtype(torch::kFloat);
  const auto q = torch::randn({batch, 1, kHeads, kDim}, opts), k = torch::randn({batch, 1, kHeads, kDim}, opts),
             p = torch::randn({batch, 1, kHeads, kDim}, opts), v = torch::randn({batch, 1, kHeads, kDim}, opts);
  const auto g = -torch::rand({batch, 1, kHeads}, f32) * 0.1, beta = torch::rand({batch, 1, kHeads}, f32);
  auto state = (torch::randn({batch, kHeads, kDim, kDim}, f32) * 0.1).to(state_dtype);
  auto out = torch::empty({batch, 1, kHeads, kDim}, opts);
  const auto step_options = comba::DecodeStepOptions().use_qk_l2norm_in_kernel(true);
  auto step = [&] { comba::comba_decode_step_(q, k, v, p, g, beta, state, out, step_options); };
  const double eager_us = us_per_call(step, iters);

  at::cuda::CUDAGraph graph;
  {
    const auto caller = at::cuda::getCurrentCUDAStream();
    const auto side = at::cuda::getStreamFromPool();
    at::cuda::CUDAEvent ready;
    ready.record(caller);
    ready.block(side);
    const c10::cuda::CUDAStreamGuard guard(side);
    graph.capture_begin();
    step();
    graph.capture_end();
    at::cuda::CUDAEvent done;
    done.record(side);
    done.block(caller);
  }
  const double graph_us = us_per_call([&] { graph.replay(); }, iters);
  auto copy = torch::empty_like(state);
  const double copy_us = us_per_call([&] { copy.copy_(state); }, iters);
  const double state_mb = 2.0 * state.numel() * state.element_size() / 1e6;  // read + write
  std::printf("{\"case\": \"decode_step_B%lld_H%lld_K%lld_V%lld\", \"B\": %lld, \"dtype\": \"bf16\", "
              "\"state\": \"%s\", \"eager_us\": %.2f, \"graph_us\": %.2f, \"copy_us\": %.2f, "
              "\"graph_over_copy\": %.3f, \"state_tb_per_s\": %.3f}\n",
              static_cast<long long>(batch), static_cast<long long>(kHeads), static_cast<long long>(kDim),
              static_cast<long long>(kDim), static_cast<long long>(batch),
              state_dtype == torch::kFloat ? "fp32" : "bf16", eager_us, graph_us, copy_us, graph_us / copy_us,
              state_mb / graph_us);
  std::fflush(stdout);
}

comba::nn::CombaConfig small_model() {
  comba::nn::CombaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 1024;
  c.num_hidden_layers = 8;
  c.num_heads = 8;
  c.head_dim = 128;
  c.expand_v = 1.0;
  c.tie_word_embeddings = true;
  return c;
}

// generate's ms per new token: (time of 3 + 2 tokens new tokens - time of 3 + tokens) /
// tokens, so the prefill, the first (eager) step and the graph's capture cancel.
void model_case(comba::nn::CombaForCausalLM& lm, int64_t batch, bool cuda_graph, bool bf16_state, int tokens) {
  const auto ids = torch::randint(0, 32000, {batch, 16}, torch::TensorOptions(torch::kCUDA).dtype(torch::kLong));
  auto seconds = [&](int64_t new_tokens) {
    const auto options = comba::nn::GenerationOptions()
                             .max_new_tokens(new_tokens)
                             .cuda_graph(cuda_graph)
                             .bf16_decode_state(bf16_state);
    comba::nn::generate(lm, ids, {}, options);  // warm-up
    torch::cuda::synchronize();
    double best = std::numeric_limits<double>::max();
    for (int r = 0; r < 3; ++r) {
      const auto start = std::chrono::steady_clock::now();
      comba::nn::generate(lm, ids, {}, options);
      torch::cuda::synchronize();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return best;
  };
  const double ms = 1000.0 * (seconds(3 + 2 * tokens) - seconds(3 + tokens)) / tokens;
  std::printf("{\"case\": \"generate_small_B%lld\", \"B\": %lld, \"model\": \"hidden1024_L8_H8x128_bf16\", "
              "\"cuda_graph\": %s, \"bf16_decode_state\": %s, \"ms_per_token\": %.4f}\n",
              static_cast<long long>(batch), static_cast<long long>(batch), cuda_graph ? "true" : "false",
              bf16_state ? "true" : "false", ms);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 200, tokens = 32;
  bool no_model = false, debug = false;
  CLI::App app{"Times the in-place decode step (eager, CUDA graph, copy floor) and generate per token (CUDA).",
               "bench_decode_step"};
  comba::cli::configure(app);
  app.add_option("--iters", iters, "calls per timing")->check(comba::cli::integer_at_least(1, 1000000));
  app.add_option("--tokens", tokens, "new tokens per generate timing")->check(comba::cli::integer_at_least(1, 100000));
  app.add_flag("--no-model", no_model, "skip the generate cases");
  comba::cli::add_debug_flag(app, debug);
  if (const auto status = comba::cli::parse(app, argc, argv)) return *status;
  if (!torch::cuda::is_available()) {
    std::printf("{\"skipped\": \"no CUDA device\"}\n");
    return 0;
  }
  try {
    torch::NoGradGuard no_grad;
    for (const int64_t batch : {1, 64, 256}) {
      for (const auto state_dtype : {torch::kFloat, torch::kBFloat16}) op_case(batch, state_dtype, iters);
    }
    if (!no_model) {
      torch::manual_seed(0);
      comba::nn::CombaForCausalLM lm(small_model());
      lm->to(torch::kCUDA, torch::kBFloat16);
      lm->eval();
      for (const int64_t batch : {1, 64, 256}) {
        model_case(lm, batch, /*cuda_graph=*/false, /*bf16_state=*/false, tokens);
        model_case(lm, batch, /*cuda_graph=*/true, /*bf16_state=*/false, tokens);
        model_case(lm, batch, /*cuda_graph=*/true, /*bf16_state=*/true, tokens);
      }
    }
  } catch (const std::exception& e) {
    return comba::cli::report_error("bench_decode_step", e, debug);
  }
  return 0;
}
