// Per-stage workbench of the chunk form (llm.c's dev/cuda idea): for each CUDA stage,
// check it against its ATen twin on the same inputs (the twin reads the CUDA stages'
// upstream workspace cast to fp32, so each stage's error is its own) and time it alone,
// median of --iters runs with CUDA events after warm-up. One JSON line per (case, stage):
// shapes, dtype, stage, median_ms, max_rel_err (max over the stage's fields of
// max |cuda - twin| / max |twin|), the worst field, and whether every field is within the
// GPU tests' tolerance (tests/support/chunk_stage_check.h).
// Usage: bench_stages [--iters N] [--filter substring] [--no-check] [--debug]
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "comba/core/cli.h"
#include "comba/ops/comba.h"
#include "problem.h"
#include "reference/chunk_stages_ref.h"
#include "support/chunk_stage_check.h"

#ifdef COMBA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime.h>

#include "event_timer.h"
#include "launch/chunk_stages_cuda.h"
#endif

namespace {

namespace cd = comba::detail;
namespace ct = comba::test;

struct Case {
  std::string name;
  int64_t batch, seq_len, heads, value_heads, key_dim, value_dim;
};

const char* kDtype = "bf16";

#ifdef COMBA_WITH_CUDA

struct Inputs {
  cd::CombaProblem pb;
  cd::CombaInputs in;
  at::Tensor grad_o, grad_final;
};

Inputs make_inputs(const Case& c) {
  const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  const auto f32 = opts.dtype(torch::kFloat);
  Inputs x;
  x.in.q = torch::randn({c.batch, c.seq_len, c.heads, c.key_dim}, opts);
  x.in.k = torch::randn({c.batch, c.seq_len, c.heads, c.key_dim}, opts);
  x.in.p = torch::randn({c.batch, c.seq_len, c.heads, c.key_dim}, opts);
  x.in.v = torch::randn({c.batch, c.seq_len, c.value_heads, c.value_dim}, opts);
  x.in.g = torch::nn::functional::logsigmoid(
      torch::randn({c.batch, c.seq_len, c.value_heads}, f32) + 1.5);
  x.in.beta = torch::rand({c.batch, c.seq_len, c.value_heads}, f32);
  x.in.initial_state = torch::randn({c.batch, c.value_heads, c.key_dim, c.value_dim}, f32) * 0.5;
  const auto options = comba::CombaOptions().use_qk_l2norm_in_kernel(true).output_final_state(true);
  x.pb = cd::describe_comba_problem(x.in.q, x.in.v, at::Tensor(), options);
  x.grad_o = torch::randn({c.batch, c.seq_len, c.value_heads, c.value_dim}, opts);
  x.grad_final = torch::randn({c.batch, c.value_heads, c.key_dim, c.value_dim}, f32);
  return x;
}

double median_ms(const std::function<void()>& fn, int iters) {
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> times;
  comba::bench::EventTimer timer;
  for (int i = 0; i < iters; ++i) times.push_back(timer.time_ms(fn));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void print_line(const Case& c, const char* stage, double ms,
                const std::vector<ct::FieldError>& fields, bool checked, int iters) {
  double worst = 0;
  std::string worst_field, problem;
  bool within = true;
  for (const auto& f : fields) {
    if (!f.problem.empty()) problem += f.field + ": " + f.problem + "; ";
    within = within && f.problem.empty() && f.error <= f.tolerance;
    if (f.error >= worst) {
      worst = f.error;
      worst_field = f.field;
    }
  }
  std::printf(
      "{\"case\": \"%s\", \"stage\": \"%s\", \"B\": %lld, \"T\": %lld, \"H\": %lld, \"HV\": %lld, "
      "\"K\": %lld, \"V\": %lld, \"dtype\": \"%s\", \"median_ms\": %.4f, \"iters\": %d",
      c.name.c_str(), stage, (long long)c.batch, (long long)c.seq_len, (long long)c.heads,
      (long long)c.value_heads, (long long)c.key_dim, (long long)c.value_dim, kDtype, ms, iters);
  if (checked) {
    std::printf(", \"max_rel_err\": %.3e, \"worst_field\": \"%s\", \"within_tolerance\": %s", worst,
                worst_field.c_str(), within ? "true" : "false");
    if (!problem.empty()) std::printf(", \"problem\": \"%s\"", problem.c_str());
  }
  std::printf("}\n");
  std::fflush(stdout);
}

void run_case(const Case& c, int iters, bool check) {
  const auto x = make_inputs(c);
  const auto& pb = x.pb;
  const auto& in = x.in;
  std::vector<ct::FieldError> none;

  // prep
  auto ws = cd::cuda::chunk_prep(pb, in);
  const double prep_ms = median_ms([&] { cd::cuda::chunk_prep(pb, in); }, iters);
  print_line(c, "prep", prep_ms,
             check ? ct::compare_prep(pb, in, ws, cd::twin::chunk_prep(pb, in)) : none, check,
             iters);

  // forward scan, keeping the states as a training forward does
  const double fwd_ms = median_ms(
      [&] {
        auto copy = ws;
        cd::cuda::chunk_scan_fwd(pb, in, copy, comba::KeptWorkspace::kAll);
      },
      iters);
  std::vector<ct::FieldError> fwd_err;
  if (check) {
    auto twin_ws = ct::workspace_in(ws, at::kFloat);
    const auto twin = cd::twin::chunk_scan_fwd(pb, in, twin_ws, comba::KeptWorkspace::kAll);
    const auto cuda = cd::cuda::chunk_scan_fwd(pb, in, ws, comba::KeptWorkspace::kAll);
    fwd_err = ct::compare_scan_fwd(cuda, ws, twin, twin_ws);
  } else {
    cd::cuda::chunk_scan_fwd(pb, in, ws, comba::KeptWorkspace::kAll);
  }
  print_line(c, "scan_fwd", fwd_ms, fwd_err, check, iters);

  // V' from the kept states (the backward of a forward that kept only the states)
  {
    auto copy = ws;
    const double ms = median_ms([&] { cd::cuda::chunk_v_new(pb, in, copy); }, iters);
    std::vector<ct::FieldError> err;
    if (check) {
      auto twin_ws = ct::workspace_in(ws, at::kFloat);
      cd::twin::chunk_v_new(pb, in, twin_ws);
      err = {ct::compare_field("v_new", copy.v_new, twin_ws.v_new, ct::kStage16BitTolerance)};
    }
    print_line(c, "v_new", ms, err, check, iters);
  }

  // reverse scan
  auto sg = cd::cuda::chunk_scan_bwd(pb, in, ws, x.grad_o, x.grad_final);
  const double bwd_ms =
      median_ms([&] { cd::cuda::chunk_scan_bwd(pb, in, ws, x.grad_o, x.grad_final); }, iters);
  std::vector<ct::FieldError> bwd_err;
  if (check) {
    bwd_err = ct::compare_scan_bwd(
        sg,
        cd::twin::chunk_scan_bwd(pb, in, ct::workspace_in(ws, at::kFloat), x.grad_o, x.grad_final));
  }
  print_line(c, "scan_bwd", bwd_ms, bwd_err, check, iters);

  // per-chunk gradients (the twin first: it holds an autograd graph while it runs)
  std::vector<ct::FieldError> grad_err;
  if (check) {
    const auto twin = cd::twin::chunk_grads(pb, in, ct::workspace_in(ws, at::kFloat),
                                            ct::state_grads_in(sg, at::kFloat), x.grad_o);
    grad_err = ct::compare_grads(pb, in, cd::cuda::chunk_grads(pb, in, ws, sg, x.grad_o), twin);
    c10::cuda::CUDACachingAllocator::emptyCache();
  }
  const double grad_ms = median_ms([&] { cd::cuda::chunk_grads(pb, in, ws, sg, x.grad_o); }, iters);
  print_line(c, "grads", grad_ms, grad_err, check, iters);
}

#endif  // COMBA_WITH_CUDA

void run_cases([[maybe_unused]] int iters, [[maybe_unused]] const std::string& filter,
               [[maybe_unused]] bool check) {
  if (!torch::cuda::is_available()) {
    std::printf("{\"skipped\": \"no CUDA device\"}\n");
    return;
  }
#ifdef COMBA_WITH_CUDA
  const std::vector<Case> cases = {
      {"B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128},
      {"B8_T2048_H6_K128_V256", 8, 2048, 6, 6, 128, 256},  // the 340M layer
      {"B1_T32768_H16_K128_V128", 1, 32768, 16, 16, 128, 128},
  };
  for (const auto& c : cases) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    run_case(c, iters, check);
  }
#else
  std::printf("{\"skipped\": \"built without CUDA\"}\n");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 20;
  std::string filter;
  bool debug = false, no_check = false;
  CLI::App app{"Checks each CUDA chunk stage against its ATen twin and times it (CUDA).",
               "bench_stages"};
  comba::cli::configure(app);
  app.add_option("--iters", iters, "timed runs per stage (median)")
      ->check(comba::cli::integer_at_least(1, std::numeric_limits<int>::max()));
  app.add_option("--filter", filter, "only cases whose name contains this");
  app.add_flag("--no-check", no_check, "time only (skip the twins)");
  comba::cli::add_debug_flag(app, debug);
  if (const auto status = comba::cli::parse(app, argc, argv)) return *status;
  try {
    run_cases(iters, filter, !no_check);
  } catch (const std::exception& e) {
    return comba::cli::report_error("bench_stages", e, debug);
  }
  return 0;
}
