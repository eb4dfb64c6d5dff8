// Edge cases of the operator, each against an independent expectation: strong decay
// (g = -20 per step) stays finite and matches the oracle; zero-length segments hand the
// initial state through unchanged; omitted p is p = k and omitted beta is ones;
// non-contiguous inputs give the same numbers as contiguous ones; results come back in
// each input's dtype; use_reference_path reaches the ATen path, backward included; a
// retained graph's second backward gives the first one's gradients; g = -inf (a hard
// reset) gives the oracle's finite numbers in both forms; g = +inf / NaN returns; double
// backward is a clear error. The Cuda* tests repeat them on the GPU (skipped without).
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <torch/cuda.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "comba/ops/comba.h"
#include "support/comba_case.h"
#include "support/require.h"

namespace comba::test {
namespace {

const RunConfig kFloat64{at::kDouble, at::kDouble, at::kDouble};
const RunConfig kFloat32{at::kFloat, at::kFloat, at::kFloat};

const at::Tensor& find(const NamedTensors& results, const std::string& name) {
  for (const auto& [key, value] : results) {
    if (key == name) return value;
  }
  throw std::out_of_range("no result named " + name);
}

// Every result finite and within the tolerance of the run (support/comba_case.h).
void expect_close(const NamedTensors& got, const NamedTensors& want, const RunConfig& run,
                  const std::string& label) {
  ASSERT_EQ(got.size(), want.size()) << label;
  for (const auto& [name, reference] : want) {
    const at::Tensor& value = find(got, name);
    ASSERT_TRUE(value.defined()) << label << ": no " << name;
    EXPECT_TRUE(at::isfinite(value).all().item<bool>()) << label << ": " << name << " not finite";
    EXPECT_LE(relative_error(value, reference), tolerance_for(reference, run))
        << label << ": " << name;
  }
}

RunConfig on(const RunConfig& run, const at::Device& device) {
  RunConfig moved = run;
  moved.device = device;
  return moved;
}

const RunConfig kBFloat16{at::kBFloat16, at::kFloat, at::kBFloat16};

class EdgeCases : public ::testing::TestWithParam<Fn> {
 protected:
  std::string label(const char* what) const { return std::string(fn_name(GetParam())) + '/' + what; }
};

// exp(-20) ~ 2e-9 per step: a chunk form that computes exp(G_i) and exp(-G_j) separately
// overflows (64 steps of -20 reach exp(1280)) and returns inf * 0 = NaN. Every result must
// be finite, and all but g's gradient must match the oracle at the dtype's tolerance.
// g's gradient is then tiny (exp(g) <dS, S>, ~1e-9) and is checked on its own below: a
// scheme that obtains it as a difference of O(1) cumulative sums loses it to cancellation.
void check_strong_decay(Fn fn, const std::vector<RunConfig>& runs, bool gate_gradient_only) {
  CaseConfig cfg;
  cfg.seq_len = 2 * kChunkSize + 2;
  cfg.heads = 1, cfg.value_heads = 2, cfg.key_dim = 16, cfg.value_dim = 16;
  cfg.l2norm = cfg.initial_state = cfg.final_state = true;
  CaseTensors t = make_case(cfg);
  for (const double other : {-20.0, -5.0}) {
    SCOPED_TRACE("g = -20 at even steps, " + std::to_string(other) + " at odd steps");
    t.g = at::full_like(t.g, -20.0);
    t.g.index_put_({at::indexing::Slice(), at::indexing::Slice(1, at::indexing::None, 2)}, other);
    for (const RunConfig& run : runs) {
      const std::string label = std::string(fn_name(fn)) + "/g=-20/" + c10::toString(run.dtype) +
                                '/' + run.device.str();
      const NamedTensors got = run_operator(fn, cfg, t, run);
      NamedTensors want = run_oracle(cfg, round_to_run(t, run), run);
      for (const auto& [name, value] : got) {
        ASSERT_TRUE(value.defined()) << label << ": no " << name;
        EXPECT_TRUE(at::isfinite(value).all().item<bool>()) << label << ": " << name << " not finite";
      }
      want.erase(std::remove_if(want.begin(), want.end(),
                                [&](const auto& entry) {
                                  return (entry.first == "dg") != gate_gradient_only;
                                }),
                 want.end());
      for (const auto& [name, reference] : want) {
        EXPECT_LE(relative_error(find(got, name), reference), tolerance_for(reference, run))
            << label << ": " << name;
      }
    }
  }
}

TEST_P(EdgeCases, StrongDecayStaysFiniteAndExact) {
  check_strong_decay(GetParam(), {kFloat64, kFloat32, kBFloat16}, /*gate_gradient_only=*/false);
}

TEST_P(EdgeCases, StrongDecayGateGradientExact) {
  check_strong_decay(GetParam(), {kFloat64, kFloat32, kBFloat16}, /*gate_gradient_only=*/true);
}

TEST_P(EdgeCases, CudaStrongDecayStaysFiniteAndExact) {
  COMBA_SKIP_WITHOUT_CUDA();
  const at::Device cuda(at::kCUDA);
  check_strong_decay(GetParam(), {on(kFloat32, cuda), on(kBFloat16, cuda)}, false);
}

TEST_P(EdgeCases, CudaStrongDecayGateGradientExact) {
  COMBA_SKIP_WITHOUT_CUDA();
  const at::Device cuda(at::kCUDA);
  check_strong_decay(GetParam(), {on(kFloat32, cuda), on(kBFloat16, cuda)}, true);
}

// g = -inf is a hard reset (exp(g) = 0). The chunk form clamps g at kMinLogDecay, so both
// forms must give finite results and gradients equal to the oracle's (which takes
// exp(-inf) = 0 literally), with g's gradient exactly 0 at each reset. Resets on the
// first token, mid-chunk, both sides of a chunk boundary, two in a row, the last token.
struct Reset {
  int64_t batch, token, value_head;
};

CaseConfig hard_reset_case() {
  CaseConfig cfg;
  cfg.batch = 2, cfg.seq_len = 2 * kChunkSize + 5;
  cfg.heads = 1, cfg.value_heads = 2, cfg.key_dim = 16, cfg.value_dim = 8;
  cfg.l2norm = cfg.initial_state = cfg.final_state = true;
  cfg.seed = 11;
  return cfg;
}

std::vector<Reset> hard_resets(const CaseConfig& cfg) {
  const int64_t last = cfg.seq_len - 1;
  return {{0, 0, 0},          {0, 30, 0}, {0, kChunkSize - 1, 0}, {0, kChunkSize, 1},
          {0, last, 1},       {1, 40, 1}, {1, 41, 1},             {1, 2 * kChunkSize, 0},
          {1, last, 0}};
}

CaseTensors with_hard_resets(const CaseConfig& cfg) {
  CaseTensors t = make_case(cfg);
  for (const Reset& r : hard_resets(cfg)) {
    t.g.index_put_({r.batch, r.token, r.value_head}, -std::numeric_limits<double>::infinity());
  }
  return t;
}

// Only the forward's results when the run asked for no gradients.
NamedTensors expected_results(const NamedTensors& oracle, const RunConfig& run) {
  if (!run.inference) return oracle;
  NamedTensors forward;
  for (const auto& entry : oracle) {
    if (entry.first == "o" || entry.first == "final_state") forward.push_back(entry);
  }
  return forward;
}

std::string run_label(Fn fn, const char* what, const RunConfig& run) {
  return std::string(fn_name(fn)) + '/' + what + '/' + c10::toString(run.dtype) + '/' +
         run.device.str() + (run.reference_path ? "/reference path" : "") +
         (run.inference ? "/inference" : "");
}

void check_hard_reset(Fn fn, const std::vector<RunConfig>& runs) {
  const CaseConfig cfg = hard_reset_case();
  const CaseTensors t = with_hard_resets(cfg);
  for (const RunConfig& run : runs) {
    const std::string label = run_label(fn, "g=-inf", run);
    const NamedTensors got = run_operator(fn, cfg, t, run);
    expect_close(got, expected_results(run_oracle(cfg, round_to_run(t, run), run), run), run,
                 label);
    if (run.inference) continue;
    const at::Tensor& dg = find(got, "dg");
    for (const Reset& r : hard_resets(cfg)) {
      EXPECT_EQ(dg[r.batch][r.token][r.value_head].item<double>(), 0.0)
          << label << ": dg at batch " << r.batch << ", token " << r.token;
    }
  }
}

// The two forms against each other directly (each within the tolerance of the oracle,
// so within twice of each other).
void check_hard_reset_forms_agree(const std::vector<RunConfig>& runs) {
  const CaseConfig cfg = hard_reset_case();
  const CaseTensors t = with_hard_resets(cfg);
  for (const RunConfig& run : runs) {
    const std::string label = run_label(Fn::kChunk, "g=-inf, chunk vs recurrent", run);
    const NamedTensors chunk = run_operator(Fn::kChunk, cfg, t, run);
    const NamedTensors recurrent = run_operator(Fn::kRecurrent, cfg, t, run);
    ASSERT_EQ(chunk.size(), recurrent.size()) << label;
    for (const auto& [name, reference] : recurrent) {
      const at::Tensor& value = find(chunk, name);
      EXPECT_TRUE(at::isfinite(value).all().item<bool>()) << label << ": " << name;
      EXPECT_LE(relative_error(value, reference), 2 * tolerance_for(reference, run))
          << label << ": " << name;
    }
  }
}

RunConfig with_reference_path(RunConfig run) {
  run.reference_path = true;
  return run;
}

RunConfig without_gradients(RunConfig run) {
  run.inference = true;
  return run;
}

TEST_P(EdgeCases, HardResetMatchesOracle) {
  check_hard_reset(GetParam(), {kFloat64, kFloat32, kBFloat16, with_reference_path(kFloat32),
                                without_gradients(kFloat32)});
}

TEST(HardReset, ChunkEqualsRecurrent) {
  check_hard_reset_forms_agree({kFloat64, kFloat32, with_reference_path(kFloat64)});
}

TEST_P(EdgeCases, CudaHardResetMatchesOracle) {
  COMBA_SKIP_WITHOUT_CUDA();
  const at::Device cuda(at::kCUDA);
  check_hard_reset(GetParam(), {on(kFloat32, cuda), on(kBFloat16, cuda),
                                with_reference_path(on(kFloat32, cuda)),
                                without_gradients(on(kFloat32, cuda)),
                                without_gradients(on(kBFloat16, cuda))});
}

TEST(HardReset, CudaChunkEqualsRecurrent) {
  COMBA_SKIP_WITHOUT_CUDA();
  const at::Device cuda(at::kCUDA);
  check_hard_reset_forms_agree({on(kFloat32, cuda), on(kBFloat16, cuda)});
}

// g = +inf or NaN is not checked (a device sync per call): the call must still return,
// and the bad value must show in the results rather than vanish.
void check_non_finite_gate(Fn fn, const at::Device& device) {
  CaseConfig cfg;
  cfg.seq_len = kChunkSize + 3;
  cfg.key_dim = 8, cfg.value_dim = 4;
  for (const double bad : {std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN()}) {
    CaseTensors t = make_case(cfg);
    t.g.index_put_({0, 5, 0}, bad);
    const NamedTensors got = run_operator(fn, cfg, t, on(kFloat32, device));
    EXPECT_FALSE(at::isfinite(find(got, "o")).all().item<bool>()) << fn_name(fn) << ", g = " << bad;
  }
}

TEST_P(EdgeCases, PositiveInfinityOrNaNGateReturns) { check_non_finite_gate(GetParam(), at::kCPU); }

TEST_P(EdgeCases, CudaPositiveInfinityOrNaNGateReturns) {
  COMBA_SKIP_WITHOUT_CUDA();
  check_non_finite_gate(GetParam(), at::Device(at::kCUDA));
}

void check_zero_length_segments(Fn fn, const std::vector<RunConfig>& runs) {
  CaseConfig cfg;
  cfg.segments = {0, 3, 0, 0, 2, 0};
  cfg.heads = 1, cfg.value_heads = 2, cfg.key_dim = 8, cfg.value_dim = 4;
  cfg.initial_state = cfg.final_state = true;
  const CaseTensors t = make_case(cfg);
  for (const RunConfig& run : runs) {
    const std::string label = std::string(fn_name(fn)) + "/empty segments/" +
                              c10::toString(run.dtype) + '/' + run.device.str();
    const NamedTensors got = run_operator(fn, cfg, t, run);
    const CaseTensors seen = round_to_run(t, run);
    // Exact on any CPU or GEMM kernel: an empty segment's state only meets factors 1 and
    // 0 (exp(0), beta = 0 and zero padding), products and sums that IEEE rounds exactly.
    for (const int64_t n : {0, 2, 3, 5}) {
      EXPECT_TRUE(at::equal(find(got, "final_state")[n], seen.initial_state[n]))
          << label << ": final state of segment " << n;
      EXPECT_TRUE(at::equal(find(got, "dinitial_state")[n], seen.d_final_state[n]))
          << label << ": initial-state gradient of segment " << n;
    }
    expect_close(got, run_oracle(cfg, seen, run), run, label);
  }
}

TEST_P(EdgeCases, ZeroLengthSegmentsPassTheStateThrough) {
  check_zero_length_segments(GetParam(), {kFloat64, kFloat32});
}

TEST_P(EdgeCases, CudaZeroLengthSegmentsPassTheStateThrough) {
  COMBA_SKIP_WITHOUT_CUDA();
  check_zero_length_segments(GetParam(), {on(kFloat32, at::Device(at::kCUDA))});
}

// use_reference_path runs the ATen implementation, forward and backward, wherever the
// tensors are: the same numbers as the oracle at fp32 (on a GPU this is the path that
// checks the kernels in test_chunk_cuda_large).
void check_reference_path(Fn fn, const RunConfig& run) {
  CaseConfig cfg;
  cfg.segments = {5, 0, 70};
  cfg.heads = 1, cfg.value_heads = 2, cfg.key_dim = 16, cfg.value_dim = 8;
  cfg.l2norm = cfg.initial_state = cfg.final_state = true;
  const CaseTensors t = make_case(cfg);
  RunConfig reference = run;
  reference.reference_path = true;
  const std::string label = std::string(fn_name(fn)) + "/reference path/" + run.device.str();
  expect_close(run_operator(fn, cfg, t, reference), run_oracle(cfg, round_to_run(t, run), run),
               run, label);
}

TEST_P(EdgeCases, ReferencePathOption) { check_reference_path(GetParam(), kFloat32); }

TEST_P(EdgeCases, CudaReferencePathOption) {
  COMBA_SKIP_WITHOUT_CUDA();
  check_reference_path(GetParam(), on(kFloat32, at::Device(at::kCUDA)));
}

// Only empty segments: T = 0 tokens in all.
TEST_P(EdgeCases, AllSegmentsEmpty) {
  CaseConfig cfg;
  cfg.segments = {0, 0};
  cfg.initial_state = cfg.final_state = true;
  const CaseTensors t = make_case(cfg);
  const NamedTensors got = run_operator(GetParam(), cfg, t, kFloat64);
  EXPECT_TRUE(at::equal(find(got, "final_state"), t.initial_state));
  EXPECT_EQ(find(got, "o").numel(), 0);
}

CaseConfig small_dense_case() {
  CaseConfig cfg;
  cfg.seq_len = kChunkSize + 3;
  cfg.heads = 2, cfg.value_heads = 4, cfg.key_dim = 16, cfg.value_dim = 8;
  cfg.l2norm = cfg.initial_state = cfg.final_state = true;
  cfg.seed = 7;
  return cfg;
}

// p omitted: the operator uses k, and k's gradient collects both of its roles.
TEST_P(EdgeCases, OmittedPIsK) {
  const CaseConfig cfg = small_dense_case();
  CaseTensors t = make_case(cfg);
  RunConfig omitted = kFloat64;
  omitted.omit_p = true;
  const NamedTensors got = run_operator(GetParam(), cfg, t, omitted);
  expect_close(got, run_oracle(cfg, t, omitted), omitted, label("p omitted"));

  t.p = t.k.clone();  // the same values passed explicitly
  const NamedTensors given = run_operator(GetParam(), cfg, t, kFloat64);
  EXPECT_LE(relative_error(find(got, "o"), find(given, "o")), kFloat64Tolerance);
  EXPECT_LE(relative_error(find(got, "dk"), find(given, "dk") + find(given, "dp")),
            kFloat64Tolerance);
}

// The CUDA kernels take p = k and beta = 1 from null pointers: check both on the GPU.
TEST_P(EdgeCases, CudaOmittedPAndBeta) {
  COMBA_SKIP_WITHOUT_CUDA();
  const CaseConfig cfg = small_dense_case();
  const CaseTensors t = make_case(cfg);
  for (const bool omit_p : {true, false}) {
    RunConfig run = on(kBFloat16, at::Device(at::kCUDA));
    run.omit_p = omit_p;
    run.omit_beta = !omit_p;
    const NamedTensors got = run_operator(GetParam(), cfg, t, run);
    expect_close(got, run_oracle(cfg, round_to_run(t, run), run), run,
                 label(omit_p ? "p omitted, cuda" : "beta omitted, cuda"));
  }
}

TEST_P(EdgeCases, OmittedBetaIsOnes) {
  const CaseConfig cfg = small_dense_case();
  CaseTensors t = make_case(cfg);
  RunConfig omitted = kFloat64;
  omitted.omit_beta = true;
  const NamedTensors got = run_operator(GetParam(), cfg, t, omitted);
  expect_close(got, run_oracle(cfg, t, omitted), omitted, label("beta omitted"));

  t.beta = at::ones_like(t.beta);
  const NamedTensors given = run_operator(GetParam(), cfg, t, kFloat64);
  for (const char* name : {"o", "final_state", "dq", "dk", "dv", "dg", "dinitial_state"}) {
    EXPECT_LE(relative_error(find(got, name), find(given, name)), kFloat64Tolerance) << name;
  }
}

// The operator accepts any strides (it makes contiguous copies): same values laid out
// differently must give the same numbers, gradients included.
TEST_P(EdgeCases, NonContiguousInputsGiveTheSameNumbers) {
  CaseConfig cfg;
  cfg.segments = {5, 0, 3};
  cfg.heads = 2, cfg.value_heads = 4, cfg.key_dim = 8, cfg.value_dim = 6;
  cfg.l2norm = cfg.initial_state = cfg.final_state = true;
  const CaseTensors t = make_case(cfg);
  // Same values, transposed storage: x.transpose(a, b).contiguous().transpose(a, b).
  auto strided = [](const at::Tensor& x, int64_t a, int64_t b) {
    at::Tensor y = x.transpose(a, b).contiguous().transpose(a, b);
    EXPECT_FALSE(y.is_contiguous());
    return y;
  };
  auto run = [&](bool contiguous) {
    auto leaf = [](const at::Tensor& x) { return x.detach().requires_grad_(true); };
    const at::Tensor q = leaf(contiguous ? t.q : strided(t.q, 1, 2));
    const at::Tensor k = leaf(contiguous ? t.k : strided(t.k, 2, 3));
    const at::Tensor v = leaf(contiguous ? t.v : strided(t.v, 1, 3));
    const at::Tensor p = leaf(contiguous ? t.p : strided(t.p, 1, 2));
    const at::Tensor g = leaf(contiguous ? t.g : strided(t.g, 1, 2));
    const at::Tensor beta = leaf(contiguous ? t.beta : strided(t.beta, 1, 2));
    const at::Tensor h0 = leaf(contiguous ? t.initial_state : strided(t.initial_state, 2, 3));
    // Every other element of a longer tensor: strided cu_seqlens.
    const at::Tensor cu = contiguous ? t.cu_seqlens
                                     : at::stack({t.cu_seqlens, t.cu_seqlens}, 1).select(1, 0);
    const auto options = CombaOptions()
                             .initial_state(h0)
                             .output_final_state(true)
                             .use_qk_l2norm_in_kernel(true)
                             .cu_seqlens(cu);
    const auto [o, final_state] =
        GetParam() == Fn::kChunk ? chunk_comba(q, k, v, p, g, beta, options)
                                 : fused_recurrent_comba(q, k, v, p, g, beta, options);
    const auto grads = torch::autograd::grad({o, final_state}, {q, k, v, p, g, beta, h0},
                                             {t.d_o, t.d_final_state});
    std::vector<at::Tensor> all{o, final_state};
    all.insert(all.end(), grads.begin(), grads.end());
    return all;
  };
  const auto reference = run(true), strided_result = run(false);
  for (size_t i = 0; i < reference.size(); ++i) {
    EXPECT_LE(relative_error(strided_result[i], reference[i]), 1e-14) << "result " << i;
  }
}

// o in q's dtype, the state in fp32, each gradient in its input's dtype (SPEC section 1).
TEST_P(EdgeCases, ResultsInEachInputsDtype) {
  CaseConfig cfg;
  cfg.seq_len = 5, cfg.heads = 1, cfg.value_heads = 2, cfg.key_dim = 4, cfg.value_dim = 4;
  const CaseTensors t = make_case(cfg);
  auto leaf = [](const at::Tensor& x, at::ScalarType dt) {
    return x.to(dt).detach().requires_grad_(true);
  };
  const at::Tensor q = leaf(t.q, at::kBFloat16), k = leaf(t.k, at::kBFloat16);
  const at::Tensor v = leaf(t.v, at::kBFloat16), p = leaf(t.p, at::kBFloat16);
  const at::Tensor g = leaf(t.g, at::kFloat), beta = leaf(t.beta, at::kBFloat16);
  const at::Tensor h0 = leaf(at::randn({1, 2, 4, 4}), at::kFloat);
  const auto options = CombaOptions().initial_state(h0).output_final_state(true);
  const auto [o, final_state] =
      GetParam() == Fn::kChunk ? chunk_comba(q, k, v, p, g, beta, options)
                               : fused_recurrent_comba(q, k, v, p, g, beta, options);
  EXPECT_EQ(o.scalar_type(), at::kBFloat16);
  EXPECT_EQ(final_state.scalar_type(), at::kFloat);
  const auto grads = torch::autograd::grad({o.sum() + final_state.sum()},
                                           {q, k, v, p, g, beta, h0});
  const at::Tensor inputs[] = {q, k, v, p, g, beta, h0};
  for (size_t i = 0; i < grads.size(); ++i) {
    ASSERT_TRUE(grads[i].defined()) << "gradient " << i;
    EXPECT_EQ(grads[i].scalar_type(), inputs[i].scalar_type()) << "gradient " << i;
  }
}

// A graph kept with retain_graph is walked twice: the first backward consumes the
// kernels' saved workspace and the second recomputes it, so both must give the same
// gradients (bit for bit: every path is deterministic).
void check_backward_twice(Fn fn, const RunConfig& run) {
  CaseConfig cfg = small_dense_case();
  cfg.seq_len = 2 * kChunkSize + 5;
  const CaseTensors t = make_case(cfg);
  auto leaf = [&](const at::Tensor& x, at::ScalarType dtype) {
    return x.to(run.device, dtype).detach().requires_grad_(true);
  };
  const at::Tensor q = leaf(t.q, run.dtype), k = leaf(t.k, run.dtype), v = leaf(t.v, run.dtype),
                   p = leaf(t.p, run.dtype), g = leaf(t.g, run.gate_dtype),
                   beta = leaf(t.beta, run.beta_dtype),
                   h0 = leaf(t.initial_state, state_dtype(run.dtype));
  const auto options = CombaOptions().use_qk_l2norm_in_kernel(true).initial_state(h0).output_final_state(true);
  const auto [o, final_state] = fn == Fn::kChunk ? chunk_comba(q, k, v, p, g, beta, options)
                                                 : fused_recurrent_comba(q, k, v, p, g, beta, options);
  const torch::autograd::variable_list outputs{o, final_state}, inputs{q, k, v, p, g, beta, h0};
  const torch::autograd::variable_list cotangents{t.d_o.to(run.device, o.scalar_type()),
                                                  t.d_final_state.to(run.device, final_state.scalar_type())};
  const auto first = torch::autograd::grad(outputs, inputs, cotangents, /*retain_graph=*/true);
  const auto second = torch::autograd::grad(outputs, inputs, cotangents, /*retain_graph=*/false);
  // Bit equality is sound here: the same shapes through the same kernels in one process.
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(first[i].defined() && second[i].defined()) << "gradient " << i;
    EXPECT_TRUE(at::equal(first[i], second[i])) << "gradient " << i << " differs on the second backward";
  }
}

TEST_P(EdgeCases, RetainedGraphBackwardTwice) { check_backward_twice(GetParam(), kFloat64); }

TEST_P(EdgeCases, CudaRetainedGraphBackwardTwice) {
  COMBA_SKIP_WITHOUT_CUDA();
  check_backward_twice(GetParam(), on(kBFloat16, at::Device(at::kCUDA)));
}

// Second-order gradients are not implemented: a gradient taken with create_graph=true
// through the operator must say so, whether or not the incoming gradient itself needs a
// graph (o.sum(): it does not; (o * o).sum(): it does).
void check_double_backward_rejected(Fn fn, const RunConfig& run) {
  const CaseConfig cfg = small_dense_case();
  const CaseTensors t = make_case(cfg);
  auto leaf = [&](const at::Tensor& x, at::ScalarType dtype) {
    return x.to(run.device, dtype).detach().requires_grad_(true);
  };
  const at::Tensor q = leaf(t.q, run.dtype), k = leaf(t.k, run.dtype), v = leaf(t.v, run.dtype),
                   g = leaf(t.g, run.gate_dtype);
  const std::string expected = std::string(fn_name(fn)) + ": double backward is not supported";
  for (const bool squared : {false, true}) {
    const auto [o, final_state] =
        fn == Fn::kChunk ? chunk_comba(q, k, v, c10::nullopt, g, c10::nullopt)
                         : fused_recurrent_comba(q, k, v, c10::nullopt, g, c10::nullopt);
    const at::Tensor loss = squared ? (o * o).sum() : o.sum();
    try {
      const auto first = torch::autograd::grad({loss}, {q, g}, {}, /*retain_graph=*/c10::nullopt,
                                               /*create_graph=*/true);
      torch::autograd::grad({first[0].sum() + first[1].sum()}, {q});
      ADD_FAILURE() << fn_name(fn) << ": double backward ran";
    } catch (const std::exception& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
  }
}

TEST_P(EdgeCases, DoubleBackwardIsAClearError) {
  check_double_backward_rejected(GetParam(), kFloat64);
}

TEST_P(EdgeCases, CudaDoubleBackwardIsAClearError) {
  COMBA_SKIP_WITHOUT_CUDA();
  const at::Device cuda(at::kCUDA);
  check_double_backward_rejected(GetParam(), on(kBFloat16, cuda));
  check_double_backward_rejected(GetParam(), on(kFloat32, cuda));
}

TEST_P(EdgeCases, NoFinalStateUnlessAsked) {
  CaseConfig cfg;
  cfg.seq_len = 3;
  const CaseTensors t = make_case(cfg);
  const auto options = CombaOptions().output_final_state(false);
  const auto [o, final_state] =
      GetParam() == Fn::kChunk ? chunk_comba(t.q, t.k, t.v, t.p, t.g, t.beta, options)
                               : fused_recurrent_comba(t.q, t.k, t.v, t.p, t.g, t.beta, options);
  EXPECT_TRUE(o.defined());
  EXPECT_FALSE(final_state.defined());
}

INSTANTIATE_TEST_SUITE_P(Both, EdgeCases, ::testing::Values(Fn::kChunk, Fn::kRecurrent),
                         [](const ::testing::TestParamInfo<Fn>& info) {
                           return std::string(info.param == Fn::kChunk ? "chunk" : "recurrent");
                         });

}  // namespace
}  // namespace comba::test
