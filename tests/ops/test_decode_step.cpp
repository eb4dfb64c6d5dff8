// comba_decode_step_ (comba/ops/decode_step.h): T steps of the in-place decode step against
// the fp64 oracle run over the same T tokens (outputs of every step, the final state),
// written into the caller's buffers (their storage never moves); argument errors naming
// the argument; on a GPU the kernel (fp32 / bf16 inputs, fp32 / bf16 state, unaligned state
// rows), a CUDA graph of the step replaying to the eager numbers, and the error a bf16
// state adds over many steps.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#ifdef COMBA_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <cstdio>
#include <string>
#include <vector>

#include "comba/ops/decode_step.h"
#include "support/comba_case.h"
#include "support/expect_error.h"
#include "support/require.h"

namespace comba::test {
namespace {

using comba::testing::expect_error_mentioning;

struct StepRun {
  at::ScalarType dtype = at::kDouble;        // q, k, v, p (and out)
  at::ScalarType gate_dtype = at::kDouble;   // g, beta
  at::ScalarType state_dtype = at::kDouble;  // the caller's state buffer
  at::Device device = at::kCPU;
  int64_t state_offset = 0;  // elements: the state buffer starts this far into its storage
};

// fp32 inputs and math, the state kept in bf16 (generate's bf16_decode_state).
StepRun bf16_state_run() {
  StepRun run;
  run.dtype = run.gate_dtype = at::kFloat;
  run.state_dtype = at::kBFloat16;
  return run;
}

struct StepResult {
  at::Tensor o;            // [B, T, HV, V] fp64: each step's out, concatenated
  at::Tensor final_state;  // [B, HV, K, V] fp64
  at::Tensor oracle_o, oracle_state;
};

// A case's T tokens fed one step at a time through the op, and the oracle on exactly the
// values the op saw (inputs rounded to the run's dtypes, the initial state to the state's).
StepResult run_steps(const CaseConfig& cfg, const StepRun& run) {
  const auto t = make_case(cfg);
  const int64_t B = cfg.batch, T = cfg.seq_len, HV = cfg.value_heads, K = cfg.key_dim, V = cfg.value_dim;
  auto rounded = [](const at::Tensor& x, at::ScalarType dt) { return x.to(dt).to(at::kDouble); };
  const auto q = rounded(t.q, run.dtype), k = rounded(t.k, run.dtype), v = rounded(t.v, run.dtype),
             p = rounded(t.p, run.dtype), g = rounded(t.g, run.gate_dtype), beta = rounded(t.beta, run.gate_dtype),
             h0 = rounded(t.initial_state, run.state_dtype);

  OracleProblem pb;
  pb.batch = B, pb.seq_len = T, pb.heads = cfg.heads, pb.value_heads = HV, pb.key_dim = K, pb.value_dim = V;
  pb.scale = cfg.resolved_scale();
  pb.l2norm = cfg.l2norm;
  OracleInputs in{to_vector(q), to_vector(k), to_vector(v), to_vector(p), to_vector(g), to_vector(beta), to_vector(h0)};
  const auto oracle = oracle_forward(pb, in);

  const auto opts = at::TensorOptions().device(run.device);
  const int64_t numel = B * HV * K * V;
  const auto storage = at::empty({numel + run.state_offset}, opts.dtype(run.state_dtype));
  auto state = storage.narrow(0, run.state_offset, numel).view({B, HV, K, V});
  state.copy_(h0);
  auto out = at::empty({B, 1, HV, V}, opts.dtype(run.dtype));
  const void* state_ptr = state.data_ptr();
  const void* out_ptr = out.data_ptr();
  auto step = [&](const at::Tensor& x, int64_t i, at::ScalarType dt) {
    return x.slice(1, i, i + 1).to(run.device, dt).contiguous();
  };
  std::vector<at::Tensor> outs;
  DecodeStepOptions options;
  options.use_qk_l2norm_in_kernel(cfg.l2norm).scale(cfg.scale);
  for (int64_t i = 0; i < T; ++i) {
    comba_decode_step_(step(q, i, run.dtype), step(k, i, run.dtype), step(v, i, run.dtype), step(p, i, run.dtype),
                       step(g, i, run.gate_dtype), step(beta, i, run.gate_dtype), state, out, options);
    EXPECT_EQ(state.data_ptr(), state_ptr);
    EXPECT_EQ(out.data_ptr(), out_ptr);
    outs.push_back(out.to(at::kCPU, at::kDouble, /*non_blocking=*/false, /*copy=*/true));  // out is reused
  }
  return {at::cat(outs, 1), state.to(at::kCPU, at::kDouble, false, /*copy=*/true), from_vector(oracle.o, {B, T, HV, V}),
          from_vector(oracle.final_state, {B, HV, K, V})};
}

CaseConfig step_case(const std::string& name, int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V,
                     bool l2norm) {
  CaseConfig cfg;
  cfg.name = name;
  cfg.batch = B, cfg.seq_len = T, cfg.heads = H, cfg.value_heads = HV, cfg.key_dim = K, cfg.value_dim = V;
  cfg.l2norm = l2norm;
  cfg.initial_state = true;
  cfg.seed = static_cast<uint64_t>(B * 1000 + K * 10 + V);
  return cfg;
}

std::vector<CaseConfig> cpu_cases() {
  return {step_case("gva_l2norm", 2, 6, 2, 4, 16, 12, true), step_case("plain", 3, 5, 1, 1, 8, 8, false),
          step_case("odd_dims", 1, 4, 3, 3, 13, 7, true)};
}

TEST(DecodeStep, Float64MatchesOracleOverStepsInPlace) {
  for (const auto& cfg : cpu_cases()) {
    const auto r = run_steps(cfg, StepRun{});
    EXPECT_LT(relative_error(r.o, r.oracle_o), kFloat64Tolerance) << cfg.name;
    EXPECT_LT(relative_error(r.final_state, r.oracle_state), kFloat64Tolerance) << cfg.name;
  }
}

TEST(DecodeStep, Float32MatchesOracleOverStepsInPlace) {
  for (const auto& cfg : cpu_cases()) {
    StepRun run;
    run.dtype = run.gate_dtype = run.state_dtype = at::kFloat;
    const auto r = run_steps(cfg, run);
    EXPECT_LT(relative_error(r.o, r.oracle_o), kFloat32Tolerance) << cfg.name;
    EXPECT_LT(relative_error(r.final_state, r.oracle_state), kFloat32Tolerance) << cfg.name;
  }
}

TEST(DecodeStep, DefaultsPEqualsKAndBetaOne) {
  const auto cfg = step_case("defaults", 2, 1, 2, 2, 8, 4, true);
  const auto t = make_case(cfg);
  auto state = t.initial_state.clone(), out = at::empty({2, 1, 2, 4}, at::kDouble);
  comba_decode_step_(t.q, t.k, t.v, c10::nullopt, t.g, c10::nullopt, state, out,
                     DecodeStepOptions().use_qk_l2norm_in_kernel(true));
  auto state_ref = t.initial_state.clone(), out_ref = at::empty_like(out);
  comba_decode_step_(t.q, t.k, t.v, t.k, t.g, at::ones_like(t.g), state_ref, out_ref,
                     DecodeStepOptions().use_qk_l2norm_in_kernel(true));
  EXPECT_LT(relative_error(out, out_ref), kFloat64Tolerance);
  EXPECT_LT(relative_error(state, state_ref), kFloat64Tolerance);
}

// A valid fp32 step (B 2, H 2, HV 4, K 8, V 6) that each check breaks in one place.
struct Call {
  at::Tensor q = at::randn({2, 1, 2, 8}), k = at::randn({2, 1, 2, 8}), v = at::randn({2, 1, 4, 6});
  at::Tensor p = at::randn({2, 1, 2, 8}), g = -at::rand({2, 1, 4}), beta = at::rand({2, 1, 4});
  at::Tensor state = at::zeros({2, 4, 8, 6}), out = at::empty({2, 1, 4, 6});
  void operator()() const { comba_decode_step_(q, k, v, p, g, beta, state, out); }
};

TEST(DecodeStep, ErrorsNameTheArgument) {
  const std::string fn = "comba_decode_step_: argument ";
  EXPECT_NO_THROW(Call()());
  auto broken = [](auto&& change) {
    Call c;
    change(c);
    return c;
  };
  expect_error_mentioning(broken([](Call& c) { c.state = at::zeros({2, 4, 6, 8}); }), fn + "`state`");
  expect_error_mentioning(broken([](Call& c) { c.state = at::zeros({2, 4, 8, 6}, at::kHalf); }), fn + "`state`");
  expect_error_mentioning(broken([](Call& c) { c.state = at::zeros({2, 4, 6, 8}).transpose(2, 3); }),
                          fn + "`state` must be contiguous");
  expect_error_mentioning(broken([](Call& c) { c.out = at::empty({2, 1, 4, 6}, at::kDouble); }), fn + "`out`");
  expect_error_mentioning(broken([](Call& c) { c.out = at::empty({2, 1, 6, 4}).transpose(2, 3); }),
                          fn + "`out` must be contiguous");
  expect_error_mentioning(broken([](Call& c) { c.out = at::empty({2, 1, 4, 5}); }), fn + "`out`");
  expect_error_mentioning(broken([](Call& c) { c.q = at::randn({2, 2, 2, 8}); }), fn + "`q`");
  expect_error_mentioning(broken([](Call& c) { c.k = at::randn({2, 1, 2, 8}, at::kDouble); }), fn + "`k`");
  expect_error_mentioning(broken([](Call& c) { c.v = at::randn({2, 1, 3, 6}); }), fn + "`v`");
  expect_error_mentioning(broken([](Call& c) { c.g = -at::rand({2, 4}); }), fn + "`g`");
  expect_error_mentioning(broken([](Call& c) { c.beta = at::rand({2, 1, 4}, at::kDouble); }), fn + "`beta`");
  expect_error_mentioning(broken([](Call& c) { c.p = at::randn({2, 1, 8, 2}).transpose(2, 3); }),
                          fn + "`p` must be contiguous");
  expect_error_mentioning(broken([](Call& c) { c.q.requires_grad_(true); }), fn + "`q` requires grad");
}

TEST(DecodeStep, Bf16StateOnTheCpuRoundsOnlyTheState) {
  // The ATen path's bf16 state: fp32 math, the stored state rounded each step. Close to the
  // fp32 state's result, far from exact (what the GPU test measures over 256 steps).
  auto cfg = step_case("bf16_state", 2, 16, 2, 2, 32, 32, true);
  auto run = bf16_state_run();
  const auto r = run_steps(cfg, run);
  const double err_o = relative_error(r.o, r.oracle_o);
  std::printf("{\"case\": \"bf16_decode_state_error_cpu\", \"steps\": 16, \"o_rel\": %.3e, \"state_rel\": %.3e}\n",
              err_o, relative_error(r.final_state, r.oracle_state));
  EXPECT_LT(err_o, 2e-2);
  EXPECT_GT(err_o, kFloat32Tolerance);  // the state's rounding is there
}

#ifdef COMBA_WITH_CUDA

class DecodeStepCuda : public ::testing::Test {
 protected:
  void SetUp() override { COMBA_SKIP_WITHOUT_CUDA(); }
};

std::vector<CaseConfig> gpu_cases() {
  return {step_case("h16_k128", 3, 5, 4, 4, 128, 128, true),  // the model's head shape, 4 columns per lane
          step_case("gva_odd", 2, 4, 2, 6, 100, 12, true),    // K not a multiple of the warps' rows
          step_case("k256_v40", 1, 3, 1, 2, 256, 40, false),  // the largest K
          step_case("b64", 64, 2, 2, 2, 64, 64, true),        // wide grid: 4 columns per lane
          // More CTAs than the GPU holds at once (several waves, a partial last one): the
          // model's head shape, and GVA with K = 256.
          step_case("many_h16", 21, 3, 16, 16, 128, 128, true),
          step_case("many_gva_k256", 81, 2, 2, 4, 256, 64, true)};
}

TEST_F(DecodeStepCuda, MatchesOracleAtEveryDtypeAndStateDtype) {
  for (const auto& cfg : gpu_cases()) {
    for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      StepRun run;
      run.device = at::kCUDA;
      run.dtype = dtype;
      run.gate_dtype = at::kFloat;
      run.state_dtype = at::kFloat;
      const auto r = run_steps(cfg, run);
      const double tol_o = dtype == at::kFloat ? kFloat32Tolerance : low_precision_tolerance(r.oracle_o, dtype);
      EXPECT_LT(relative_error(r.o, r.oracle_o), tol_o) << cfg.name << " " << dtype;
      EXPECT_LT(relative_error(r.final_state, r.oracle_state), kFloat32Tolerance) << cfg.name << " " << dtype;
    }
  }
}

TEST_F(DecodeStepCuda, UnalignedStateBuffersTakeNarrowerVectors) {
  // A state that starts 1 or 2 floats into its storage cannot take 16-byte vectors.
  for (const int64_t offset : {1, 2}) {
    auto cfg = step_case("unaligned", 2, 3, 2, 2, 64, 64, true);
    StepRun run;
    run.device = at::kCUDA;
    run.dtype = run.gate_dtype = run.state_dtype = at::kFloat;
    run.state_offset = offset;
    const auto r = run_steps(cfg, run);
    EXPECT_LT(relative_error(r.o, r.oracle_o), kFloat32Tolerance) << offset;
    EXPECT_LT(relative_error(r.final_state, r.oracle_state), kFloat32Tolerance) << offset;
  }
}

TEST_F(DecodeStepCuda, CpuAndCudaAgreeWithBf16State) {
  // Same fp32 math, same rounding of the state each step: only the summation order differs.
  auto cfg = step_case("bf16_state", 4, 8, 2, 4, 128, 128, true);
  auto run = bf16_state_run();
  const auto cpu = run_steps(cfg, run);
  run.device = at::kCUDA;
  const auto gpu = run_steps(cfg, run);
  EXPECT_LT(relative_error(gpu.o, cpu.o), 1e-2);
  EXPECT_LT(relative_error(gpu.final_state, cpu.final_state), 1e-2);
}

// The documented number: a bf16 state's error against the fp64 oracle beside the fp32
// state's, over 256 steps of the model's head shape (bf16 inputs, as in a bf16 model).
TEST_F(DecodeStepCuda, Bf16StateErrorOver256Steps) {
  auto cfg = step_case("bf16_state_256", 4, 256, 4, 4, 128, 128, true);
  StepRun run;
  run.device = at::kCUDA;
  run.dtype = at::kBFloat16;
  run.gate_dtype = at::kFloat;
  run.state_dtype = at::kFloat;
  const auto fp32_state = run_steps(cfg, run);
  run.state_dtype = at::kBFloat16;
  const auto bf16_state = run_steps(cfg, run);
  const double o32 = relative_error(fp32_state.o, fp32_state.oracle_o);
  const double s32 = relative_error(fp32_state.final_state, fp32_state.oracle_state);
  const double o16 = relative_error(bf16_state.o, bf16_state.oracle_o);
  const double s16 = relative_error(bf16_state.final_state, bf16_state.oracle_state);
  const double last16 = relative_error(bf16_state.o.slice(1, 255), bf16_state.oracle_o.slice(1, 255));
  std::printf("{\"case\": \"bf16_decode_state_error\", \"steps\": 256, \"o_rel_fp32_state\": %.3e, "
              "\"state_rel_fp32_state\": %.3e, \"o_rel_bf16_state\": %.3e, \"state_rel_bf16_state\": %.3e, "
              "\"o_rel_bf16_state_last_step\": %.3e}\n",
              o32, s32, o16, s16, last16);
  RecordProperty("o_rel_bf16_state", std::to_string(o16));
  RecordProperty("state_rel_bf16_state", std::to_string(s16));
  // bf16's unit roundoff is 3.9e-3; decay keeps the rounding of old steps from piling up.
  EXPECT_LT(o16, 2e-2);
  EXPECT_LT(s16, 2e-2);
}

TEST_F(DecodeStepCuda, GraphReplayEqualsEagerSteps) {
  const auto cfg = step_case("graph", 4, 6, 4, 4, 128, 128, true);
  const auto t = make_case(cfg);
  const auto f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  auto cuda = [&](const at::Tensor& x) { return x.to(f32); };
  const auto q = cuda(t.q), k = cuda(t.k), v = cuda(t.v), p = cuda(t.p), g = cuda(t.g), beta = cuda(t.beta);
  const auto opts = DecodeStepOptions().use_qk_l2norm_in_kernel(true);
  // Static buffers the graph reads and writes.
  auto sq = q.slice(1, 0, 1).clone(), sk = k.slice(1, 0, 1).clone(), sv = v.slice(1, 0, 1).clone(),
       sp = p.slice(1, 0, 1).clone(), sg = g.slice(1, 0, 1).clone(), sbeta = beta.slice(1, 0, 1).clone();
  auto load = [&](int64_t i) {
    sq.copy_(q.slice(1, i, i + 1)), sk.copy_(k.slice(1, i, i + 1)), sv.copy_(v.slice(1, i, i + 1));
    sp.copy_(p.slice(1, i, i + 1)), sg.copy_(g.slice(1, i, i + 1)), sbeta.copy_(beta.slice(1, i, i + 1));
  };
  for (const auto state_dtype : {at::kFloat, at::kBFloat16}) {
    auto eager_state = t.initial_state.to(f32.dtype(state_dtype)), eager_out = at::empty({4, 1, 4, 128}, f32);
    auto graph_state = eager_state.clone(), graph_out = at::empty_like(eager_out);
    at::cuda::CUDAGraph graph;
    {
      const auto side = at::cuda::getStreamFromPool();
      at::cuda::CUDAEvent ready;
      ready.record(at::cuda::getCurrentCUDAStream());
      ready.block(side);
      const c10::cuda::CUDAStreamGuard guard(side);
      graph.capture_begin();
      comba_decode_step_(sq, sk, sv, sp, sg, sbeta, graph_state, graph_out, opts);
      graph.capture_end();
      at::cuda::CUDAEvent done;
      done.record(side);
      done.block(at::cuda::getCurrentCUDAStream());
    }
    EXPECT_TRUE(graph_state.equal(eager_state)) << "capturing must not run the step";
    for (int64_t i = 0; i < cfg.seq_len; ++i) {
      load(i);
      comba_decode_step_(sq, sk, sv, sp, sg, sbeta, eager_state, eager_out, opts);
      graph.replay();
      EXPECT_TRUE(graph_out.equal(eager_out)) << i << " " << state_dtype;
      EXPECT_TRUE(graph_state.equal(eager_state)) << i << " " << state_dtype;
    }
  }
}

#endif  // COMBA_WITH_CUDA

}  // namespace
}  // namespace comba::test
