// Operator workbench: times chunk_comba (forward, forward+backward) and the decode step of
// fused_recurrent_comba on the shapes of SPEC section 4, plus the paths outside them (fp32
// inputs, K = 256, the recurrent backward, and the ATen reference path for comparison),
// one JSON line per case: shapes, dtype, median ms over --iters runs (CUDA events, after
// warm-up), peak extra device memory, tokens/s, and the effective rates of CallWork.
// Usage: bench_ops [--iters N] [--filter substring] [--debug]
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#ifdef COMBA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime.h>

#include "event_timer.h"
#endif

#include "comba/core/cli.h"
#include "comba/ops/comba.h"

namespace {

struct Case {
  std::string name;
  int64_t batch, seq_len, heads, value_heads, key_dim, value_dim;
  bool backward;    // time forward + backward
  bool recurrent;   // fused_recurrent_comba (decode) instead of chunk_comba
  torch::Dtype dtype = torch::kBFloat16;
  bool reference = false;  // CombaOptions::use_reference_path (the ATen path)
};

struct Inputs {
  torch::Tensor q, k, v, p, g, beta, state;
};

Inputs make_inputs(const Case& c, torch::Dtype dtype, bool requires_grad) {
  const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
  Inputs in;
  in.q = torch::randn({c.batch, c.seq_len, c.heads, c.key_dim}, opts);
  in.k = torch::randn({c.batch, c.seq_len, c.heads, c.key_dim}, opts);
  in.p = torch::randn({c.batch, c.seq_len, c.heads, c.key_dim}, opts);
  in.v = torch::randn({c.batch, c.seq_len, c.value_heads, c.value_dim}, opts);
  in.g = torch::nn::functional::logsigmoid(
      torch::randn({c.batch, c.seq_len, c.value_heads}, opts.dtype(torch::kFloat)));
  in.beta = torch::rand({c.batch, c.seq_len, c.value_heads}, opts.dtype(torch::kFloat));
  in.state = torch::randn({c.batch, c.value_heads, c.key_dim, c.value_dim},
                          opts.dtype(torch::kFloat));
  if (requires_grad) {
    for (auto* t : {&in.q, &in.k, &in.v, &in.p, &in.g, &in.beta}) t->requires_grad_(true);
  }
  return in;
}

// The least work one call does, for effective rates (not counters: what was measured is
// the time). Bytes: every input and output once (q, k, p, v; g and beta in fp32; o; the
// initial and final fp32 state); a backward reads the inputs and dO again and writes a
// gradient of each input. FLOPs: the matrix products of the chunk form (SPEC section 2)
// per chunk of C = 64 tokens and value head, 2 C^2 (3 K + 2 V) inside the chunk (P K^T,
// Q K^T, W = T P, U = T V, Mqk V') and 6 C K V against the state (W S, Q S, K^T V'); the
// recurrent form 6 K V per token and head. A backward counts as twice its forward.
struct CallWork {
  double bytes = 0, flops = 0;
  explicit CallWork(const Case& c) {
    const double elt = c.dtype == torch::kFloat ? 4 : 2, tokens = double(c.batch) * c.seq_len;
    const double K = c.key_dim, V = c.value_dim, HV = c.value_heads;
    const double inputs = tokens * (3 * c.heads * K * elt + HV * V * elt + 2 * HV * 4) +
                          double(c.batch) * HV * K * V * 4;
    const double outputs = tokens * HV * V * elt + double(c.batch) * HV * K * V * 4;
    bytes = inputs + outputs + (c.backward ? inputs + tokens * HV * V * elt + inputs : 0);
    const double C = 64, chunks = std::ceil(c.seq_len / C) * c.batch * HV;
    const double fwd = c.recurrent ? tokens * HV * 6 * K * V
                                   : chunks * (2 * C * C * (3 * K + 2 * V) + 6 * C * K * V);
    flops = c.backward ? 3 * fwd : fwd;
  }
};

const char* dtype_name(torch::Dtype dtype) {
  return dtype == torch::kFloat ? "fp32" : dtype == torch::kHalf ? "fp16" : "bf16";
}

#ifdef COMBA_WITH_CUDA
double median_ms(const std::function<void()>& fn, int iters) {
  for (int i = 0; i < 5; ++i) fn();
  std::vector<float> times;
  comba::bench::EventTimer timer;
  for (int i = 0; i < iters; ++i) times.push_back(timer.time_ms(fn));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void run_case(const Case& c, int iters) {
  auto in = make_inputs(c, c.dtype, c.backward);
  const auto options = comba::CombaOptions()
                           .use_qk_l2norm_in_kernel(true)
                           .initial_state(in.state)
                           .output_final_state(true)
                           .use_reference_path(c.reference);
  auto call = [&] {
    return c.recurrent ? comba::fused_recurrent_comba(in.q, in.k, in.v, in.p, in.g, in.beta, options)
                       : comba::chunk_comba(in.q, in.k, in.v, in.p, in.g, in.beta, options);
  };
  // Gradients are set to none before each step, as a training loop's zero_grad does: the
  // time is the operator's, not that of adding into the last step's .grad, and the memory
  // baseline holds no gradients.
  auto clear_grads = [&] {
    if (!c.backward) return;
    for (auto* t : {&in.q, &in.k, &in.v, &in.p, &in.g, &in.beta}) t->mutable_grad().reset();
  };
  torch::Tensor grad_o;
  std::function<void()> fn;
  if (c.backward) {
    grad_o = torch::randn({c.batch, c.seq_len, c.value_heads, c.value_dim},
                          in.q.options().requires_grad(false));
    fn = [&] {
      clear_grads();
      auto [o, s] = call();
      torch::autograd::backward({o}, {grad_o});
    };
  } else {
    fn = [&] {
      torch::NoGradGuard no_grad;
      call();
    };
  }
  fn();
  clear_grads();
  cudaDeviceSynchronize();
  const auto device = 0;
  const auto before = c10::cuda::CUDACachingAllocator::getDeviceStats(device)
                          .allocated_bytes[0].current;
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
  fn();
  cudaDeviceSynchronize();
  const auto peak = c10::cuda::CUDACachingAllocator::getDeviceStats(device)
                        .allocated_bytes[0].peak;
  iters = c.reference ? std::min(iters, 10) : iters;  // the slow comparison path
  const double ms = median_ms(fn, iters);
  // Host cost of one call: back-to-back calls without a sync, wall clock per call (a
  // decode step is host bound when this is close to median_ms).
  cudaDeviceSynchronize();
  const auto host_start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  const double host_us = std::chrono::duration<double, std::micro>(
                             std::chrono::steady_clock::now() - host_start).count() / iters;
  cudaDeviceSynchronize();
  const double tokens = static_cast<double>(c.batch) * c.seq_len;
  const CallWork work(c);
  std::printf(
      "{\"case\": \"%s\", \"op\": \"%s\", \"pass\": \"%s\", \"B\": %lld, \"T\": %lld, \"H\": %lld, "
      "\"HV\": %lld, \"K\": %lld, \"V\": %lld, \"dtype\": \"%s\", \"path\": \"%s\", "
      "\"median_ms\": %.4f, \"host_us_per_call\": %.1f, \"peak_extra_gib\": %.3f, "
      "\"tokens_per_s\": %.0f, \"eff_tb_per_s\": %.3f, \"eff_tflop_per_s\": %.2f, "
      "\"iters\": %d}\n",
      c.name.c_str(), c.recurrent ? "fused_recurrent_comba" : "chunk_comba",
      c.backward ? "fwd+bwd" : "fwd", (long long)c.batch, (long long)c.seq_len,
      (long long)c.heads, (long long)c.value_heads, (long long)c.key_dim,
      (long long)c.value_dim, dtype_name(c.dtype), c.reference ? "reference" : "kernels", ms, host_us,
      (peak - before) / double(1 << 30), tokens / (ms * 1e-3), work.bytes / (ms * 1e9),
      work.flops / (ms * 1e9), iters);
  std::fflush(stdout);
}
#endif

void run_cases([[maybe_unused]] int iters, [[maybe_unused]] const std::string& filter) {
  if (!torch::cuda::is_available()) {
    std::printf("{\"skipped\": \"no CUDA device\"}\n");
    return;
  }
#ifdef COMBA_WITH_CUDA
  const std::vector<Case> cases = {
      {"B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128, false, false},
      {"B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128, true, false},
      {"B4_T4096_H6_K128_V256", 4, 4096, 6, 6, 128, 256, false, false},
      {"B4_T4096_H6_K128_V256", 4, 4096, 6, 6, 128, 256, true, false},
      {"B1_T32768_H16_K128_V128", 1, 32768, 16, 16, 128, 128, false, false},
      {"B1_T32768_H16_K128_V128", 1, 32768, 16, 16, 128, 128, true, false},
      {"B8_T2048_H6_K128_V256", 8, 2048, 6, 6, 128, 256, false, false},
      {"B8_T2048_H6_K128_V256", 8, 2048, 6, 6, 128, 256, true, false},
      {"decode_B1_H16_K128_V128", 1, 1, 16, 16, 128, 128, false, true},
      {"decode_B64_H16_K128_V128", 64, 1, 16, 16, 128, 128, false, true},
      {"decode_B256_H16_K128_V128", 256, 1, 16, 16, 128, 128, false, true},
      // Outside the chunk kernels: fp32 inputs and K = 256 run the fused recurrent
      // kernels; the same cases on the ATen reference path for comparison.
      {"fp32_B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128, false, false, torch::kFloat},
      {"fp32_B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128, true, false, torch::kFloat},
      {"fp32_B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128, true, false, torch::kFloat, true},
      {"B2_T2048_H8_K256_V512", 2, 2048, 8, 8, 256, 512, false, false},
      {"B2_T2048_H8_K256_V512", 2, 2048, 8, 8, 256, 512, true, false},
      {"B2_T2048_H8_K256_V512", 2, 2048, 8, 8, 256, 512, true, false, torch::kBFloat16, true},
      // The recurrent form with gradients (short sequences).
      {"recurrent_B16_T64_H16_K128_V128", 16, 64, 16, 16, 128, 128, true, true},
      {"recurrent_B16_T64_H16_K128_V128", 16, 64, 16, 16, 128, 128, true, true, torch::kBFloat16, true},
  };
  for (const auto& c : cases) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    run_case(c, iters);
  }
#endif
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 50;
  std::string filter;
  bool debug = false;
  CLI::App app{"Times chunk_comba and fused_recurrent_comba on the shapes of SPEC section 4 (CUDA).", "bench_ops"};
  comba::cli::configure(app);
  app.add_option("--iters", iters, "timed runs per case (median)")
      ->check(comba::cli::integer_at_least(1, std::numeric_limits<int>::max()));
  app.add_option("--filter", filter, "only cases whose name contains this");
  comba::cli::add_debug_flag(app, debug);
  if (const auto status = comba::cli::parse(app, argc, argv)) return *status;
  try {
    run_cases(iters, filter);
  } catch (const std::exception& e) {
    return comba::cli::report_error("bench_ops", e, debug);
  }
  return 0;
}
